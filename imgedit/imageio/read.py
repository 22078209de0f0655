"""Reading: :func:`read_image` decodes a whole file (every pixel, full depth) into a Picture."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from imgedit.errors import ImageNotReadHereError, ImageReadError
from imgedit.imageio import pngchunks
from imgedit.imageio.compression import source_encoding
from imgedit.imageio.decode import decode_high_depth, pillow_pixels, samples_to_unit, split_channels, to_unit
from imgedit.imageio.formats import HIGH_DEPTH_FORMATS, RAW_ADVICE, PathLike, is_camera_raw
from imgedit.imageio.metadata import dpi_of, exif_from_text, icc_of, png_color_chunks, text_of, tiff_source_exif
from imgedit.imageio.orientation import (
    ORIENTATION_TAG,
    apply_orientation,
    normalized_exif,
    orientation_of,
    reset_xmp_orientation,
    valid_orientation,
)
from imgedit.imageio.picture import Picture
from imgedit.imageio.source import (
    WIDE_MODES,
    UnrecognisedImageError,
    cannot_read,
    check_file,
    check_size,
    is_tiff,
    one_line,
    pillow_open,
    pixel_limit,
    source_layout,
)
from imgedit.imageio.tiffread import read_tiff_with_tifffile

_TIFF_BITS, _TIFF_SAMPLE_FORMAT = 258, 339


#: Files larger than this have their header read first: a 10 GB video named
#: .jpg, or a PNG whose header claims 100 000 x 100 000 pixels, is refused
#: without being held in memory whole. Smaller ones are read at once (one open).
HEADER_FIRST_BYTES = 64 << 20


def read_file_bytes(path: PathLike, max_pixels: Optional[int] = None) -> bytes:
    """The whole file, with :func:`read_image`'s errors for a missing,
    unreadable, empty file or a directory; a large file's (see
    :data:`HEADER_FIRST_BYTES`) also for what its header says: not an
    image, or above the pixel limit (``max_pixels``: as :func:`read_image`'s)."""
    path = Path(path)
    if check_file(path) > HEADER_FIRST_BYTES and not is_camera_raw(path):
        _check_header(path, pixel_limit(max_pixels))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise cannot_read(path, exc) from None


def _check_header(path: Path, limit: int) -> None:
    """Refuse ``path`` from its header alone where :func:`read_image` would
    after reading it whole; a TIFF that Pillow cannot open is left to tifffile."""
    try:
        with pillow_open(path, path) as im:  # opened by name: Pillow reads the header only
            check_size(path, im.size, limit)
    except UnrecognisedImageError:
        try:
            with open(path, "rb") as fh:
                head = fh.read(8)
        except OSError as exc:
            raise cannot_read(path, exc) from None
        if not is_tiff(head):
            raise


def read_image(path: PathLike, *, max_pixels: Optional[int] = None, data: Optional[bytes] = None) -> Picture:
    """Reads an image file with all its pixels at full depth and its metadata.

    Args:
        path: the image file (any format Pillow can open; a TIFF Pillow
            cannot open, such as float RGB, is read with tifffile).
        max_pixels: refuse images with more pixels than this (0 = no limit).
            Default: env ``IMGEDIT_MAX_PIXELS``, else ``DEFAULT_MAX_PIXELS``.
        data: the file's bytes when the caller has read them already
            (:func:`read_file_bytes`); ``path`` then only names the file in
            errors and metadata.

    Returns:
        The picture, with EXIF orientation applied to the pixels. Of a
        multi-page TIFF or an animation only the first frame is read;
        ``Picture.frames`` says how many there are.

    Raises:
        ImageReadError: missing, a directory, empty, not an image, a camera
            RAW file, corrupt, truncated, or above the pixel limit.
        UsageError: ``IMGEDIT_MAX_PIXELS`` is not a number.
    """
    path = Path(path)
    if is_camera_raw(path):  # else a TIFF-based one's preview page would be edited as the photo
        raise ImageReadError(f"{path}: a camera RAW file; {RAW_ADVICE}")
    limit = pixel_limit(max_pixels)
    if data is None:
        data = read_file_bytes(path, limit)
    try:
        return _read_with_pillow(data, path, limit)
    except UnrecognisedImageError:
        if not is_tiff(data):
            raise
    return read_tiff_with_tifffile(data, path, limit)  # a TIFF layout Pillow has no mode for


def _read_with_pillow(data: bytes, path: Path, limit: int) -> Picture:
    with pillow_open(io.BytesIO(data), path) as im:
        check_size(path, im.size, limit)
        try:
            return _picture_from(im, data, path)
        except ImageReadError:
            raise
        except MemoryError:
            raise ImageNotReadHereError(f"{path}: not enough memory to decode {im.size[0]}x{im.size[1]} pixels") from None
        except Exception as exc:  # noqa: BLE001 - Pillow/zlib raise many types for bad data
            raise ImageReadError(f"{path}: corrupt or truncated image ({one_line(exc)})") from None


def _picture_from(im: Image.Image, data: bytes, path: Path) -> Picture:
    """Decodes an opened image (all pixels, so truncation is detected) into a Picture.

    Pillow always decodes (also for 16-bit colour sources, which are then
    decoded a second time at full depth): its pass detects truncation and
    collects metadata stored after the pixel data (late PNG text, eXIf).
    """
    depth, gray, _, _ = source_layout(im, data[:64])
    fmt = im.format or "UNKNOWN"
    tiff_orientation = im.tag_v2.get(ORIENTATION_TAG) if fmt == "TIFF" else None  # Pillow drops it on load
    im.load()
    if fmt == "PNG":
        _check_png_data_complete(im, data)
    orientation = orientation_of(im) if tiff_orientation is None else valid_orientation(tiff_orientation)
    # Pillow truncates 16-bit colour (and gray+alpha) to 8 bits; only its gray modes are exact.
    # Its "I" and "F" modes clip or wrap a TIFF's 32-bit samples: tifffile keeps their type.
    if (depth == 16 and fmt in HIGH_DEPTH_FORMATS and im.mode not in WIDE_MODES) or _wide_tiff_samples(im):
        arr, icc = _high_depth_pixels(im, data, fmt, path, orientation), icc_of(im)
        unit, depth = samples_to_unit(arr, path)
    else:
        arr, icc, converted = pillow_pixels(im)
        gray = gray and not converted
        if tiff_orientation is None:  # Pillow's TIFF loader has already applied it
            arr = apply_orientation(arr, orientation)
        unit, depth = to_unit(arr)
    rgb, alpha = split_channels(unit)
    carried = _carried_metadata(im, orientation)  # before counting frames: that seeks
    encoding = source_encoding(im, data)  # likewise: an MPO's later frames have their own tables
    previews = _camera_previews(im)
    return Picture(
        rgb=rgb, alpha=alpha, format=fmt, bit_depth=depth, grayscale=gray,
        icc_profile=icc, path=path, frames=_frame_count(im) - previews, previews=previews, encoding=encoding,
        **carried,
    )


def _check_png_data_complete(im: Image.Image, data: bytes) -> None:
    """Refuses a PNG whose image data ends before its last row (libpng: "Not enough image data").

    Pillow stops quietly where a complete zlib stream ends, leaving the rows
    it did not get zero (black). So a zero last row (or, interlaced, last
    row of the last pass: the one above) is the cheap sign, and only then
    is the stream inflated again, without keeping it, and measured against
    the header. A photo pays for reading one pixel.
    """
    width, height = im.size
    pixels = im.load()
    if not any(_row_is_blank(pixels, width, y) for y in range(max(0, height - 2), height)):
        return
    ihdr = pngchunks.read_ihdr(data[:64])
    if ihdr is None:
        return
    needed = pngchunks.image_data_size(ihdr)
    got = pngchunks.inflated_data_size(data, needed)
    if got < needed:
        raise ValueError(f"not enough image data: {got} of {needed} bytes for {width}x{height} pixels")


def _row_is_blank(pixels: Any, width: int, y: int) -> bool:
    """Whether row ``y`` is all zero; stops at the first pixel that is not (pixel access,
    not a crop: a crop of a very wide row trips Pillow's decompression-bomb check)."""
    for x in range(width):
        value = pixels[x, y]
        if any(value) if isinstance(value, tuple) else value:
            return False
    return True


def _wide_tiff_samples(im: Image.Image) -> bool:
    """A TIFF of 32-bit integer or float samples (Pillow's "I"/"F" modes would clip or wrap them)."""
    if im.format != "TIFF" or im.mode not in WIDE_MODES:
        return False
    bits = im.tag_v2.get(_TIFF_BITS, (8,))
    bits = max(bits) if isinstance(bits, tuple) else int(bits)
    return bits >= 32 or im.tag_v2.get(_TIFF_SAMPLE_FORMAT) == 3


def _frame_count(im: Image.Image) -> int:
    """Frames (pages) in the file; counting reads every frame's header."""
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - a damaged later frame must not stop the first from being edited
        return 1


def _camera_previews(im: Image.Image) -> int:
    """How many of an MPO's later images are its camera's previews ("Large
    Thumbnail" in their MP entries): many cameras' JPEGs carry one. A stereo
    pair's second eye or a panorama's next frame is not one."""
    if im.format != "MPO":
        return 0
    try:
        entries = im.mpinfo[0xB002]
        return sum("Thumbnail" in str(entry["Attribute"]["MPType"]) for entry in entries[1:])
    except Exception:  # noqa: BLE001 - a damaged MP index: count every image as a frame
        return 0


def _high_depth_pixels(im: Image.Image, data: bytes, fmt: str, path: Path, orientation: int) -> np.ndarray:
    """16-bit samples decoded outside Pillow, checked against the header and oriented."""
    arr = decode_high_depth(data, fmt, path)
    stored = im.size[::-1] if not (fmt == "TIFF" and orientation >= 5) else im.size
    if arr.shape[:2] != tuple(stored):
        raise ImageReadError(f"{path}: decoded size {arr.shape[1]}x{arr.shape[0]} does not match the header")
    return apply_orientation(arr, orientation)


def _carried_metadata(im: Image.Image, orientation: int) -> dict[str, Any]:
    """The Picture's ``exif``, ``text``, ``dpi`` and ``color_chunks``, with the orientation reset where applied."""
    text = text_of(im)
    # (a TIFF keeps its camera's tags in its own IFD0: they are made EXIF, for outputs of every format)
    raw_exif = im.info.get("exif") or exif_from_text(text) or tiff_source_exif(im)
    if orientation != 1:
        reset_xmp_orientation(text)
    return {
        "exif": normalized_exif(raw_exif, orientation != 1) if raw_exif else None,
        "text": text,
        "dpi": dpi_of(im, orientation),
        "color_chunks": png_color_chunks(im),
    }
