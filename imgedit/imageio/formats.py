"""Image formats: suffix <-> Pillow format name, and what each output format can hold."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from PIL import Image

from imgedit.errors import UsageError

PathLike = Union[str, "os.PathLike[str]"]

BASE_SUFFIXES = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".tif": "TIFF",
    ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP",
}
PREFERRED_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}
_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP", "AVIF", "TGA", "GIF"})  # GIF: transparent or opaque only
HIGH_DEPTH_FORMATS = frozenset({"PNG", "TIFF"})
EXIF_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "AVIF"})  # TIFF: see metadata.tiff_exif_tags
ICC_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "TIFF", "AVIF"})  # others get sRGB pixels (profiles.to_srgb)
DPI_FORMATS = frozenset({"JPEG", "PNG", "TIFF", "BMP"})
_UNDECODABLE = frozenset({"MPEG"})  # Pillow identifies MPEG files but cannot decode them
# Camera RAW files: many are TIFF inside, whose first page is a small
# preview that Pillow would open and imgedit would edit as the photo.
RAW_SUFFIXES = frozenset({
    ".3fr", ".ari", ".arw", ".bay", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".fff", ".iiq", ".k25",
    ".kdc", ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".rwl", ".sr2",
    ".srf", ".srw", ".x3f",
})
RAW_ADVICE = "imgedit edits developed images: export it as JPEG or TIFF from a RAW developer first"


def image_suffixes() -> frozenset[str]:
    """Suffixes of the base formats plus every format Pillow can really open."""
    from PIL import ImageFile

    suffixes = set(BASE_SUFFIXES)
    for ext, fmt in Image.registered_extensions().items():
        opener = Image.OPEN.get(fmt, (None,))[0]
        # Stub plugins (HDF5, GRIB, BUFR...) identify files they cannot decode.
        if fmt in _UNDECODABLE or not isinstance(opener, type) or issubclass(opener, ImageFile.StubImageFile):
            continue
        suffixes.add(ext.lower())
    return frozenset(suffixes)


def is_camera_raw(path: PathLike) -> bool:
    """Whether ``path`` names a camera RAW file (``.NEF``, ``.CR2``, ``.dng``...)."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


def normalize_format(fmt: str) -> str:
    """Upper-cases a format name, resolves aliases and checks Pillow can write it."""
    name = _FORMAT_ALIASES.get(fmt.strip().upper(), fmt.strip().upper())
    if name in PREFERRED_SUFFIX:
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
    if suffix in BASE_SUFFIXES:
        return BASE_SUFFIXES[suffix]
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise UsageError(f"{path}: unknown image suffix {suffix!r} (use .png, .jpg, .tif, .webp, .bmp)")
    return fmt


def suffix_for_format(fmt: str) -> str:
    """Returns the usual file suffix for a format ("JPEG" -> ".jpg").

    Raises:
        UsageError: unknown format.
    """
    name = normalize_format(fmt)
    if name in PREFERRED_SUFFIX:
        return PREFERRED_SUFFIX[name]
    for ext, ext_fmt in Image.registered_extensions().items():
        if ext_fmt == name:
            return ext
    raise UsageError(f"no file suffix known for image format {fmt!r}")
