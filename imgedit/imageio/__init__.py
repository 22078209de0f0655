"""Image reading and writing that loses nothing.

:func:`read_image` returns a :class:`Picture`: float32 RGB pixels in [0, 1],
an optional alpha plane, and the metadata worth carrying to the output (bit
depth, grayscale-ness, EXIF, ICC profile, PNG text, dpi). :func:`write_image`
writes a Picture back atomically, keeping as much of that as the output format
can hold.

Notes on what can be lost (by design):

* JPEG, BMP and other formats without alpha drop the alpha plane; GIF keeps
  it as transparent or opaque (cut at half). JPEG, WebP and BMP are 8-bit
  only, so 16-bit pictures are quantised to 8 bits there.
* A grayscale source is written back single-channel while its pixels are
  still gray (channels at most one 8-bit level apart); an edit that coloured
  it (a style) is written in RGB(A) at the same depth, in every format.
* WebP has no grayscale mode: grayscale pictures are written as RGB.
* A 16-bit grayscale picture with alpha written to TIFF is stored as RGBA.
* CMYK (and LAB/HSV/YCbCr) sources are converted to RGB; CMYK uses the
  embedded ICC profile when there is one, else Pillow's naive formula. The
  source ICC profile describes the old colour space, so it is dropped.
* TIFFs Pillow cannot open (float or half-float RGB, 16-bit gray+alpha) are
  read with tifffile. A TIFF's integer samples are scaled by their type's
  range; 32-bit ones that fill under 1/256 of it are refused (scaled, the
  picture would be black). Float samples are taken with 0 black and 1 white
  and clipped to [0, 1], with a warning when they reach beyond it. Wider
  samples are kept at 16 bits. Other formats' 32-bit integer ("I") and
  float ("F") sources are clipped to [0, 65535] and [0, 1].
* EXIF is carried whole into JPEG, PNG, WebP and AVIF. A TIFF output gets its
  first directory's strings (Make, Model, DateTime, Software,
  ImageDescription, Artist, Copyright, as plain TIFF tags; the picture's
  ``text`` wins where it has the same tag) and its Exif and GPS IFDs
  (DateTimeOriginal, exposure, GPS), linked in after writing. A TIFF
  source's camera tags (Make, Model, DateTime, its Exif and GPS IFDs) are
  made EXIF, for outputs of every format (its description, software, artist
  and copyright go to ``text``); one read with tifffile (float RGB, 16-bit
  gray with alpha) carries none. EXIF over a JPEG segment's 64 KB loses its MakerNote, then
  its largest values, until it fits, with a warning; XMP that large is left
  out of a JPEG, with a warning.
* The EXIF thumbnail (IFD1) is never carried: it is a copy of the unedited
  source (showing what an edit removed, sideways once the orientation is
  applied). PixelXDimension/PixelYDimension are set to the written size.
* The ICC profile goes into JPEG, PNG, WebP, TIFF and AVIF; other formats
  (BMP, GIF, TGA...) get their pixels converted to sRGB instead, which is
  what readers assume for an untagged image. A PNG source's gAMA, cHRM and
  sRGB chunks are written back to PNG.
* ``write_image(..., quality=None)`` (the default) writes a lossless WebP
  source back lossless, and a JPEG source at its own chroma subsampling and
  estimated quality (kept within 75-95); progressive JPEGs stay progressive.
  Any other source is written at quality 95 (AVIF: Pillow's 75). An explicit
  quality always wins.
* ``text`` goes whole into PNG; elsewhere only what has a home: XMP (JPEG,
  WebP, AVIF, TIFF), "Comment" (JPEG), "Description"/"Software"/"Author"/
  "Copyright" (TIFF, as UTF-8). A PNG source's tIME (when the file was last
  changed) is not carried: the output is a new file, and writing none keeps
  outputs the same from run to run.

Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False: truncated files
are detected by decoding every pixel inside :func:`read_image`. A PNG whose
(complete) data stream holds fewer rows than its header says, which Pillow
takes quietly, is refused as truncated too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgedit.imageio.describe import describe_image
from imgedit.imageio.formats import PathLike, format_for_path, suffix_for_format
from imgedit.imageio.picture import Picture
from imgedit.imageio.read import read_image
from imgedit.imageio.source import DEFAULT_MAX_PIXELS, check_made_size
from imgedit.imageio.write import write_image

if TYPE_CHECKING:  # pragma: no cover - built lazily by __getattr__ below
    IMAGE_SUFFIXES: frozenset[str]

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "PathLike",
    "Picture",
    "check_made_size",
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
