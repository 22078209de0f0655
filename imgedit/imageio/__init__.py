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
* The EXIF thumbnail (IFD1) is never carried: it is a copy of the unedited
  source (showing what an edit removed, sideways once the orientation is
  applied). PixelXDimension/PixelYDimension are set to the written size.
* ``write_image(..., quality=None)`` (the default) writes a lossless WebP
  source back lossless, and a JPEG source at its own chroma subsampling and
  estimated quality (kept within 75-95); progressive JPEGs stay progressive.
  Any other source is written at quality 95. An explicit quality always wins.
* ``text`` goes whole into PNG; elsewhere only what has a home: XMP (JPEG,
  WebP, TIFF), "Comment" (JPEG), "Description"/"Software"/"Author"/
  "Copyright" (TIFF, as UTF-8).

Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False: truncated files
are detected by decoding every pixel inside :func:`read_image`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgedit.imageio.describe import describe_image
from imgedit.imageio.formats import PathLike, format_for_path, suffix_for_format
from imgedit.imageio.picture import Picture
from imgedit.imageio.read import read_image
from imgedit.imageio.source import DEFAULT_MAX_PIXELS
from imgedit.imageio.write import write_image

if TYPE_CHECKING:  # pragma: no cover - built lazily by __getattr__ below
    IMAGE_SUFFIXES: frozenset[str]

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "PathLike",
    "Picture",
    "describe_image",
    "format_for_path",
    "read_image",
    "suffix_for_format",
    "write_image",
]


def __getattr__(name: str) -> Any:
    """Builds ``IMAGE_SUFFIXES`` on first use: it needs every Pillow plugin imported."""
    if name == "IMAGE_SUFFIXES":
        from imgedit.imageio.formats import image_suffixes

        value = image_suffixes()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
