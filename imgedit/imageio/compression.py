"""Lossy compression settings: what the source used (:class:`SourceEncoding`) and what to write.

With no quality asked for (``quality=None``), a picture written in its
source's format is compressed like the source: a lossless WebP stays
lossless (re-encoding it lossy would change most pixels), and a JPEG keeps
its chroma subsampling and roughly its quality (re-encoding a q90 4:2:0 JPEG
at q95 4:4:4 makes it much larger without making it any better). An
explicit quality always wins, with the settings it always had.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any, Iterator, Optional

from PIL import Image

from imgedit.imageio.picture import Picture, SourceEncoding

DEFAULT_QUALITY = 95
"""JPEG/WebP quality when none is asked for and the source gives none to keep."""
KEPT_JPEG_QUALITY = (75, 95)
"""A JPEG source's estimated quality is kept within these bounds: above 95 files grow for
nothing visible; below 75 a second generation of artefacts starts to show."""
# The IJG (libjpeg) example luminance table that libjpeg, Pillow and most encoders scale by quality.
_IJG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_WEBP_IMAGE_CHUNKS = (b"VP8 ", b"VP8L")  # lossy (VP8) or lossless (VP8L) bitstream
_ANMF_HEADER = 16  # bytes of frame position, size and timing before an animation frame's chunks


# ---------------------------------------------------------------- reading


def source_encoding(im: Image.Image, data: bytes) -> SourceEncoding:
    """How the file ``data`` (opened as ``im``) was compressed."""
    if im.format == "WEBP":
        return SourceEncoding(lossless=is_lossless_webp(data))
    if im.format in ("JPEG", "MPO"):  # MPO: a camera JPEG with extra pictures after the first
        return _jpeg_encoding(im)
    return SourceEncoding()


def _riff_chunks(data: bytes, pos: int) -> Iterator[tuple[bytes, bytes]]:
    """(fourcc, payload) of the RIFF chunks from ``pos`` on; stops at a truncated one."""
    while pos + 8 <= len(data):
        fourcc = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        yield fourcc, data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)  # chunks are padded to an even length


def is_lossless_webp(data: bytes) -> bool:
    """True if the (first) image of a WebP file is a lossless VP8L bitstream.

    The chunks are walked rather than the bytes searched: "VP8L" can occur
    by chance inside a lossy bitstream or in metadata.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    return _image_fourcc(data, 12) == b"VP8L"


def _image_fourcc(data: bytes, pos: int) -> Optional[bytes]:
    """The fourcc of the first image bitstream from ``pos`` on, looking into an animation's first frame."""
    for fourcc, payload in _riff_chunks(data, pos):
        if fourcc == b"ANMF":
            return _image_fourcc(payload, _ANMF_HEADER)
        if fourcc in _WEBP_IMAGE_CHUNKS:
            return fourcc
    return None


def _jpeg_encoding(im: Image.Image) -> SourceEncoding:
    from PIL import JpegImagePlugin

    sampling = JpegImagePlugin.get_sampling(im)  # -1: gray, CMYK or unusual factors
    return SourceEncoding(
        jpeg_quality=estimate_jpeg_quality(getattr(im, "quantization", None) or {}),
        subsampling=sampling if sampling in (0, 1, 2) else None,
        progressive=bool(im.info.get("progressive")),
    )


@lru_cache(maxsize=None)
def _ijg_luma_sums() -> tuple[int, ...]:
    """Sum of the IJG luminance table as libjpeg scales it, for quality 1..100 (index 0 = q1)."""
    sums = []
    for quality in range(1, 101):
        scale = 5000 // quality if quality < 50 else 200 - 2 * quality
        sums.append(sum(min(max((q * scale + 50) // 100, 1), 255) for q in _IJG_LUMA))
    return tuple(sums)


def estimate_jpeg_quality(tables: dict[int, Any]) -> Optional[int]:
    """The IJG quality (1-100) whose luminance table is closest to table 0, or None.

    Like ImageMagick's estimate, it compares table sums, so it is exact for
    libjpeg-made files and a fair guess for cameras' own tables.
    """
    luma = tables.get(0)
    if luma is None or len(luma) != 64:
        return None
    total = sum(luma)
    sums = _ijg_luma_sums()
    return 1 + min(range(100), key=lambda i: abs(sums[i] - total))


# ---------------------------------------------------------------- writing


def _kept(picture: Picture, fmt: str) -> SourceEncoding:
    """The source's settings when writing its own format, else none."""
    source_fmt = "JPEG" if picture.format == "MPO" else picture.format
    return picture.encoding if source_fmt == fmt else SourceEncoding()


def jpeg_options(picture: Picture, quality: Optional[int]) -> dict[str, Any]:
    """Pillow JPEG save options: quality, chroma subsampling, progressive."""
    source = _kept(picture, "JPEG")
    options: dict[str, Any] = {"progressive": True} if source.progressive else {}
    if quality is None and source.jpeg_quality is not None:
        low, high = KEPT_JPEG_QUALITY
        quality = min(max(source.jpeg_quality, low), high)
        subsampling = source.subsampling
    else:
        quality = DEFAULT_QUALITY if quality is None else quality
        subsampling = None
    if subsampling is None:
        # Chroma subsampling visibly smears colour edges; skip it at high quality.
        subsampling = 0 if quality >= 90 else 2
    return {**options, "quality": quality, "subsampling": subsampling}


def webp_options(picture: Picture, quality: Optional[int]) -> dict[str, Any]:
    """Pillow WebP save options: lossless for quality 100, or (no quality asked) for a lossless source."""
    lossless = _kept(picture, "WEBP").lossless if quality is None else quality >= 100
    quality = DEFAULT_QUALITY if quality is None else quality
    # exact: keep the colour under fully transparent pixels, as a lossless copy must
    return {"quality": quality, "lossless": lossless, "exact": lossless}
