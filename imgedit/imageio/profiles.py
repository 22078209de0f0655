"""ICC profiles on output: whether a profile fits the written pixels, and sRGB for formats without one.

A format that cannot carry a profile (BMP, GIF, TGA...) gets its pixels
converted to sRGB instead of losing the profile: every reader shows an
untagged image as sRGB, so Adobe RGB (or Display P3...) pixels left as they
were would show dull and shifted. Converting costs one LittleCMS pass, and
only for such outputs of such sources.
"""

from __future__ import annotations

import io
import logging
from typing import Optional

from PIL import Image

logger = logging.getLogger("imgedit")

_GRAY, _RGB = b"GRAY", b"RGB "  # ICC header "data colour space" signatures


def color_space(icc: bytes) -> bytes:
    """The colour space a profile describes (header bytes 16-19: b"RGB ", b"GRAY", b"CMYK"...)."""
    return icc[16:20]


def profile_for_pixels(icc: Optional[bytes], gray: bool) -> Optional[bytes]:
    """``icc`` unless it is a gray profile and the pixels are written in colour:
    a gray profile on RGB pixels is invalid (readers refuse or ignore it)."""
    if icc and not gray and color_space(icc) == _GRAY:
        return None
    return icc


def _is_srgb(profile: object) -> bool:
    from PIL import ImageCms

    return "srgb" in ImageCms.getProfileDescription(profile).lower()


def to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """RGB(A) pixels in the colour space of ``icc`` converted to sRGB, alpha unchanged.

    An sRGB profile, a non-RGB image or profile, or a profile LittleCMS
    refuses leaves the image as it is (the last with a warning).
    """
    if image.mode not in ("RGB", "RGBA") or color_space(icc) != _RGB:
        return image
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if _is_srgb(source):
            return image
        return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode=image.mode)
    except Exception as exc:  # noqa: BLE001 - LittleCMS raises PyCMSError and others for bad profiles
        logger.warning("cannot convert the pixels to sRGB (%s); written unconverted, without their profile", exc)
        return image
