"""EXIF orientation: reading it, applying it to pixels, and resetting it to 1 in EXIF and XMP."""

from __future__ import annotations

import re
import struct
from typing import Any, Optional

import numpy as np
from PIL import Image

from imgedit.imageio.exif import byte_order, entries, first_ifd, without_thumbnail
from imgedit.imageio.pngchunks import EXIF_PREFIX, XMP_KEYWORD, strip_exif_prefix

ORIENTATION_TAG = 0x0112
_XMP_ORIENTATION = (
    re.compile(r"(tiff:Orientation\s*=\s*[\"'])\d([\"'])"),
    re.compile(r"(<tiff:Orientation>)\s*\d\s*(</tiff:Orientation>)"),
)
_OPS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def orientation_of(im: Image.Image) -> int:
    """EXIF (or XMP) orientation, 1-8; avoids decoding a PNG just to look for a late eXIf."""
    exif = Image.Image.getexif(im) if im.format == "PNG" else im.getexif()
    return valid_orientation(exif.get(ORIENTATION_TAG, 1))


def valid_orientation(value: Any) -> int:
    """``value`` if it is a valid orientation (1-8), else 1."""
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Applies an EXIF orientation to (H, W[, C]) pixels, like ``ImageOps.exif_transpose``."""
    op = _OPS.get(orientation)
    return arr if op is None else np.ascontiguousarray(op(arr))


def _patch_ifd0_orientation(tiff: bytes) -> Optional[bytes]:
    """Sets Orientation = 1 in place in a TIFF/EXIF structure, keeping every other byte."""
    order = byte_order(tiff)
    for entry in entries(tiff, order, first_ifd(tiff, order)):
        if entry.tag == ORIENTATION_TAG and entry.type == 3 and entry.count == 1:  # SHORT, left-justified
            patched = bytearray(tiff)
            struct.pack_into(order + "H", patched, entry.at + 8, 1)
            return bytes(patched)
    return None


def normalized_exif(raw: bytes, reset_orientation: bool) -> bytes:
    """EXIF with the ``Exif\\0\\0`` prefix, without its thumbnail and, if asked, with Orientation = 1.

    The thumbnail (IFD1) is a copy of the source as it was stored: it would
    show what an edit removed, and after the orientation is applied it
    would lie sideways; so it is never carried (:func:`without_thumbnail`).
    """
    body = strip_exif_prefix(without_thumbnail(raw))
    if reset_orientation:
        try:
            patched = _patch_ifd0_orientation(body)
        except struct.error:
            patched = None
        if patched is None:  # unusual layout: let Pillow re-serialise it
            exif = Image.Exif()
            exif.load(EXIF_PREFIX + body)
            exif[ORIENTATION_TAG] = 1
            return exif.tobytes()
        body = patched
    return EXIF_PREFIX + body


def reset_xmp_orientation(text: dict[str, str]) -> None:
    """Sets the XMP ``tiff:Orientation`` in ``text`` (if any) to 1, in place."""
    xmp = text.get(XMP_KEYWORD)
    if xmp:
        for pattern in _XMP_ORIENTATION:
            xmp = pattern.sub(r"\g<1>1\g<2>", xmp)
        text[XMP_KEYWORD] = xmp
