"""Opening source files safely: file checks, the pixel limit, Pillow's header parse, stored layout."""

from __future__ import annotations

import os
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from PIL import Image, UnidentifiedImageError

from imgedit.errors import ImageNotReadHereError, ImageReadError, UsageError
from imgedit.imageio import pngchunks

DEFAULT_MAX_PIXELS: int = 250_000_000
"""Decompression-bomb limit; override with env ``IMGEDIT_MAX_PIXELS`` or ``max_pixels``."""

GRAY16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
WIDE_MODES = GRAY16_MODES | {"I", "F"}
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, both byte orders
_decoding = threading.local()  # .path: the file this thread is opening or decoding


class UnrecognisedImageError(ImageReadError):
    """Pillow does not know the file's contents (another reader may: see :func:`is_tiff`)."""


def is_tiff(head: bytes) -> bool:
    """Whether ``head`` (the file's first bytes) starts like a TIFF."""
    return head[:4] in _TIFF_MAGIC


def one_line(exc: BaseException) -> str:
    """An exception as one short line, for error messages."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def cannot_read(path: Path, exc: OSError) -> ImageReadError:
    """The error for a file the OS refuses to read."""
    return ImageNotReadHereError(f"{path}: cannot read ({exc.strerror or exc})")


def pixel_limit(max_pixels: Optional[int]) -> int:
    """The effective pixel limit (0 or less means none)."""
    if max_pixels is not None:
        return int(max_pixels)
    env = os.environ.get("IMGEDIT_MAX_PIXELS", "").strip()
    if not env:
        return DEFAULT_MAX_PIXELS
    try:
        value = float(env)
        limit = int(value)
    except (ValueError, OverflowError):  # OverflowError: inf; NaN is a ValueError here
        limit = value = -1
    if limit < 0 or limit != value:  # -5 or 0.9 would have read as "no limit": the bomb guard off by a typo
        raise UsageError(f"IMGEDIT_MAX_PIXELS={env!r} is not a number of pixels (a whole number, 0 for no limit)")
    return limit


def check_made_size(height: int, width: int, what: str) -> None:
    """Refuse to make an image (or work at a size) above the pixel limit
    that reading obeys: a tiny file must not become a huge computation
    through a parameter (a style's scale, fills side by side).

    Raises:
        UsageError: ``height * width`` is above the limit; ``what`` says
            what would have been made, and by which parameter.
    """
    limit = pixel_limit(None)
    if limit > 0 and height * width > limit:
        raise UsageError(f"{what} would be {width}x{height} = {_megapixels(height * width)} MP, above the limit "
                         f"of {_megapixels(limit)} MP; raise it with IMGEDIT_MAX_PIXELS")


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.4g}"


def check_file(path: Path) -> int:
    """Checks ``path`` is a readable non-empty file and returns its size."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageNotReadHereError(f"{path}: no such file") from None
    except OSError as exc:
        raise cannot_read(path, exc) from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageNotReadHereError(f"{path}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device reads as 0 bytes, or forever
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        raise ImageNotReadHereError(f"{path}: is {kind}, not an image file")
    if st.st_size == 0:
        raise ImageReadError(f"{path}: is empty (0 bytes), not an image")
    return st.st_size


@contextmanager
def pillow_open(source: Any, path: Path) -> Iterator[Image.Image]:
    """Opens an image header with Pillow, mapping failures to ImageReadError.

    Inside the block (see :func:`decoding`) Pillow's own decompression-bomb
    limit is off, so that ours (larger, configurable) is the one that
    applies: callers :func:`check_size` the header before they decode.
    """
    with decoding(path):
        try:
            im = Image.open(source)
        except UnidentifiedImageError:
            raise UnrecognisedImageError(f"{path}: not an image (unrecognised file contents)") from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad headers
            raise ImageReadError(f"{path}: corrupt image header ({one_line(exc)})") from None
        with im:
            yield im


@contextmanager
def decoding(path: Path) -> Iterator[None]:
    """While this thread opens or decodes ``path``: Pillow's pixel limit does
    not apply to it (it fires again at a TIFF's ``load()``, refusing what
    ``IMGEDIT_MAX_PIXELS`` allows; callers :func:`check_size` instead), and
    :func:`decoding_path` names the file, for the CLI to log Pillow's warnings
    ("Corrupt EXIF data") with the file named. Nothing process-wide is
    switched: other threads, a host application's own, keep Pillow's limit
    as they set it."""
    _limit_only_for_others()
    outer, _decoding.path = decoding_path(), path
    try:
        yield
    finally:
        _decoding.path = outer


def decoding_path() -> Optional[Path]:
    """The file this thread is opening or decoding inside :func:`decoding`, or None."""
    return getattr(_decoding, "path", None)


def _limit_only_for_others() -> None:
    """Make Pillow's decompression-bomb check, once per process, skip the
    threads inside :func:`decoding` and run as before (with whatever
    ``Image.MAX_IMAGE_PIXELS`` holds at the time) on every other thread.
    Pillow looks the check up by name at each call, in ``Image.open`` and in
    its format plugins."""
    original = getattr(Image, "_decompression_bomb_check", None)
    if original is None or getattr(original, "imgedit_skips_decoding", False):
        return

    def check(*args: Any, **kwargs: Any) -> None:  # (size), and error_only= since Pillow 11
        if decoding_path() is None:
            original(*args, **kwargs)

    check.imgedit_skips_decoding = True  # type: ignore[attr-defined]
    with _INSTALL_LOCK:
        if not getattr(Image._decompression_bomb_check, "imgedit_skips_decoding", False):
            Image._decompression_bomb_check = check


_INSTALL_LOCK = threading.Lock()


def check_size(path: Path, size: tuple[int, int], limit: int) -> None:
    """Refuses images without pixels or with more than ``limit`` (if positive) of them."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{path}: image has no pixels ({width}x{height})")
    if limit > 0 and width * height > limit:
        raise ImageNotReadHereError(
            f"{path}: image is {width}x{height} = {_megapixels(width * height)} MP, above the limit "
            f"of {_megapixels(limit)} MP; raise it with IMGEDIT_MAX_PIXELS"
        )


def source_layout(im: Image.Image, head: bytes) -> tuple[int, bool, int, bool]:
    """Returns (bit_depth, grayscale, channels, has_alpha) of the file as stored."""
    ihdr = pngchunks.read_ihdr(head) if im.format == "PNG" else None
    if ihdr is not None:
        channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(ihdr.color_type, 3)
        alpha = ihdr.color_type in (4, 6) or "transparency" in im.info
        return (16 if ihdr.bit_depth == 16 else 8), ihdr.color_type in (0, 4), channels, alpha
    if im.format == "TIFF" and hasattr(im, "tag_v2"):
        bps = im.tag_v2.get(258, (8,))
        bps = max(bps) if isinstance(bps, tuple) else int(bps)
        samples = int(im.tag_v2.get(277, len(im.getbands())))
        gray = im.tag_v2.get(262) in (0, 1)
        alpha = (samples in (2, 4) and bool(im.tag_v2.get(338))) or "A" in im.getbands()
        return (16 if bps > 8 else 8), gray, samples, alpha
    bands = im.getbands()
    depth = 16 if im.mode in WIDE_MODES else 8
    gray = im.mode in ("1", "L", "LA", "La") or im.mode in WIDE_MODES
    alpha = "A" in bands or "a" in bands or "transparency" in im.info
    return depth, gray, len(bands), alpha
