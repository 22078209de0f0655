"""EXIF orientation: reading it, applying it to pixels, and resetting it to 1 in EXIF and XMP."""

from __future__ import annotations

import re
import struct
from typing import Any, Optional

import numpy as np
from PIL import Image

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
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return None
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, typ, n = struct.unpack_from(order + "HHI", tiff, entry)
        if tag == ORIENTATION_TAG and typ == 3 and n == 1:  # SHORT, left-justified in the value field
            patched = bytearray(tiff)
            struct.pack_into(order + "H", patched, entry + 8, 1)
            return bytes(patched)
    return None


def normalized_exif(raw: bytes, reset_orientation: bool) -> bytes:
    """EXIF with the ``Exif\\0\\0`` prefix and, if asked, Orientation = 1."""
    body = strip_exif_prefix(raw)
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
