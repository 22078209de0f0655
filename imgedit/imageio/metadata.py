"""Metadata mapping: text (PNG text, comments, XMP, TIFF tags), dpi, ICC and EXIF between formats."""

from __future__ import annotations

import struct
from contextlib import suppress
from typing import Any, Optional

from PIL import Image

from imgedit.imageio import pngchunks
from imgedit.imageio.exif import sub_ifds
from imgedit.imageio.pngchunks import XMP_KEYWORD

TIFF_XMP_TAG = 700
# EXIF's IFD0 strings a TIFF holds as its own tags: ImageDescription, Make,
# Model, Software, DateTime, Artist, Copyright.
_TIFF_EXIF_TAGS = (270, 271, 272, 305, 306, 315, 33432)
# TIFF ASCII tags carried as text: tag -> (matching PNG keyword, Pillow TIFF save argument).
_TIFF_TEXT_TAGS = {
    270: ("Description", "description"),
    305: ("Software", "software"),
    315: ("Author", "artist"),
    33432: ("Copyright", "copyright"),
}


def _decode_text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    return str(value)


def _utf8_tiff_string(value: str) -> str:
    """A TIFF ASCII tag as Pillow returns it (bytes read as Latin-1), read as UTF-8 where it is valid UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:  # not Latin-1-representable, or genuinely Latin-1 text: keep as read
        return value


def text_of(im: Image.Image) -> dict[str, str]:
    """Textual metadata: PNG text chunks, JPEG/GIF comment, XMP, TIFF ASCII tags."""
    text: dict[str, str] = {}
    if im.format == "PNG":
        text.update({str(k): str(v) for k, v in getattr(im, "text", {}).items()})
    if im.info.get("comment"):
        text.setdefault("Comment", _decode_text(im.info["comment"]))
    if im.info.get("xmp") and XMP_KEYWORD not in text:
        text[XMP_KEYWORD] = _decode_text(im.info["xmp"])
    if im.format == "TIFF" and hasattr(im, "tag_v2"):
        for key, value in tiff_text(im.tag_v2).items():
            text.setdefault(key, value)
    return text


def tiff_text(tags: Any) -> dict[str, str]:
    """The TIFF ASCII tags carried as text (description, software...), from a tag -> value mapping."""
    text = {}
    for tag, (key, _) in _TIFF_TEXT_TAGS.items():
        value = tags.get(tag)
        if isinstance(value, str) and value.strip("\0 "):
            text[key] = _utf8_tiff_string(value.rstrip("\0"))
    return text


def tiff_source_exif(im: Image.Image) -> Optional[bytes]:
    """EXIF made of a TIFF source's own tags, for outputs of every format: its Make, Model and
    DateTime and its Exif and GPS IFDs (DateTimeOriginal, exposure, GPS...). None for other
    formats, or if it has none of them.

    Its description, software, artist and copyright go to ``text`` instead (:func:`tiff_text`),
    as before; the orientation is left out (the pixels are made upright), and so are the tags
    that describe the file's own layout (size, strips, compression...).
    """
    if im.format != "TIFF" or not hasattr(im, "tag_v2"):
        return None
    exif = Image.Exif()
    exif.endian = "<"
    for tag in _TIFF_EXIF_TAGS:
        value = None if tag in _TIFF_TEXT_TAGS else im.tag_v2.get(tag)
        if isinstance(value, str) and value.strip("\0 "):
            # as the bytes it was read from: Pillow would write a str as ASCII, "?" for the rest
            exif[tag] = value.rstrip("\0").encode("latin-1", "replace")
    try:
        ifds = sub_ifds(im.getexif())  # (for a TIFF, Pillow reads the file's IFD0)
    except Exception:  # noqa: BLE001 - Pillow raises many types for damaged tags
        ifds = {}
    for tag, ifd in ifds.items():
        exif[tag] = ifd
    try:
        return exif.tobytes() if len(exif) else None
    except Exception:  # noqa: BLE001 - a value Pillow cannot write again: keep the strings
        for tag in ifds:
            del exif[tag]
        return exif.tobytes() if len(exif) else None


def png_color_chunks(im: Image.Image) -> dict[str, bytes]:
    """A PNG's gAMA, cHRM and sRGB chunks, rebuilt exactly from Pillow's parse (it divides by 100000)."""
    if im.format != "PNG":
        return {}
    chunks = {}
    if isinstance(im.info.get("gamma"), float):
        chunks["gAMA"] = struct.pack(">I", round(im.info["gamma"] * 100000))
    chromaticity = im.info.get("chromaticity")
    if isinstance(chromaticity, tuple) and len(chromaticity) == 8:
        chunks["cHRM"] = struct.pack(">8I", *(round(value * 100000) for value in chromaticity))
    if isinstance(im.info.get("srgb"), int):
        chunks["sRGB"] = bytes([im.info["srgb"]])
    return chunks


def icc_of(im: Image.Image) -> Optional[bytes]:
    """The embedded ICC profile, or None."""
    return im.info.get("icc_profile") or None


def dpi_of(im: Image.Image, orientation: int) -> Optional[tuple[float, float]]:
    """(x, y) dots per inch as displayed (after ``orientation``), or None."""
    dpi = im.info.get("dpi")
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return None
    if x <= 0 or y <= 0:
        return None
    return (y, x) if orientation >= 5 else (x, y)  # 5-8 swap the axes


def exif_from_text(text: dict[str, str]) -> Optional[bytes]:
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


def png_info(text: dict[str, str]) -> Any:
    """Pillow ``PngInfo`` holding every text entry PNG can store (XMP as iTXt)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        if not pngchunks.valid_keyword(key):
            continue  # PNG cannot store this keyword
        if key == XMP_KEYWORD:
            info.add_itxt(key, value)
        else:
            info.add_text(key, value, zip=len(value) > 1024)
    return info


def tiff_text_tags(text: dict[str, str]) -> dict[int, bytes]:
    """The text that has a TIFF tag, as tag -> UTF-8 bytes.

    TIFF "ASCII" tags are 8-bit in practice: Pillow, exiftool and most
    readers take UTF-8 there, whereas Pillow's and tifffile's own string
    writers turn anything non-ASCII into "?" (or refuse it).
    """
    return {tag: text[key].encode("utf-8") for tag, (key, _) in _TIFF_TEXT_TAGS.items() if text.get(key)}


def tiff_text_kwargs(text: dict[str, str]) -> dict[str, bytes]:
    """Pillow TIFF save arguments (description, software...) for the text that has a TIFF tag."""
    tags = tiff_text_tags(text)
    return {arg: tags[tag] for tag, (_, arg) in _TIFF_TEXT_TAGS.items() if tag in tags}


def tiff_exif_tags(exif: Optional[bytes]) -> dict[int, str]:
    """Camera make/model/date, software, description, artist and copyright
    from EXIF as plain TIFF tags.

    These are the EXIF's IFD0 strings a TIFF output holds in its own IFD0;
    its Exif and GPS IFDs are linked in after writing (Pillow's libtiff
    writer fails on their pointers, tifffile cannot write them): see
    :func:`imgedit.imageio.exif.with_sub_ifds`.
    """
    if not exif:
        return {}
    parsed = Image.Exif()
    with suppress(Exception):
        parsed.load(exif)
    return {tag: parsed[tag] for tag in _TIFF_EXIF_TAGS if isinstance(parsed.get(tag), str) and parsed[tag]}
