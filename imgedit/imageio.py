"""Image reading and writing that loses nothing.

:func:`read_image` returns a :class:`Picture`: float32 RGB pixels in [0, 1],
an optional alpha plane, and the metadata worth carrying to the output (bit
depth, grayscale-ness, EXIF, ICC profile, PNG text, dpi). :func:`write_image`
writes a Picture back atomically, keeping as much of that as the output format
can hold.

Notes on what can be lost (by design):

* JPEG, BMP and other formats without alpha drop the alpha plane; JPEG, WebP
  and BMP are 8-bit only, so 16-bit pictures are quantised to 8 bits there.
* WebP has no grayscale mode: grayscale pictures are written as RGB.
* A 16-bit grayscale picture with alpha written to TIFF is stored as RGBA.
* CMYK (and LAB/HSV/YCbCr) sources are converted to RGB; CMYK uses the
  embedded ICC profile when there is one, else Pillow's naive formula. The
  source ICC profile describes the old colour space, so it is dropped.
* 32-bit integer ("I") and float ("F") sources are clipped to [0, 65535] and
  [0, 1] respectively and treated as 16-bit.
* EXIF is carried whole into JPEG, PNG and WebP; TIFF output gets only its
  Make, Model and DateTime (as plain TIFF tags). A TIFF source's own tags are
  not turned into EXIF (its description, software, artist and copyright go
  to ``text``).
* ``text`` goes whole into PNG; elsewhere only what has a home: XMP (JPEG,
  WebP, TIFF), "Comment" (JPEG), "Description"/"Software"/"Author"/
  "Copyright" (TIFF).

Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False: truncated files
are detected by decoding every pixel inside :func:`read_image`.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import stat
import struct
import tempfile
import threading
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from imgedit import pngchunks
from imgedit.errors import ImageReadError, ImageWriteError, ShapeError, UsageError

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_MAX_PIXELS: int = 250_000_000
"""Decompression-bomb limit; override with env ``IMGEDIT_MAX_PIXELS`` or ``max_pixels``."""

_BASE_SUFFIXES = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".tif": "TIFF",
    ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP",
}
_PREFERRED_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}
_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
_ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})
_HIGH_DEPTH_FORMATS = frozenset({"PNG", "TIFF"})
_EXIF_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})  # TIFF: see _tiff_exif_tags
_ICC_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "TIFF"})
_DPI_FORMATS = frozenset({"JPEG", "PNG", "TIFF", "BMP"})
_GRAY16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_WIDE_MODES = _GRAY16_MODES | {"I", "F"}
_ORIENTATION = 0x0112
_XMP_KEY = "XML:com.adobe.xmp"
_TIFF_EXIF_TAGS = (271, 272, 306)  # Make, Model, DateTime
_TIFF_XMP_TAG = 700
# TIFF ASCII tags carried as text, under the matching PNG keyword.
_TIFF_TEXT_TAGS = {270: "Description", 305: "Software", 315: "Author", 33432: "Copyright"}
_XMP_ORIENTATION = (
    re.compile(r"(tiff:Orientation\s*=\s*[\"'])\d([\"'])"),
    re.compile(r"(<tiff:Orientation>)\s*\d\s*(</tiff:Orientation>)"),
)
_PIL_LIMIT_LOCK = threading.Lock()

if TYPE_CHECKING:  # pragma: no cover - built lazily by __getattr__ below
    IMAGE_SUFFIXES: frozenset[str]
_UNDECODABLE = frozenset({"MPEG"})  # Pillow identifies MPEG files but cannot decode them


@dataclass
class Picture:
    """An image plus the metadata needed to write it back without loss.

    Attributes:
        rgb: (H, W, 3) float32 in [0, 1], RGB; grayscale sources are
            replicated to 3 channels.
        alpha: (H, W) float32 in [0, 1], or None.
        format: Pillow format name of the source ("JPEG", "PNG", ...).
        bit_depth: bits per channel of the source, 8 or 16.
        grayscale: the source was single-channel; it is written back so.
        exif: raw EXIF (starting ``Exif\\0\\0``) with Orientation reset to 1,
            because the orientation is already applied to the pixels.
        icc_profile: raw ICC profile, or None.
        text: PNG tEXt/iTXt/zTXt chunks and similar text (JPEG comment as
            "Comment", XMP as "XML:com.adobe.xmp", TIFF description...).
        dpi: (x, y) dots per inch, or None.
        path: where the picture was read from, if anywhere.
    """

    rgb: np.ndarray
    alpha: Optional[np.ndarray] = None
    format: str = "PNG"
    bit_depth: int = 8
    grayscale: bool = False
    exif: Optional[bytes] = None
    icc_profile: Optional[bytes] = None
    text: dict[str, str] = field(default_factory=dict)
    dpi: Optional[tuple[float, float]] = None
    path: Optional[Path] = None

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.rgb.shape[0])

    def with_rgb(self, rgb: np.ndarray) -> "Picture":
        """Returns a copy with new pixels and the same metadata.

        If the size changed, the alpha plane is resized to match (bilinear).

        Raises:
            ShapeError: ``rgb`` is not (H, W, 3).
        """
        rgb = np.asarray(rgb, dtype=np.float32)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
            raise ShapeError("Picture.with_rgb", "a non-empty (H, W, 3) array", rgb.shape)
        alpha = self.alpha
        if alpha is not None and alpha.shape != rgb.shape[:2]:
            import cv2  # lazy: keeps `import imgedit` cheap

            size = (rgb.shape[1], rgb.shape[0])
            resized = cv2.resize(alpha.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
            alpha = np.clip(resized, 0.0, 1.0)
        return dataclasses.replace(self, rgb=rgb, alpha=alpha, text=dict(self.text))


# ---------------------------------------------------------------- formats


def __getattr__(name: str) -> Any:
    """Builds ``IMAGE_SUFFIXES`` on first use: it needs every Pillow plugin imported."""
    if name == "IMAGE_SUFFIXES":
        value = _image_suffixes()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _image_suffixes() -> frozenset[str]:
    """Suffixes of the base formats plus every format Pillow can really open."""
    from PIL import ImageFile

    suffixes = set(_BASE_SUFFIXES)
    for ext, fmt in Image.registered_extensions().items():
        opener = Image.OPEN.get(fmt, (None,))[0]
        # Stub plugins (HDF5, GRIB, BUFR...) identify files they cannot decode.
        if fmt in _UNDECODABLE or not isinstance(opener, type) or issubclass(opener, ImageFile.StubImageFile):
            continue
        suffixes.add(ext.lower())
    return frozenset(suffixes)


def _normalize_format(fmt: str) -> str:
    """Upper-cases a format name, resolves aliases and checks Pillow can write it."""
    name = _FORMAT_ALIASES.get(fmt.strip().upper(), fmt.strip().upper())
    if name in _PREFERRED_SUFFIX:
        return name
    Image.init()
    if name not in Image.SAVE:
        raise UsageError(f"unknown or unwritable image format {fmt!r} (try PNG, JPEG, TIFF, WEBP, BMP)")
    return name


def format_for_path(path: PathLike) -> str:
    """Returns the Pillow format name an output path's suffix asks for.

    Raises:
        UsageError: no suffix, or a suffix no writable format uses.
    """
    suffix = Path(path).suffix.lower()
    if not suffix:
        raise UsageError(f"{path}: no file suffix, cannot tell the image format (use .png, .jpg, .tif, .webp, .bmp)")
    if suffix in _BASE_SUFFIXES:
        return _BASE_SUFFIXES[suffix]
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise UsageError(f"{path}: unknown image suffix {suffix!r} (use .png, .jpg, .tif, .webp, .bmp)")
    return fmt


def suffix_for_format(fmt: str) -> str:
    """Returns the usual file suffix for a format ("JPEG" -> ".jpg").

    Raises:
        UsageError: unknown format.
    """
    name = _normalize_format(fmt)
    if name in _PREFERRED_SUFFIX:
        return _PREFERRED_SUFFIX[name]
    for ext, ext_fmt in Image.registered_extensions().items():
        if ext_fmt == name:
            return ext
    raise UsageError(f"no file suffix known for image format {fmt!r}")


# ---------------------------------------------------------------- reading helpers


def _pixel_limit(max_pixels: Optional[int]) -> int:
    """The effective pixel limit (0 or less means none)."""
    if max_pixels is not None:
        return int(max_pixels)
    env = os.environ.get("IMGEDIT_MAX_PIXELS", "").strip()
    if not env:
        return DEFAULT_MAX_PIXELS
    try:
        return int(float(env))
    except ValueError:
        raise UsageError(f"IMGEDIT_MAX_PIXELS={env!r} is not a number of pixels") from None


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.4g}"


def _check_file(path: Path) -> int:
    """Checks ``path`` is a readable non-empty file and returns its size."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(f"{path}: is a directory, not an image file")
    if st.st_size == 0:
        raise ImageReadError(f"{path}: is empty (0 bytes), not an image")
    return st.st_size


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


@contextmanager
def _pillow_open(source: Any, path: Path) -> Iterator[Image.Image]:
    """Opens an image header with Pillow, mapping failures to ImageReadError.

    Pillow's own decompression-bomb limit is switched off just for the header
    parse, so that our (larger, configurable) limit is the one that applies.
    """
    try:
        with _PIL_LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                im = Image.open(source)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image (unrecognised file contents)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad headers
        raise ImageReadError(f"{path}: corrupt image header ({_one_line(exc)})") from None
    with im:
        yield im


def _check_size(path: Path, size: tuple[int, int], limit: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{path}: image has no pixels ({width}x{height})")
    if limit > 0 and width * height > limit:
        raise ImageReadError(
            f"{path}: image is {width}x{height} = {_megapixels(width * height)} MP, above the limit "
            f"of {_megapixels(limit)} MP; raise it with IMGEDIT_MAX_PIXELS"
        )


def _source_layout(im: Image.Image, head: bytes) -> tuple[int, bool, int, bool]:
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
    depth = 16 if im.mode in _GRAY16_MODES or im.mode in ("I", "F") else 8
    gray = im.mode in ("1", "L", "LA", "La", "I", "F") or im.mode in _GRAY16_MODES
    alpha = "A" in bands or "a" in bands or "transparency" in im.info
    return depth, gray, len(bands), alpha


def _orientation(im: Image.Image) -> int:
    """EXIF (or XMP) orientation, 1-8; avoids decoding a PNG just to look for a late eXIf."""
    exif = Image.Image.getexif(im) if im.format == "PNG" else im.getexif()
    return _valid_orientation(exif.get(_ORIENTATION, 1))


def _valid_orientation(value: Any) -> int:
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Applies an EXIF orientation to (H, W[, C]) pixels, like ``ImageOps.exif_transpose``."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return arr if op is None else np.ascontiguousarray(op(arr))


# ---------------------------------------------------------------- pixel decoding


def _to_unit(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer or float samples -> float32 in [0, 1], plus the bit depth they represent."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255), 8
    if arr.dtype.kind in "ui":
        return np.clip(arr, 0, 65535).astype(np.float32) / np.float32(65535), 16
    return np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0), 16


def _split_channels(arr: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(H, W[, C]) RGB(A) or gray(+alpha) samples -> (rgb, alpha)."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    alpha = arr[:, :, -1] if channels in (2, 4) else None
    color = arr[:, :, :3] if channels >= 3 else np.repeat(arr[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(color), None if alpha is None else np.ascontiguousarray(alpha)


def _pillow_pixels(im: Image.Image) -> tuple[np.ndarray, Optional[bytes], bool]:
    """Decodes with Pillow.

    Returns:
        Samples in RGB(A) / gray(+alpha) order, the ICC profile if it still
        applies, and whether a non-RGB colour space (CMYK...) was converted.
    """
    icc = im.info.get("icc_profile") or None
    mode, has_trns = im.mode, "transparency" in im.info
    if mode in _GRAY16_MODES or mode in ("I", "F"):
        return np.asarray(im), icc, False
    if mode in ("L", "1"):
        return np.asarray(im.convert("LA" if has_trns else "L")), icc, False
    if mode in ("LA", "La"):
        return np.asarray(im.convert("LA")), icc, False
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA"):
        palette_alpha = mode == "P" and im.palette is not None and "A" in im.palette.mode
        want_alpha = has_trns or palette_alpha or "A" in mode or "a" in mode
        return np.asarray(im.convert("RGBA" if want_alpha else "RGB")), icc, False
    if mode == "CMYK" and icc:
        converted = _cmyk_with_profile(im, icc)
        if converted is not None:
            return converted, None, True
    # CMYK without profile, YCbCr, LAB, HSV...: Pillow's formula; the profile no longer applies.
    return np.asarray(im.convert("RGB")), None, True


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


def _decode_high_depth(data: bytes, fmt: str, path: Path) -> np.ndarray:
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
    if arr.ndim == 3 and arr.shape[2] >= 3:  # OpenCV is BGR(A)
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
    return arr


def _tifffile_decode(data: bytes) -> Optional[np.ndarray]:
    """First page of a TIFF via tifffile (exact for any layout), or None to fall back to OpenCV."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            arr = page.asarray()
            if page.planarconfig == 2 and arr.ndim == 3:  # separate planes: (C, H, W)
                arr = np.moveaxis(arr, 0, -1)
    except Exception:  # noqa: BLE001 - e.g. a codec tifffile lacks: let OpenCV try
        return None
    return arr if arr.ndim in (2, 3) and (arr.ndim == 2 or arr.shape[2] <= 4) else None


# ---------------------------------------------------------------- metadata


def _decode_text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    return str(value)


def _text_of(im: Image.Image) -> dict[str, str]:
    """Textual metadata: PNG text chunks, JPEG/GIF comment, XMP, TIFF ASCII tags."""
    text: dict[str, str] = {}
    if im.format == "PNG":
        text.update({str(k): str(v) for k, v in getattr(im, "text", {}).items()})
    if im.info.get("comment"):
        text.setdefault("Comment", _decode_text(im.info["comment"]))
    if im.info.get("xmp") and _XMP_KEY not in text:
        text[_XMP_KEY] = _decode_text(im.info["xmp"])
    if im.format == "TIFF" and hasattr(im, "tag_v2"):
        for tag, key in _TIFF_TEXT_TAGS.items():
            value = im.tag_v2.get(tag)
            if isinstance(value, str) and value.strip("\0 "):
                text.setdefault(key, value.rstrip("\0"))
    return text


def _dpi_of(im: Image.Image, orientation: int) -> Optional[tuple[float, float]]:
    dpi = im.info.get("dpi")
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return None
    if x <= 0 or y <= 0:
        return None
    return (y, x) if orientation >= 5 else (x, y)  # 5-8 swap the axes


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
        if tag == _ORIENTATION and typ == 3 and n == 1:  # SHORT, left-justified in the value field
            patched = bytearray(tiff)
            struct.pack_into(order + "H", patched, entry + 8, 1)
            return bytes(patched)
    return None


def _normalized_exif(raw: bytes, reset_orientation: bool) -> bytes:
    """EXIF with the ``Exif\\0\\0`` prefix and, if asked, Orientation = 1."""
    body = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    if reset_orientation:
        try:
            patched = _patch_ifd0_orientation(body)
        except struct.error:
            patched = None
        if patched is None:  # unusual layout: let Pillow re-serialise it
            exif = Image.Exif()
            exif.load(b"Exif\x00\x00" + body)
            exif[_ORIENTATION] = 1
            return exif.tobytes()
        body = patched
    return b"Exif\x00\x00" + body


def _reset_xmp_orientation(text: dict[str, str]) -> None:
    xmp = text.get(_XMP_KEY)
    if xmp:
        for pattern in _XMP_ORIENTATION:
            xmp = pattern.sub(r"\g<1>1\g<2>", xmp)
        text[_XMP_KEY] = xmp


# ---------------------------------------------------------------- read_image


def read_image(path: PathLike, *, max_pixels: Optional[int] = None) -> Picture:
    """Reads an image file with all its pixels at full depth and its metadata.

    Args:
        path: the image file (any format Pillow can open).
        max_pixels: refuse images with more pixels than this (0 = no limit).
            Default: env ``IMGEDIT_MAX_PIXELS``, else ``DEFAULT_MAX_PIXELS``.

    Returns:
        The picture, with EXIF orientation applied to the pixels.

    Raises:
        ImageReadError: missing, a directory, empty, not an image, corrupt,
            truncated, or above the pixel limit.
        UsageError: ``IMGEDIT_MAX_PIXELS`` is not a number.
    """
    path = Path(path)
    _check_file(path)
    limit = _pixel_limit(max_pixels)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with _pillow_open(io.BytesIO(data), path) as im:
        _check_size(path, im.size, limit)
        try:
            return _picture_from(im, data, path)
        except ImageReadError:
            raise
        except MemoryError:
            raise ImageReadError(f"{path}: not enough memory to decode {im.size[0]}x{im.size[1]} pixels") from None
        except Exception as exc:  # noqa: BLE001 - Pillow/zlib raise many types for bad data
            raise ImageReadError(f"{path}: corrupt or truncated image ({_one_line(exc)})") from None


def _picture_from(im: Image.Image, data: bytes, path: Path) -> Picture:
    """Decodes an opened image (all pixels, so truncation is detected) into a Picture.

    Pillow always decodes (also for 16-bit colour sources, which are then
    decoded a second time at full depth): its pass detects truncation and
    collects metadata stored after the pixel data (late PNG text, eXIf).
    """
    depth, gray, _, _ = _source_layout(im, data[:64])
    fmt = im.format or "UNKNOWN"
    tiff_orientation = im.tag_v2.get(_ORIENTATION) if fmt == "TIFF" else None  # Pillow drops it on load
    im.load()
    orientation = _orientation(im) if tiff_orientation is None else _valid_orientation(tiff_orientation)
    # Pillow truncates 16-bit colour (and gray+alpha) to 8 bits; only its gray modes are exact.
    if depth == 16 and fmt in _HIGH_DEPTH_FORMATS and im.mode not in _WIDE_MODES:
        arr, icc = _decode_high_depth(data, fmt, path), im.info.get("icc_profile") or None
        stored = im.size[::-1] if not (fmt == "TIFF" and orientation >= 5) else im.size
        if arr.shape[:2] != tuple(stored):
            raise ImageReadError(f"{path}: decoded size {arr.shape[1]}x{arr.shape[0]} does not match the header")
        arr = _apply_orientation(arr, orientation)
    else:
        arr, icc, converted = _pillow_pixels(im)
        gray = gray and not converted
        if tiff_orientation is None:  # Pillow's TIFF loader has already applied it
            arr = _apply_orientation(arr, orientation)
    unit, depth = _to_unit(arr)
    rgb, alpha = _split_channels(unit)
    text = _text_of(im)
    raw_exif = im.info.get("exif") or _exif_from_text(text)
    if orientation != 1:
        _reset_xmp_orientation(text)
    return Picture(
        rgb=rgb, alpha=alpha, format=fmt, bit_depth=depth, grayscale=gray,
        exif=_normalized_exif(raw_exif, orientation != 1) if raw_exif else None,
        icc_profile=icc, text=text, dpi=_dpi_of(im, orientation), path=path,
    )


def _exif_from_text(text: dict[str, str]) -> Optional[bytes]:
    """Moves ImageMagick's hex "Raw profile type exif" PNG text into real EXIF bytes."""
    raw = text.get("Raw profile type exif")
    if raw is None:
        return None
    try:
        exif = bytes.fromhex("".join(raw.split("\n")[3:]))
    except ValueError:
        return None  # not the usual layout: leave it as plain text
    del text["Raw profile type exif"]
    return exif or None


# ---------------------------------------------------------------- writing helpers

_JPEG_MARKER_MAX = 65533  # bytes a JPEG APP marker can hold; larger EXIF/XMP cannot be stored
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601, as Pillow's convert("L")


def _quantize(values: np.ndarray, depth: int) -> np.ndarray:
    """[0, 1] floats -> rounded, clipped uint8 or uint16."""
    top = 65535 if depth == 16 else 255
    scaled = np.round(np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * np.float32(top))
    return scaled.astype(np.uint16 if depth == 16 else np.uint8)


def _output_pixels(picture: Picture, depth: int, keep_alpha: bool, gray: bool) -> np.ndarray:
    """The samples to encode: (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3|4) RGB(A)."""
    rgb = np.asarray(picture.rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ShapeError("Picture.rgb", "a non-empty (H, W, 3) array", rgb.shape)
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


def _png_info(text: dict[str, str]) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        if not pngchunks.valid_keyword(key):
            continue  # PNG cannot store this keyword
        if key == _XMP_KEY:
            info.add_itxt(key, value)
        else:
            info.add_text(key, value, zip=len(value) > 1024)
    return info


def _tiff_exif_tags(exif: Optional[bytes]) -> dict[int, str]:
    """Camera make/model/date from EXIF as plain TIFF tags.

    A whole EXIF block cannot be merged into a TIFF safely (Pillow fails on
    the sub-IFD pointers), so a TIFF output keeps just these IFD0 strings.
    """
    if not exif:
        return {}
    parsed = Image.Exif()
    with suppress(Exception):
        parsed.load(exif)
    return {tag: parsed[tag] for tag in _TIFF_EXIF_TAGS if isinstance(parsed.get(tag), str) and parsed[tag]}


def _format_kwargs(picture: Picture, fmt: str, quality: int) -> dict[str, Any]:
    """Format-specific Pillow save options: quality, text, XMP."""
    text = picture.text
    xmp = text.get(_XMP_KEY)
    if fmt == "JPEG":
        # Chroma subsampling visibly smears colour edges; skip it at high quality.
        kwargs: dict[str, Any] = {"quality": quality, "subsampling": 0 if quality >= 90 else 2, "optimize": True}
        if text.get("Comment"):
            kwargs["comment"] = text["Comment"]
        if xmp and len(xmp.encode("utf-8")) < _JPEG_MARKER_MAX - 30:
            kwargs["xmp"] = xmp.encode("utf-8")
        return kwargs
    if fmt == "PNG":
        return {"pnginfo": _png_info(text), "compress_level": 6}
    if fmt == "WEBP":
        lossless = quality >= 100
        kwargs = {"quality": quality, "lossless": lossless, "exact": lossless}
        if xmp:
            kwargs["xmp"] = xmp.encode("utf-8")
        return kwargs
    if fmt == "TIFF":
        tiffinfo: dict[int, Any] = dict(_tiff_exif_tags(picture.exif))
        if xmp:
            tiffinfo[_TIFF_XMP_TAG] = xmp.encode("utf-8")
        kwargs = {"compression": "tiff_adobe_deflate", "tiffinfo": tiffinfo}
        names = {"Description": "description", "Software": "software", "Author": "artist", "Copyright": "copyright"}
        kwargs.update({arg: text[key] for key, arg in names.items() if text.get(key)})
        return kwargs
    return {}


def _save_kwargs(picture: Picture, fmt: str, quality: int) -> dict[str, Any]:
    """All Pillow save options: the metadata the format can hold plus format options."""
    kwargs = _format_kwargs(picture, fmt, quality)
    if picture.icc_profile and fmt in _ICC_FORMATS:
        kwargs["icc_profile"] = picture.icc_profile
    exif_fits = fmt != "JPEG" or (picture.exif is not None and len(picture.exif) <= _JPEG_MARKER_MAX)
    if picture.exif and fmt in _EXIF_FORMATS and exif_fits:
        kwargs["exif"] = picture.exif
    if picture.dpi and fmt in _DPI_FORMATS:
        kwargs["dpi"] = tuple(float(d) for d in picture.dpi)
    return kwargs


def _encode_pillow(picture: Picture, pixels: np.ndarray, fmt: str, quality: int) -> bytes:
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt, **_save_kwargs(picture, fmt, quality))
    except (OSError, ValueError, KeyError):
        if fmt in _PREFERRED_SUFFIX or image.mode == "RGB":
            raise
        # Some less common format that cannot take this mode: plain RGB is the safe fallback.
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


def _encode_png16(picture: Picture, pixels: np.ndarray) -> bytes:
    """16-bit PNG (Pillow cannot write it) with iCCP, pHYs, eXIf and text chunks."""
    chunks = []
    if picture.icc_profile:
        chunks.append(pngchunks.iccp_chunk(picture.icc_profile))
    if picture.dpi:
        chunks.append(pngchunks.phys_chunk(picture.dpi))
    if picture.exif:
        chunks.append(pngchunks.exif_chunk(picture.exif))
    for key, value in picture.text.items():
        chunk = pngchunks.text_chunk(key, value)
        if chunk is not None:
            chunks.append(chunk)
    return pngchunks.encode_png16(pixels, chunks)


def _encode_tiff16(picture: Picture, pixels: np.ndarray) -> bytes:
    """16-bit TIFF via tifffile (keeps ICC, dpi, description); OpenCV if tifffile is missing."""
    try:
        import tifffile
    except ImportError:
        return _encode_tiff16_cv2(pixels)
    rgb_like = pixels.ndim == 3 and pixels.shape[2] >= 3
    kwargs: dict[str, Any] = {
        "photometric": "rgb" if rgb_like else "minisblack",
        "extrasamples": ("unassalpha",) if pixels.ndim == 3 and pixels.shape[2] in (2, 4) else None,
        "compression": "zlib",
        "predictor": True,
        "metadata": None,  # no tifffile JSON in ImageDescription
        "iccprofile": picture.icc_profile or None,
        "description": picture.text.get("Description") or None,
        "software": picture.text.get("Software") or False,  # False: no "tifffile.py" tag
    }
    tags = _tiff_exif_tags(picture.exif)
    kwargs["extratags"] = [(tag, "s", 0, value, True) for tag, value in tags.items()]
    xmp = picture.text.get(_XMP_KEY)
    if xmp:
        data = xmp.encode("utf-8")
        kwargs["extratags"].append((_TIFF_XMP_TAG, "B", len(data), data, True))
    if picture.dpi:
        kwargs.update(resolution=tuple(float(d) for d in picture.dpi), resolutionunit=2)  # 2 = inch
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, **kwargs)
    return buffer.getvalue()


def _encode_tiff16_cv2(pixels: np.ndarray) -> bytes:
    """Fallback 16-bit TIFF writer; carries no metadata."""
    import cv2  # lazy: keeps `import imgedit` cheap

    arr = pixels
    if arr.ndim == 3 and arr.shape[2] >= 3:
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]  # OpenCV wants BGR(A)
    ok, encoded = cv2.imencode(".tiff", arr)
    if not ok:
        raise ValueError("OpenCV could not encode the 16-bit TIFF")
    return encoded.tobytes()


def _encode(picture: Picture, fmt: str, quality: int) -> bytes:
    """Encodes a picture in memory, at 16 bits where the format and the picture allow."""
    depth = 16 if picture.bit_depth == 16 and fmt in _HIGH_DEPTH_FORMATS else 8
    keep_alpha = picture.alpha is not None and fmt in _ALPHA_FORMATS
    # WebP has no gray mode; Pillow cannot read back 16-bit gray+alpha TIFF, so use RGBA there.
    gray = picture.grayscale and fmt != "WEBP" and not (fmt == "TIFF" and depth == 16 and keep_alpha)
    pixels = _output_pixels(picture, depth, keep_alpha, gray)
    if depth == 16 and fmt == "PNG":
        return _encode_png16(picture, pixels)
    if depth == 16:
        return _encode_tiff16(picture, pixels)
    return _encode_pillow(picture, pixels, fmt, quality)


# ---------------------------------------------------------------- atomic writes

_umask_cache: list[int] = []


def _current_umask() -> int:
    """The process umask; from /proc where possible, since os.umask can only read it by setting it."""
    with suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0o022)
    os.umask(current)
    return current


def _default_mode() -> int:
    """Permission bits a plain ``open(..., "w")`` would give (mkstemp uses 0600)."""
    if not _umask_cache:
        _umask_cache.append(_current_umask())
    return 0o666 & ~_umask_cache[0]


def _commit(tmp: str, dest: Path, overwrite: bool) -> None:
    """Moves the finished temporary file into place, never clobbering unless asked."""
    if overwrite:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)  # atomic "create only if absent"
    except FileExistsError:
        raise ImageWriteError(f"{dest}: exists; pass --overwrite to replace it") from None
    except OSError:  # no hard links on this filesystem: check, then rename
        if dest.exists():
            raise ImageWriteError(f"{dest}: exists; pass --overwrite to replace it") from None
        os.replace(tmp, dest)
        return
    os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    """Makes the rename durable; best effort (not possible on every OS)."""
    with suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(data: bytes, dest: Path, overwrite: bool) -> None:
    """Writes ``data`` to a temporary file beside ``dest``, fsyncs it, then renames it into place."""
    mode = stat.S_IMODE(dest.stat().st_mode) if dest.exists() else _default_mode()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with suppress(OSError, NotImplementedError):
            os.chmod(tmp, mode)
        _commit(tmp, dest, overwrite)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(dest.parent)


# ---------------------------------------------------------------- write_image


def write_image(
    picture: Picture,
    path: PathLike,
    *,
    format: Optional[str] = None,  # noqa: A002 - the public name the CLI uses
    quality: int = 95,
    overwrite: bool = False,
) -> Path:
    """Writes a picture atomically, keeping as much of its metadata as the format can hold.

    16-bit pictures stay 16-bit in PNG and TIFF; grayscale pictures are
    written single-channel (except WebP); alpha is kept in PNG, TIFF and WebP
    and dropped elsewhere (JPEG, BMP). EXIF, ICC profile, text and dpi are
    carried where the format supports them. The file appears complete or not
    at all: it is written beside the destination and renamed into place.

    Args:
        picture: what to write.
        path: destination; missing parent folders are created.
        format: Pillow format name; default from the path suffix.
        quality: 1-100 for JPEG and WebP (WebP 100 = lossless).
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        UsageError: unknown format/suffix or quality out of range.
        ImageWriteError: destination exists (without ``overwrite``), is a
            folder, or the file cannot be encoded or written.
        ShapeError: the picture's arrays have the wrong shape.
    """
    path = Path(path)
    fmt = _normalize_format(format) if format else format_for_path(path)
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise UsageError(f"quality must be an integer from 1 to 100, got {quality!r}")
    if path.is_dir():
        raise ImageWriteError(f"{path}: is a directory")
    if path.exists() and not overwrite:
        raise ImageWriteError(f"{path}: exists; pass --overwrite to replace it")
    try:
        data = _encode(picture, fmt, quality)
    except (ShapeError, UsageError):
        raise
    except Exception as exc:  # noqa: BLE001 - encoders raise many types
        raise ImageWriteError(f"{path}: cannot encode as {fmt} ({_one_line(exc)})") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(data, path, overwrite)
    except OSError as exc:
        raise ImageWriteError(f"{path}: cannot write ({_one_line(exc)})") from None
    return path


# ---------------------------------------------------------------- describe_image


def _icc_description(icc: bytes) -> Optional[str]:
    try:
        from PIL import ImageCms

        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except Exception:  # noqa: BLE001 - a profile LittleCMS cannot parse just has no description
        return None
    return description.strip() or None


def _header_text_keys(im: Image.Image) -> list[str]:
    """Text keys known from the header (PNG ``im.text`` would decode the pixels)."""
    if im.format != "PNG":
        return sorted(_text_of(im))
    skip = {"dpi", "gamma", "srgb", "icc_profile", "exif", "transparency", "aspect", "chromaticity", "xmp"}
    return sorted(k for k, v in im.info.items() if isinstance(v, str) and k not in skip)


def describe_image(path: PathLike) -> dict[str, Any]:
    """Summarises an image file for ``imgedit info`` from its header, without decoding pixels.

    ``width``/``height`` are as displayed, i.e. after the EXIF orientation
    (what :func:`read_image` returns); ``orientation`` is the stored tag.

    Raises:
        ImageReadError: missing, a directory, empty or not an image.
    """
    path = Path(path)
    file_size = _check_file(path)
    with open(path, "rb") as handle:
        head = handle.read(64)
    with _pillow_open(path, path) as im:
        depth, gray, channels, has_alpha = _source_layout(im, head)
        orientation = _orientation(im)
        # Pillow reports TIFF sizes already oriented; other formats as stored.
        width, height = im.size if orientation < 5 or im.format == "TIFF" else im.size[::-1]
        icc = im.info.get("icc_profile") or None
        text_keys = _header_text_keys(im)
        return {
            "path": str(path),
            "format": im.format,
            "width": width,
            "height": height,
            "mode": im.mode,
            "bit_depth": depth,
            "channels": channels,
            "has_alpha": has_alpha,
            "grayscale": gray,
            "exif": bool(im.info.get("exif")),
            "orientation": orientation,
            "icc_profile": icc is not None,
            "icc_description": _icc_description(icc) if icc else None,
            "text": text_keys,
            "dpi": _dpi_of(im, orientation),
            "file_size": file_size,
            "megapixels": round(width * height / 1e6, 3),
            "frames": int(getattr(im, "n_frames", 1)),
        }
