"""Minimal PNG chunk reading and writing.

Used by :mod:`imgedit.imageio` to read the true bit depth from the IHDR chunk
(Pillow silently truncates 16-bit colour PNGs to 8 bits) and to write 16-bit
PNGs together with their metadata chunks (iCCP, pHYs, eXIf, tEXt/iTXt), which
neither Pillow nor OpenCV can do.
"""

from __future__ import annotations

import struct
import zlib
from typing import Iterator, NamedTuple, Optional

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
XMP_KEYWORD = "XML:com.adobe.xmp"
"""The text keyword XMP is stored under (PNG iTXt; also the key of XMP in ``Picture.text``)."""
EXIF_PREFIX = b"Exif\x00\x00"
"""The JPEG APP1 prefix of EXIF data; PNG's eXIf chunk stores the TIFF structure without it."""
_IDAT_PIECE = 1 << 20  # split pixel data into 1 MiB IDAT chunks, as encoders usually do
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, GA, RGB, RGBA)
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel (palette: one index)
# Adam7 passes: (first column, first row, column step, row step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_PIECE = 1 << 20


class Ihdr(NamedTuple):
    """The fields of a PNG IHDR chunk that matter here."""

    width: int
    height: int
    bit_depth: int
    color_type: int  # 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA
    interlaced: bool = False  # Adam7


def make_chunk(ctype: bytes, data: bytes) -> bytes:
    """Builds one PNG chunk: length, type, data, CRC32 of type + data."""
    crc = zlib.crc32(ctype + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", crc)


def read_ihdr(head: bytes) -> Optional[Ihdr]:
    """Parses the IHDR chunk at the start of a PNG file.

    Args:
        head: at least the first 33 bytes of the file.

    Returns:
        The header fields, or None if ``head`` does not start like a PNG.
    """
    if len(head) < 33 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return Ihdr(width, height, depth, ctype, interlace == 1)


def iter_chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yields ``(type, data)`` for each chunk of a complete PNG file (CRCs not checked)."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        yield png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length


def valid_keyword(key: str) -> bool:
    """Whether ``key`` can be a PNG text keyword: 1-79 Latin-1 characters, no NUL."""
    try:
        bkey = key.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return 1 <= len(bkey) <= 79 and b"\0" not in bkey


def text_chunk(key: str, value: str) -> Optional[bytes]:
    """Builds a tEXt chunk, or an iTXt chunk when the text is not Latin-1.

    Returns:
        The chunk, or None when ``key`` is not a valid PNG keyword, since such
        a key cannot be stored.
    """
    if not valid_keyword(key):
        return None
    bkey = key.encode("latin-1")
    # XMP must go in iTXt by convention; other text uses tEXt when it can.
    if key != XMP_KEYWORD:
        try:
            return make_chunk(b"tEXt", bkey + b"\0" + value.encode("latin-1"))
        except UnicodeEncodeError:
            pass
    # iTXt: keyword, NUL, compression flag, method, language NUL, translated keyword NUL, text.
    return make_chunk(b"iTXt", bkey + b"\0\0\0\0\0" + value.encode("utf-8"))


def iccp_chunk(icc: bytes) -> bytes:
    """Builds an iCCP chunk (profile name, NUL, method 0 = zlib, compressed profile)."""
    return make_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc))


def phys_chunk(dpi: tuple[float, float]) -> bytes:
    """Builds a pHYs chunk from dots per inch (PNG stores pixels per metre)."""
    ppm = [max(1, int(round(d / 0.0254))) for d in dpi]
    return make_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1))


def exif_chunk(exif: bytes) -> bytes:
    """Builds an eXIf chunk; PNG stores the TIFF structure without the JPEG ``Exif\\0\\0`` prefix."""
    return make_chunk(b"eXIf", strip_exif_prefix(exif))


def strip_exif_prefix(exif: bytes) -> bytes:
    """EXIF data without the ``Exif\\0\\0`` prefix (the bare TIFF structure)."""
    return exif[len(EXIF_PREFIX) :] if exif.startswith(EXIF_PREFIX) else exif


def encode_png16(pixels: np.ndarray, extra_chunks: list[bytes], level: int = 6) -> bytes:
    """Encodes a 16-bit image as PNG, with metadata chunks placed before the pixel data.

    Args:
        pixels: uint16 array, (H, W) gray or (H, W, C) with C = 2 (gray +
            alpha), 3 (RGB) or 4 (RGBA).
        extra_chunks: complete chunks (see :func:`make_chunk`) to put right
            after IHDR; iCCP, pHYs and eXIf must precede IDAT.
        level: zlib compression level.

    Returns:
        The PNG file contents.
    """
    arr = pixels if pixels.ndim == 3 else pixels[:, :, None]
    height, width, channels = arr.shape
    if arr.dtype != np.uint16 or channels not in _COLOR_TYPES:
        raise ValueError(f"encode_png16 needs uint16 with 1-4 channels, got {arr.dtype} {arr.shape}")
    rows = np.ascontiguousarray(arr, dtype=">u2").view(np.uint8).reshape(height, width * channels * 2)
    # Filter type 2 ("Up"): byte minus the byte above, modulo 256; cheap and compresses well.
    filtered = rows.copy()
    filtered[1:] -= rows[:-1]
    body = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    body[:, 0] = 2
    body[:, 1:] = filtered
    compressed = zlib.compress(body.tobytes(), level)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, _COLOR_TYPES[channels], 0, 0, 0)
    parts = [PNG_SIGNATURE, make_chunk(b"IHDR", ihdr), *extra_chunks]
    parts += [make_chunk(b"IDAT", compressed[i : i + _IDAT_PIECE]) for i in range(0, len(compressed), _IDAT_PIECE)]
    parts.append(make_chunk(b"IEND", b""))
    return b"".join(parts)


def image_data_size(ihdr: Ihdr) -> int:
    """Bytes the IDAT stream of a complete PNG inflates to: each row of each (Adam7) pass, plus its filter byte."""
    bits = _SAMPLES.get(ihdr.color_type, 1) * ihdr.bit_depth
    passes = _ADAM7 if ihdr.interlaced else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        width = (ihdr.width - x0 + dx - 1) // dx if ihdr.width > x0 else 0
        height = (ihdr.height - y0 + dy - 1) // dy if ihdr.height > y0 else 0
        if width and height:
            total += height * (1 + (width * bits + 7) // 8)
    return total


def inflated_data_size(png: bytes, enough: int) -> int:
    """Bytes the IDAT stream inflates to, counted without keeping them; stops at ``enough``
    (so a decompression bomb costs no memory) and at damaged data."""
    inflater = zlib.decompressobj()
    total = 0
    try:
        for ctype, data in iter_chunks(png):
            while ctype == b"IDAT" and not inflater.eof and total < enough:
                piece = inflater.decompress(data, _INFLATE_PIECE)  # (b"": what zlib still holds)
                total += len(piece)
                data = inflater.unconsumed_tail
                if not piece and not data:  # this chunk is used up
                    break
    except zlib.error:
        pass
    return total
