"""Writing: :func:`write_image` encodes a Picture and puts the file in place atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from imgedit.atomic import NO_SPACE, DestinationExists, atomic_file
from imgedit.errors import DiskFullError, ImageWriteError, OutputExistsError, ShapeError, UsageError
from imgedit.imageio.encode import encode_to
from imgedit.imageio.formats import PathLike, format_for_path, normalize_format
from imgedit.imageio.picture import Picture
from imgedit.imageio.source import one_line


def write_image(
    picture: Picture,
    path: PathLike,
    *,
    format: Optional[str] = None,  # noqa: A002 - the public name the CLI uses
    quality: Optional[int] = None,
    overwrite: bool = False,
    durable: bool = True,
    source_mode: Optional[int] = None,
) -> Path:
    """Writes a picture atomically, keeping as much of its metadata as the format can hold.

    16-bit pictures stay 16-bit in PNG and TIFF; grayscale pictures whose
    pixels are still gray are written single-channel (except WebP); alpha is
    kept in PNG, TIFF, WebP, AVIF, TGA and (transparent or opaque) GIF and
    dropped elsewhere (JPEG, BMP). EXIF, ICC profile, text and dpi are
    carried where the format supports them; a format without ICC profiles
    gets sRGB pixels. The file appears complete or not
    at all: it is written beside the destination and renamed into place.

    Args:
        picture: what to write.
        path: destination; missing parent folders are created.
        format: Pillow format name; default from the path suffix.
        quality: 1-100 for JPEG and WebP (WebP 100 = lossless). None (the
            default): written like the source where it was of this format
            (a lossless WebP stays lossless; a JPEG keeps its chroma
            subsampling and its estimated quality, within 75-95), else 95.
        overwrite: replace an existing file.
        durable: fsync before the rename, so the file also survives a power
            cut (the batch runner skips that per file; see ``RunOptions.fsync``).
        source_mode: the ``st_mode`` of the file the picture was made from:
            a new file is then readable by no group or others that file's
            bits leave out (a 0600 photo gives a 0600 edit, as ``cp`` does).

    Returns:
        The path written.

    Raises:
        UsageError: unknown format/suffix or quality out of range.
        OutputExistsError: the destination exists (without ``overwrite``),
            or appeared while the file was written.
        ImageWriteError: the destination is a folder, or the file cannot be
            encoded or written.
        ShapeError: the picture's arrays have the wrong shape.
    """
    path = Path(path)
    fmt = _checked_format(path, format, quality, overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, overwrite, durable, source_mode) as out:
            encode_to(out, picture, fmt, quality)
    except (ShapeError, UsageError):
        raise
    except DestinationExists:
        raise _exists(path) from None
    except OSError as exc:
        if exc.errno is None:  # Pillow's encoders raise errno-less OSErrors
            raise ImageWriteError(f"{path}: cannot encode as {fmt} ({one_line(exc)})") from None
        if exc.errno in NO_SPACE:
            raise DiskFullError(f"{path}: cannot write ({one_line(exc)})") from None
        raise ImageWriteError(f"{path}: cannot write ({one_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - encoders raise many types
        raise ImageWriteError(f"{path}: cannot encode as {fmt} ({one_line(exc)})") from None
    return path


def _checked_format(path: Path, fmt: Optional[str], quality: Optional[int], overwrite: bool) -> str:
    """Checks the arguments of :func:`write_image` and returns the output format."""
    name = normalize_format(fmt) if fmt else format_for_path(path)
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100):
        raise UsageError(f"quality must be an integer from 1 to 100, got {quality!r}")
    if path.is_dir():
        raise ImageWriteError(f"{path}: is a directory")
    if path.exists() and not overwrite:
        raise _exists(path)
    return name


def _exists(dest: Path) -> OutputExistsError:
    return OutputExistsError(f"{dest}: exists; pass --overwrite to replace it")
