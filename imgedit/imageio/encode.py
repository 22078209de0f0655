"""Encoding a Picture in memory, per format: Pillow for 8 bits, own PNG / tifffile for 16 bits."""

from __future__ import annotations

import dataclasses
import io
import logging
from typing import Any, BinaryIO, Callable, Optional

import numpy as np
from PIL import Image

from imgedit.errors import ShapeError
from imgedit.imageio import pngchunks
from imgedit.imageio.compression import jpeg_options, webp_options
from imgedit.imageio.decode import swap_red_blue
from imgedit.imageio.exif import exif_for_output, fit_exif, with_sub_ifds
from imgedit.imageio.formats import (
    ALPHA_FORMATS,
    DPI_FORMATS,
    EXIF_FORMATS,
    HIGH_DEPTH_FORMATS,
    ICC_FORMATS,
    PREFERRED_SUFFIX,
)
from imgedit.imageio.metadata import TIFF_XMP_TAG, png_info, tiff_exif_tags, tiff_text_kwargs, tiff_text_tags
from imgedit.imageio.picture import Picture, as_rgb
from imgedit.imageio.pngchunks import XMP_KEYWORD
from imgedit.imageio.profiles import profile_for_pixels, to_srgb

logger = logging.getLogger("imgedit")

_JPEG_MARKER_MAX = 65533  # bytes a JPEG APP marker can hold; larger EXIF/XMP cannot be stored
_JPEG_XMP_MAX = _JPEG_MARKER_MAX - 30  # less the XMP namespace header
# Channels at most one 8-bit level apart are gray up to rounding (an 8-bit stage, float error):
# a gray photo's denoise or inpaint stays gray, a colour edit of it (a style) does not.
_GRAY_SPREAD = np.float32(1 / 255 + 1e-6)
_warned: set[str] = set()  # warnings given once per process, not once per file of a batch
_DESCRIPTION, _SOFTWARE = 270, 305  # TIFF tags tifffile sets from its own arguments
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601, as Pillow's convert("L")


def encode(picture: Picture, fmt: str, quality: Optional[int] = None) -> bytes:
    """Encodes a picture in memory, at 16 bits where the format and the picture allow.

    ``quality`` None: compress like the source where it was of ``fmt``
    (see :mod:`imgedit.imageio.compression`), else at quality 95."""
    buffer = io.BytesIO()
    encode_to(buffer, picture, fmt, quality)
    return buffer.getvalue()


def encode_to(out: BinaryIO, picture: Picture, fmt: str, quality: Optional[int] = None) -> None:
    """Encodes a picture into the binary file ``out`` (at its start).

    Given a real file, Pillow encodes JPEG without holding the GIL (into a
    BytesIO it holds it throughout), so writer threads encode in parallel.
    """
    depth = 16 if picture.bit_depth == 16 and fmt in HIGH_DEPTH_FORMATS else 8
    keep_alpha = picture.alpha is not None and fmt in ALPHA_FORMATS
    rgb = as_rgb(picture.rgb, "Picture.rgb")
    gray = _writes_gray(picture, rgb, fmt, depth, keep_alpha)
    icc = profile_for_pixels(picture.icc_profile, gray)
    if icc != picture.icc_profile:
        picture = dataclasses.replace(picture, icc_profile=icc)
    pixels = _output_pixels(picture, rgb, depth, keep_alpha, gray)
    if depth == 16 and fmt == "PNG":
        out.write(_encode_png16(picture, pixels))
    elif depth == 16:
        out.write(_encode_tiff16(picture, pixels))
    elif fmt == "TIFF" and picture.exif:
        buffer = io.BytesIO()  # the EXIF's Exif and GPS IFDs are added to the written file
        _save_pillow(buffer, picture, pixels, fmt, quality)
        out.write(_with_exif_ifds(picture, buffer.getvalue()))
    else:
        _save_pillow(out, picture, pixels, fmt, quality)


def _writes_gray(picture: Picture, rgb: np.ndarray, fmt: str, depth: int, keep_alpha: bool) -> bool:
    """Whether to write single-channel gray: a gray source whose pixels are still gray.

    A colour edit of a gray photo (a style) is written in colour, as every
    format then shows the same picture. WebP has no gray mode; Pillow cannot
    read back 16-bit gray+alpha TIFF, so that is written as RGBA.
    """
    if not picture.grayscale or fmt == "WEBP" or (fmt == "TIFF" and depth == 16 and keep_alpha):
        return False
    return is_gray(rgb)


def is_gray(rgb: np.ndarray) -> bool:
    """Whether the channels of (H, W, 3) ``rgb`` agree up to rounding (one 8-bit level)."""
    red = rgb[:, :, 0]
    difference = np.empty(red.shape, np.float32)  # one buffer for both channels: 24 ms for 12 MP
    for channel in (1, 2):
        np.subtract(rgb[:, :, channel], red, out=difference)
        np.abs(difference, out=difference)
        if difference.max() > _GRAY_SPREAD:  # a NaN (written as 0 anyway) does not make a picture colour
            return False
    return True


def _warn_once(kind: str, message: str, *args: Any) -> None:
    """Logs a warning the first time ``kind`` happens in this process."""
    if kind not in _warned:
        _warned.add(kind)
        logger.warning(message + " (not repeated for further files)", *args)


#: Values quantised at a time, a band of rows: the float scratch stays 8 MB
#: instead of a second full-size copy of the image (288 MB at 24 MP).
QUANTIZE_BLOCK_VALUES = 1 << 21


def _by_rows(values: np.ndarray, dtype: type, quantize: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``quantize`` applied to bands of ``values``' rows, into one ``dtype`` array."""
    out = np.empty(values.shape, dtype)
    rows = max(1, QUANTIZE_BLOCK_VALUES // max(1, values[0].size))
    for top in range(0, values.shape[0], rows):
        out[top : top + rows] = quantize(values[top : top + rows])
    return out


def _quantize(values: np.ndarray, depth: int) -> np.ndarray:
    """[0, 1] floats -> rounded (half to even), clipped uint8 or uint16; NaN -> 0."""
    if depth == 8:
        return _quantize8(values)
    return _by_rows(values, np.uint16, _quantize16)


def _quantize16(values: np.ndarray) -> np.ndarray:
    top = np.float32(65535)
    scaled = np.multiply(values, top, dtype=np.float32, order="C")  # one new buffer, then in place
    np.clip(scaled, 0.0, top, out=scaled)  # SIMD; fmax/fmin (NaN-aware) took 3x as long
    if np.isnan(scaled.max()):  # a cheap reduction; NaN -> 0 only when there is one
        np.nan_to_num(scaled, copy=False, nan=0.0)
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint16)


def _quantize8(values: np.ndarray) -> np.ndarray:
    """8-bit quantisation in two passes: clip to [0, 1] (NaN -> 0), then OpenCV's scale,
    round and saturate. The HWC view of a CHW tensor is quantised
    plane by plane and interleaved as bytes, which spares a strided float
    pass: 0.17 ms instead of 0.87 ms for 0.15 MP."""
    import cv2  # lazy: keeps `import imgedit` cheap

    planar = values.ndim == 3 and values.shape[2] > 1 and not values.flags.c_contiguous
    if planar and values.transpose(2, 0, 1).flags.c_contiguous:
        return cv2.merge([_by_rows(plane, np.uint8, _clip_and_scale8) for plane in values.transpose(2, 0, 1)])
    return _by_rows(values, np.uint8, _clip_and_scale8)


def _clip_and_scale8(values: np.ndarray) -> np.ndarray:
    import cv2

    clipped = np.clip(values, 0.0, 1.0, out=np.empty(values.shape, np.float32))  # +inf -> 1; NaN stays
    if np.isnan(clipped.max()):  # OpenCV's NaN differs by version (0 up to 4.x, 255 in 5.x): make it 0 here
        np.nan_to_num(clipped, copy=False, nan=0.0)
    return cv2.convertScaleAbs(clipped, alpha=255.0)  # values are >= 0, so "Abs" changes nothing


def _output_pixels(picture: Picture, rgb: np.ndarray, depth: int, keep_alpha: bool, gray: bool) -> np.ndarray:
    """The samples to encode: (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3|4) RGB(A)."""
    if not gray and not keep_alpha:  # the common case: no planes to split and stack
        return _quantize(rgb, depth)
    planes: list[np.ndarray]
    if gray:
        equal = np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])
        planes = [rgb[:, :, 0] if equal else rgb @ _LUMA]
    else:
        planes = [rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]]
    if keep_alpha:
        alpha = np.asarray(picture.alpha, dtype=np.float32)
        if alpha.shape != rgb.shape[:2]:
            raise ShapeError("Picture.alpha", f"shape {rgb.shape[:2]}", alpha.shape)
        planes.append(alpha)
    stacked = planes[0] if len(planes) == 1 else np.stack(planes, axis=2)
    return _quantize(stacked, depth)


def _xmp_bytes(picture: Picture) -> Optional[bytes]:
    """The picture's XMP packet as UTF-8, or None."""
    xmp = picture.text.get(XMP_KEYWORD)
    return xmp.encode("utf-8") if xmp else None


def _dpi(picture: Picture) -> Optional[tuple[float, ...]]:
    return tuple(float(d) for d in picture.dpi) if picture.dpi else None


def _output_exif(picture: Picture) -> Optional[bytes]:
    """The picture's EXIF as it may be written: no thumbnail of the source, the written pixel size."""
    return exif_for_output(picture.exif, picture.width, picture.height) if picture.exif else None


def _format_kwargs(picture: Picture, fmt: str, quality: Optional[int]) -> dict[str, Any]:
    """Format-specific Pillow save options: quality, text, XMP, PNG colour chunks."""
    xmp = _xmp_bytes(picture)
    if fmt == "JPEG":
        # (no optimize=True: it doubles encode time for a few percent of size)
        kwargs: dict[str, Any] = jpeg_options(picture, quality)
        if picture.text.get("Comment"):
            kwargs["comment"] = picture.text["Comment"]
        if xmp and len(xmp) < _JPEG_XMP_MAX:
            kwargs["xmp"] = xmp
        elif xmp:  # (extended XMP, split over segments, is beyond Pillow's writer)
            _warn_once("jpeg-xmp", "%s: XMP of %d KB is more than a JPEG segment holds (64 KB); it is left out",
                       picture.path, len(xmp) // 1024)
        return kwargs
    if fmt == "PNG":
        info = png_info(picture.text)
        for ctype, data in picture.color_chunks.items():
            info.add(ctype.encode("latin-1"), data)  # Pillow writes gAMA, cHRM, sRGB before the pixel data
        return {"pnginfo": info, "compress_level": 6}
    if fmt in ("WEBP", "AVIF"):
        kwargs = webp_options(picture, quality) if fmt == "WEBP" else _avif_options(quality)
        if xmp:
            kwargs["xmp"] = xmp
        return kwargs
    if fmt == "TIFF":
        given = tiff_text_tags(picture.text)  # the picture's text wins over its EXIF's copy of a tag
        tiffinfo: dict[int, Any] = {tag: v for tag, v in tiff_exif_tags(picture.exif).items() if tag not in given}
        if xmp:
            tiffinfo[TIFF_XMP_TAG] = xmp
        return {"compression": "tiff_adobe_deflate", "tiffinfo": tiffinfo, **tiff_text_kwargs(picture.text)}
    return {}


def _avif_options(quality: Optional[int]) -> dict[str, Any]:
    """An explicit quality; else Pillow's default (75)."""
    return {} if quality is None else {"quality": quality}


def _jpeg_exif(picture: Picture, exif: bytes) -> Optional[bytes]:
    """EXIF cut to what a JPEG segment holds, saying once what had to go."""
    fitted, dropped = fit_exif(exif, _JPEG_MARKER_MAX)
    if dropped:
        _warn_once("jpeg-exif", "%s: EXIF of %d KB is more than a JPEG segment holds (64 KB); left out: %s",
                   picture.path, len(exif) // 1024, ", ".join(dropped))
    return fitted


def _save_kwargs(picture: Picture, fmt: str, quality: Optional[int]) -> dict[str, Any]:
    """All Pillow save options: the metadata the format can hold plus format options."""
    kwargs = _format_kwargs(picture, fmt, quality)
    if picture.icc_profile and fmt in ICC_FORMATS:
        kwargs["icc_profile"] = picture.icc_profile
    exif = _output_exif(picture) if fmt in EXIF_FORMATS else None
    if exif and fmt == "JPEG":
        exif = _jpeg_exif(picture, exif)
    if exif:
        kwargs["exif"] = exif
    if picture.dpi and fmt in DPI_FORMATS:
        kwargs["dpi"] = _dpi(picture)
    return kwargs


def _gif_alpha(pixels: np.ndarray) -> np.ndarray:
    """RGBA whose pixels are transparent (alpha below half) or opaque, all transparent ones alike:
    GIF has one transparent palette entry, which Pillow assigns only to alpha 0."""
    rgba = pixels if pixels.shape[2] == 4 else pixels[:, :, [0, 0, 0, 1]]  # gray+alpha -> RGBA
    clear = rgba[:, :, 3] < 128
    rgba = rgba.copy()
    rgba[clear] = 0
    rgba[~clear, 3] = 255
    return rgba


def _save_pillow(out: BinaryIO, picture: Picture, pixels: np.ndarray, fmt: str, quality: Optional[int]) -> None:
    if fmt == "GIF" and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        pixels = _gif_alpha(pixels)
    image = Image.fromarray(pixels)
    if picture.icc_profile and fmt not in ICC_FORMATS:
        image = to_srgb(image, picture.icc_profile)
    try:
        image.save(out, format=fmt, **_save_kwargs(picture, fmt, quality))
    except (OSError, ValueError, KeyError):
        if fmt in PREFERRED_SUFFIX or image.mode == "RGB":
            raise
        # Some less common format that cannot take this mode: plain RGB is the safe fallback.
        out.seek(0)
        out.truncate()
        image.convert("RGB").save(out, format=fmt)


def _encode_png16(picture: Picture, pixels: np.ndarray) -> bytes:
    """16-bit PNG (Pillow cannot write it) with gAMA/cHRM/sRGB, iCCP, pHYs, eXIf and text chunks."""
    chunks = [pngchunks.make_chunk(ctype.encode("latin-1"), data) for ctype, data in picture.color_chunks.items()]
    if picture.icc_profile:
        chunks.append(pngchunks.iccp_chunk(picture.icc_profile))
    if picture.dpi:
        chunks.append(pngchunks.phys_chunk(picture.dpi))
    exif = _output_exif(picture)
    if exif:
        chunks.append(pngchunks.exif_chunk(exif))
    for key, value in picture.text.items():
        chunk = pngchunks.text_chunk(key, value)
        if chunk is not None:
            chunks.append(chunk)
    return pngchunks.encode_png16(pixels, chunks)


def _encode_tiff16(picture: Picture, pixels: np.ndarray) -> bytes:
    """16-bit TIFF via tifffile (keeps ICC, dpi, text tags, EXIF); OpenCV if tifffile is missing."""
    try:
        import tifffile
    except ImportError:
        return _encode_tiff16_cv2(pixels)
    rgb_like = pixels.ndim == 3 and pixels.shape[2] >= 3
    # UTF-8 bytes (tifffile refuses non-ASCII str); the picture's text wins over its EXIF's copy of a tag
    text_tags = {**{tag: v.encode("utf-8") for tag, v in tiff_exif_tags(picture.exif).items()},
                 **tiff_text_tags(picture.text)}
    kwargs: dict[str, Any] = {
        "photometric": "rgb" if rgb_like else "minisblack",
        "extrasamples": ("unassalpha",) if pixels.ndim == 3 and pixels.shape[2] in (2, 4) else None,
        "compression": "zlib",
        "predictor": True,
        "metadata": None,  # no tifffile JSON in ImageDescription
        "iccprofile": picture.icc_profile or None,
        "description": text_tags.pop(_DESCRIPTION, None),
        "software": text_tags.pop(_SOFTWARE, False),  # False: no "tifffile.py" tag
    }
    kwargs["extratags"] = [(tag, "s", 0, value, True) for tag, value in text_tags.items()]  # make, artist...
    xmp = _xmp_bytes(picture)
    if xmp:
        kwargs["extratags"].append((TIFF_XMP_TAG, "B", len(xmp), xmp, True))
    if picture.dpi:
        kwargs.update(resolution=_dpi(picture), resolutionunit=2)  # 2 = inch
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, **kwargs)
    return _with_exif_ifds(picture, buffer.getvalue())


def _with_exif_ifds(picture: Picture, tiff: bytes) -> bytes:
    """A written TIFF with the Exif and GPS IFDs of the picture's EXIF (DateTimeOriginal,
    exposure, GPS...) linked from its IFD0, whose strings (Make, DateTime...) it already holds."""
    exif = _output_exif(picture)
    return with_sub_ifds(tiff, exif) if exif else tiff


def _encode_tiff16_cv2(pixels: np.ndarray) -> bytes:
    """Fallback 16-bit TIFF writer; carries no metadata."""
    import cv2  # lazy: keeps `import imgedit` cheap

    ok, encoded = cv2.imencode(".tiff", swap_red_blue(pixels))  # OpenCV wants BGR(A)
    if not ok:
        raise ValueError("OpenCV could not encode the 16-bit TIFF")
    return encoded.tobytes()
