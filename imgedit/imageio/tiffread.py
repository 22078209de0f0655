"""TIFFs Pillow cannot open (float or half-float RGB, 16-bit gray+alpha...), read with tifffile.

Pillow's TIFF support stops at the layouts it has modes for; tifffile reads
any sample type, so :func:`read_image` falls back to it for a file that
starts like a TIFF and that Pillow does not recognise. The Picture is what
Pillow's path would give: pixels in [0, 1] (see
:func:`~imgedit.imageio.decode.samples_to_unit` for floats and wide
integers), orientation applied, ICC profile, dpi, XMP and the TIFF text tags.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional

import numpy as np

from imgedit.errors import ImageNotReadHereError, ImageReadError
from imgedit.imageio.decode import samples_to_unit, split_channels, tiff_page_samples
from imgedit.imageio.metadata import TIFF_XMP_TAG, tiff_text
from imgedit.imageio.orientation import apply_orientation, reset_xmp_orientation, valid_orientation
from imgedit.imageio.picture import Picture
from imgedit.imageio.pngchunks import XMP_KEYWORD
from imgedit.imageio.source import check_size, one_line

_MINISWHITE, _MINISBLACK, _RGB = 0, 1, 2  # TIFF photometric interpretations read here
_ASSOCIATED_ALPHA, _UNASSOCIATED_ALPHA = 1, 2  # TIFF ExtraSamples values
_ORIENTATION, _ICC, _X_RESOLUTION, _Y_RESOLUTION, _RESOLUTION_UNIT = 274, 34675, 282, 283, 296
_PER_INCH = {2: 1.0, 3: 2.54}  # ResolutionUnit: inch, centimetre


def read_tiff_with_tifffile(data: bytes, path: Path, limit: int) -> Picture:
    """The first page of a TIFF as a Picture, through tifffile.

    Raises:
        ImageReadError: above the pixel limit, a layout other than gray or
            RGB (with or without alpha), or data tifffile cannot decode.
    """
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            check_size(path, (page.imagewidth, page.imagelength), limit)
            tags = {tag.code: tag.value for tag in page.tags.values()}
            samples = _color_samples(tiff_page_samples(page), int(page.photometric), page.extrasamples, path)
            frames = len(tif.pages)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageNotReadHereError(f"{path}: not enough memory to decode this TIFF") from None
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for bad or unsupported data
        raise ImageReadError(f"{path}: corrupt or unsupported TIFF ({one_line(exc)})") from None
    orientation = valid_orientation(tags.get(_ORIENTATION, 1))
    unit, depth = samples_to_unit(apply_orientation(samples, orientation), path)
    if int(page.photometric) == _MINISWHITE:
        unit = _inverted_gray(unit)
    rgb, alpha = split_channels(unit)
    if alpha is not None and _ASSOCIATED_ALPHA in page.extrasamples[:1]:
        rgb = _unpremultiplied(rgb, alpha)
    text = tiff_text(tags)
    if isinstance(tags.get(TIFF_XMP_TAG), bytes):
        text[XMP_KEYWORD] = tags[TIFF_XMP_TAG].decode("utf-8", "replace")
        if orientation != 1:
            reset_xmp_orientation(text)
    icc = tags.get(_ICC)
    return Picture(
        rgb=rgb, alpha=alpha, format="TIFF", bit_depth=depth, grayscale=int(page.photometric) != _RGB,
        icc_profile=bytes(icc) if icc else None, text=text, dpi=_dpi(tags, orientation), path=path, frames=frames,
    )


def _color_samples(arr: np.ndarray, photometric: int, extrasamples: tuple, path: Path) -> np.ndarray:
    """Gray, gray+alpha, RGB or RGBA samples; other extra samples are left out."""
    color = {_MINISWHITE: 1, _MINISBLACK: 1, _RGB: 3}.get(photometric)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if color is None or channels < color:
        raise ImageReadError(f"{path}: unsupported TIFF layout (photometric {photometric}, {channels} samples)")
    if arr.ndim == 2:
        return arr
    kept = arr[:, :, : color + _has_alpha(channels, photometric, extrasamples)]
    return kept[:, :, 0] if kept.shape[2] == 1 else kept


def _has_alpha(channels: int, photometric: int, extrasamples: tuple) -> bool:
    """Whether the first sample after the colour ones is alpha (not some other extra sample)."""
    color = 3 if photometric == _RGB else 1
    return channels > color and extrasamples[:1] in ((_ASSOCIATED_ALPHA,), (_UNASSOCIATED_ALPHA,))


def _inverted_gray(unit: np.ndarray) -> np.ndarray:
    """MinIsWhite gray: 0 is white; the alpha plane (if any) is left as it is."""
    inverted = unit.copy()
    gray = inverted if inverted.ndim == 2 else inverted[:, :, 0]
    np.subtract(1.0, gray, out=gray)
    return inverted


def _unpremultiplied(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour stored multiplied by alpha (associated alpha), divided back; clear pixels stay black."""
    safe = np.where(alpha > 0, alpha, 1.0)[:, :, None]
    return np.clip(rgb / safe, 0.0, 1.0).astype(np.float32)


def _dpi(tags: dict[int, Any], orientation: int) -> Optional[tuple[float, float]]:
    """(x, y) dots per inch as displayed, or None."""
    per_inch = _PER_INCH.get(int(tags.get(_RESOLUTION_UNIT, 2)))
    try:
        x, y = (_ratio(tags[tag]) * per_inch for tag in (_X_RESOLUTION, _Y_RESOLUTION))  # type: ignore[operator]
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if x <= 0 or y <= 0:
        return None
    return (y, x) if orientation >= 5 else (x, y)


def _ratio(value: Any) -> float:
    """A TIFF RATIONAL as tifffile gives it: (numerator, denominator) or a number."""
    return value[0] / value[1] if isinstance(value, tuple) else float(value)


def tiff_header_fields(path: Path) -> dict[str, Any]:
    """What ``imgedit info`` shows of a TIFF Pillow cannot open, from tifffile's header parse
    (no pixels decoded); ``icc`` is the raw profile."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            tags = {tag.code: tag.value for tag in page.tags.values()}
            frames = len(tif.pages)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for bad headers
        raise ImageReadError(f"{path}: corrupt or unsupported TIFF ({one_line(exc)})") from None
    orientation = valid_orientation(tags.get(_ORIENTATION, 1))
    width, height = page.imagewidth, page.imagelength
    if orientation >= 5:  # 5-8 swap the axes
        width, height = height, width
    rgb = int(page.photometric) == _RGB
    alpha = _has_alpha(int(page.samplesperpixel), int(page.photometric), page.extrasamples)
    text_keys = [*tiff_text(tags), *([XMP_KEYWORD] if isinstance(tags.get(TIFF_XMP_TAG), bytes) else [])]
    return {
        "format": "TIFF", "width": width, "height": height,
        "mode": f"{'RGB' if rgb else 'L'}{'A' if alpha else ''};{page.dtype}",  # Pillow has no mode for it
        "bit_depth": int(page.bitspersample), "channels": int(page.samplesperpixel), "has_alpha": alpha,
        "grayscale": not rgb, "exif": False, "orientation": orientation, "icc": tags.get(_ICC) or None,
        "text": sorted(text_keys), "dpi": _dpi(tags, orientation), "frames": frames,
    }
