"""Pixel decoding: Pillow, or tifffile/OpenCV for 16-bit colour; samples -> float32 in [0, 1]."""

from __future__ import annotations

import io
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
from PIL import Image

from imgedit.errors import ImageReadError
from imgedit.imageio.metadata import icc_of
from imgedit.imageio.source import WIDE_MODES

logger = logging.getLogger("imgedit")

_FLOAT_SLACK = 1 / 65535  # floats outside [0, 1] by less than a 16-bit level are rounding, not data
_DARKEST_WHITE = 1 / 256  # 32-bit integers whose largest is below this share of the type's range: refused


def swap_red_blue(arr: np.ndarray) -> np.ndarray:
    """RGB(A) <-> BGR(A) for (H, W, 3|4) samples (OpenCV's order); other shapes unchanged."""
    if arr.ndim == 3 and arr.shape[2] >= 3:
        return arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
    return arr


def to_unit(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer or float samples -> float32 in [0, 1], plus the bit depth they represent."""
    if arr.dtype == np.uint8:
        return np.multiply(arr, np.float32(1 / 255), dtype=np.float32), 8  # one pass
    if arr.dtype.kind in "ui":
        return np.clip(arr, 0, 65535).astype(np.float32) / np.float32(65535), 16
    return np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0), 16


def samples_to_unit(arr: np.ndarray, path: Path) -> tuple[np.ndarray, int]:
    """Samples whose dtype is the file's own (tifffile, OpenCV) -> float32 in [0, 1] and the bit depth kept.

    Integers are scaled by their type's range, as TIFF defines them (0 is
    black, the type's largest value white; negative values are clipped to
    black): 8-bit stays 8-bit, anything wider becomes 16-bit.

    Floats are taken as they are, 0 black and 1 white, the convention of
    float TIFF and EXR files. Values beyond [0, 1] are clipped, as a display
    clips scene-linear highlights above white; the clip is logged, since
    floats stored on another scale (0-255) then come out mostly white.

    Raises:
        ImageReadError: 32-bit integer samples that fill under 1/256 of their
            type's range (counts, depths in mm: no white point is known).
    """
    if arr.dtype == np.bool_:  # bilevel
        arr = arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype == np.uint8:
        return to_unit(arr)
    if arr.dtype.kind == "f":
        _log_float_clip(arr, path)
        return to_unit(arr)
    top = np.iinfo(arr.dtype).max
    if arr.dtype.itemsize >= 4:
        _check_fills_range(arr, top, path)
    unit = np.clip(arr, 0, None).astype(np.float32) / np.float32(top)
    return unit, 8 if arr.dtype.itemsize == 1 else 16


def _log_float_clip(arr: np.ndarray, path: Path) -> None:
    low, high = float(np.nanmin(arr)), float(np.nanmax(arr))
    if low < -_FLOAT_SLACK or high > 1 + _FLOAT_SLACK:
        logger.warning("%s: float samples from %.4g to %.4g are clipped to [0, 1] (0 is black, 1 white)",
                       path, low, high)


def _check_fills_range(arr: np.ndarray, top: int, path: Path) -> None:
    """Refuses 32-bit integers that, scaled by their type's range, would make a black picture:
    data crushed to a few levels is worse than a clear message."""
    largest = int(arr.max())
    if largest < top * _DARKEST_WHITE:
        raise ImageReadError(
            f"{path}: {arr.dtype.itemsize * 8}-bit integer samples reach only {largest} of {top}; "
            "scaled to that range the picture is black. Convert it to 16-bit, or to float in [0, 1], first"
        )


def split_channels(arr: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(H, W[, C]) RGB(A) or gray(+alpha) samples -> (rgb, alpha)."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    alpha = arr[:, :, -1] if channels in (2, 4) else None
    color = arr[:, :, :3] if channels >= 3 else np.repeat(arr[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(color), None if alpha is None else np.ascontiguousarray(alpha)


def pillow_pixels(im: Image.Image) -> tuple[np.ndarray, Optional[bytes], bool]:
    """Decodes with Pillow.

    Returns:
        Samples in RGB(A) / gray(+alpha) order, the ICC profile if it still
        applies, and whether a non-RGB colour space (CMYK...) was converted.
    """
    icc = icc_of(im)
    mode, has_trns = im.mode, "transparency" in im.info
    if mode in WIDE_MODES:
        return np.asarray(im), icc, False
    if mode in ("L", "1"):
        return np.asarray(_in_mode(im, "LA" if has_trns else "L")), icc, False
    if mode in ("LA", "La"):
        return np.asarray(_in_mode(im, "LA")), icc, False
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA"):
        palette_alpha = mode == "P" and im.palette is not None and "A" in im.palette.mode
        want_alpha = has_trns or palette_alpha or "A" in mode or "a" in mode
        return np.asarray(_in_mode(im, "RGBA" if want_alpha else "RGB")), icc, False
    if mode == "CMYK" and icc:
        converted = _cmyk_with_profile(im, icc)
        if converted is not None:
            return converted, None, True
    # CMYK without profile, YCbCr, LAB, HSV...: Pillow's formula; the profile no longer applies.
    return np.asarray(im.convert("RGB")), None, True


def _in_mode(im: Image.Image, mode: str) -> Image.Image:
    """``im`` in ``mode``; no copy when it is in that mode already (convert() copies)."""
    return im if im.mode == mode else im.convert(mode)


def _cmyk_with_profile(im: Image.Image, icc: bytes) -> Optional[np.ndarray]:
    """Converts CMYK to sRGB through its embedded profile; None if LittleCMS refuses."""
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.createProfile("sRGB")
        return np.asarray(ImageCms.profileToProfile(im, source, srgb, outputMode="RGB"))
    except Exception:  # noqa: BLE001 - any profile problem: fall back to the naive formula
        return None


@contextmanager
def _quiet_cv2(cv2: Any) -> Iterator[None]:
    """Silences OpenCV's stderr warnings (library code must not print)."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    saved = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(saved)


def decode_high_depth(data: bytes, fmt: str, path: Path) -> np.ndarray:
    """Decodes a 16-bit PNG/TIFF that Pillow would truncate; samples in RGB(A) order."""
    if fmt == "TIFF":
        arr = _tifffile_decode(data)
        if arr is not None:
            return arr
    import cv2  # lazy: keeps `import imgedit` cheap

    with _quiet_cv2(cv2):
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(f"{path}: corrupt or truncated {fmt} (16-bit decode failed)")
    return swap_red_blue(arr)  # OpenCV is BGR(A)


def _tifffile_decode(data: bytes) -> Optional[np.ndarray]:
    """First page of a TIFF via tifffile (exact for any layout), or None to fall back to OpenCV."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            arr = tiff_page_samples(tif.pages[0])
    except Exception:  # noqa: BLE001 - e.g. a codec tifffile lacks: let OpenCV try
        return None
    return arr if arr.ndim in (2, 3) and (arr.ndim == 2 or arr.shape[2] <= 4) else None


def tiff_page_samples(page: Any) -> np.ndarray:
    """A tifffile page's samples as (H, W) or (H, W, C), whatever its planar layout."""
    arr = page.asarray()
    if page.planarconfig == 2 and arr.ndim == 3:  # separate planes: (C, H, W)
        arr = np.moveaxis(arr, 0, -1)
    return arr
