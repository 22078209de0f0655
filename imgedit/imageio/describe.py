"""``imgedit info``: :func:`describe_image` summarises a file from its header, without decoding pixels."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional

from PIL import Image

from imgedit.imageio import pngchunks
from imgedit.imageio.formats import PathLike
from imgedit.imageio.metadata import dpi_of, icc_of, text_of, tiff_source_exif
from imgedit.imageio.orientation import orientation_of
from imgedit.imageio.source import (UnrecognisedImageError, cannot_read, check_file, is_tiff, pillow_open,
                                    source_layout)
from imgedit.imageio.tiffread import tiff_header_fields

# PNG ``im.info`` keys that are not text chunks.
_PNG_NON_TEXT = {"dpi", "gamma", "srgb", "icc_profile", "exif", "transparency", "aspect", "chromaticity", "xmp"}


def _icc_description(icc: bytes) -> Optional[str]:
    try:
        from PIL import ImageCms

        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except Exception:  # noqa: BLE001 - a profile LittleCMS cannot parse just has no description
        return None
    return description.strip() or None


def _header_text_keys(im: Image.Image) -> list[str]:
    """Text keys known from the header (PNG ``im.text`` would decode the pixels)."""
    if im.format != "PNG":
        return sorted(text_of(im))
    return sorted(k for k, v in im.info.items() if isinstance(v, str) and k not in _PNG_NON_TEXT)


def describe_image(path: PathLike) -> dict[str, Any]:
    """Summarises an image file for ``imgedit info`` from its header, without decoding pixels.

    ``width``/``height`` are as displayed, i.e. after the EXIF orientation
    (what :func:`read_image` returns); ``orientation`` is the stored tag.

    Raises:
        ImageReadError: missing, a directory, empty or not an image.
    """
    path = Path(path)
    file_size = check_file(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:  # no permission: one line for this file, the others still shown
        raise cannot_read(path, exc) from None
    try:
        with pillow_open(path, path) as im:
            return _summary(im, path, head, file_size)
    except UnrecognisedImageError:
        if not is_tiff(head):
            raise
    return _tifffile_summary(path, file_size)  # a TIFF layout Pillow has no mode for (float RGB...)


def image_size(path: PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file as displayed (after its EXIF
    orientation), from its header: what :func:`describe_image` reports,
    without the profile, text and layout it also reads.

    Raises:
        ImageReadError: as :func:`describe_image`.
    """
    path = Path(path)
    check_file(path)
    try:
        with pillow_open(path, path) as im:
            width, height = _displayed_size(im, orientation_of(im))
            return height, width
    except UnrecognisedImageError:
        summary = describe_image(path)  # a TIFF only tifffile reads, or the error worded as for any file
    return summary["height"], summary["width"]


def _displayed_size(im: Image.Image, orientation: int) -> tuple[int, int]:
    """``(width, height)`` as displayed: Pillow reports TIFF sizes already
    oriented, other formats as stored."""
    return im.size if orientation < 5 or im.format == "TIFF" else im.size[::-1]


def _tifffile_summary(path: Path, file_size: int) -> dict[str, Any]:
    """The fields of :func:`describe_image` for a TIFF only tifffile can read."""
    fields = tiff_header_fields(path)
    icc = fields.pop("icc")
    width, height = fields["width"], fields["height"]
    return {
        "path": str(path), **fields, "icc_profile": icc is not None,
        "icc_description": _icc_description(bytes(icc)) if icc else None,
        "file_size": file_size, "megapixels": round(width * height / 1e6, 3),
    }


def _stored_bit_depth(im: Image.Image, head: bytes, depth: int) -> int:
    """Bits per sample as stored: :func:`source_layout` rounds 1-, 2- and
    4-bit gray up to the 8 bits that :func:`read_image` decodes them to."""
    ihdr = pngchunks.read_ihdr(head) if im.format == "PNG" else None
    if ihdr is not None and ihdr.color_type == 0:  # PNG gray: 1, 2, 4, 8 or 16
        return ihdr.bit_depth
    return 1 if im.mode == "1" else depth  # bilevel TIFF, BMP...


def _summary(im: Image.Image, path: Path, head: bytes, file_size: int) -> dict[str, Any]:
    """The fields of :func:`describe_image` for an opened (not decoded) image."""
    depth, gray, channels, has_alpha = source_layout(im, head)
    depth = _stored_bit_depth(im, head, depth)
    orientation = orientation_of(im)
    width, height = _displayed_size(im, orientation)
    icc = icc_of(im)
    text_keys = _header_text_keys(im)
    return {
        "path": str(path),
        "format": im.format,
        "width": width,
        "height": height,
        "mode": im.mode,
        "bit_depth": depth,
        "channels": channels,
        "has_alpha": has_alpha,
        "grayscale": gray,
        "exif": bool(im.info.get("exif")) or tiff_source_exif(im) is not None,  # a TIFF's camera tags are its EXIF
        "orientation": orientation,
        "icc_profile": icc is not None,
        "icc_description": _icc_description(icc) if icc else None,
        "text": text_keys,
        "dpi": dpi_of(im, orientation),
        "file_size": file_size,
        "megapixels": round(width * height / 1e6, 3),
        "frames": int(getattr(im, "n_frames", 1)),
    }
