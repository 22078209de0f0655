"""EXIF edits made in place in the TIFF structure, so every other byte (maker notes!) stays valid.

Two things in a source's EXIF describe the source's pixels rather than the
picture's: the thumbnail in IFD1 (a small copy of the *unedited* picture,
stored upright as the source was, so after an edit or a rotation it shows
removed objects or lies sideways) and the Exif IFD's PixelXDimension /
PixelYDimension. :func:`without_thumbnail` blanks the first and
:func:`with_pixel_size` rewrites the second. Both patch offsets and values
where they are instead of re-serialising: Pillow's re-serialisation moves
data, which breaks maker notes that hold offsets of their own.
"""

from __future__ import annotations

import struct
from typing import Any, Iterator, NamedTuple, Optional

from PIL import Image, TiffTags

from imgedit.imageio.pngchunks import EXIF_PREFIX, strip_exif_prefix

EXIF_IFD_TAG = 0x8769
GPS_IFD_TAG, _INTEROP_IFD_TAG = 0x8825, 0xA005
SUB_IFD_TAGS = (EXIF_IFD_TAG, GPS_IFD_TAG)  # the IFD0 pointers to the Exif and GPS IFDs
PIXEL_X_TAG, PIXEL_Y_TAG = 0xA002, 0xA003  # PixelXDimension / PixelYDimension, in the Exif IFD
_THUMBNAIL_DATA = ((0x0201, 0x0202), (0x0111, 0x0117))  # (offsets, lengths): JPEG thumbnail; strips
_SHORT, _LONG = 3, 4
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_PADDING = 3  # bytes between two blocks that nothing can point into (out-of-line values are >= 5 bytes)


class Entry(NamedTuple):
    """One 12-byte IFD entry: where it is, and its tag, type and count."""

    at: int
    tag: int
    type: int
    count: int


def byte_order(tiff: bytes) -> str:
    """The struct byte order of a TIFF structure ("<" or ">").

    Raises:
        struct.error: not a TIFF header.
    """
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        raise struct.error("not a TIFF header")
    return order


def first_ifd(tiff: bytes, order: str) -> int:
    """Offset of IFD0."""
    return struct.unpack_from(order + "I", tiff, 4)[0]


def entries(tiff: bytes, order: str, ifd: int) -> Iterator[Entry]:
    """The entries of the IFD at ``ifd``; struct.error if it runs past the end."""
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        yield Entry(at, *struct.unpack_from(order + "HHI", tiff, at))


def _next_pointer_at(tiff: bytes, order: str, ifd: int) -> int:
    """Where the IFD at ``ifd`` stores the offset of the next IFD."""
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    return ifd + 2 + 12 * count


def _long_values(tiff: bytes, order: str, entry: Entry) -> list[int]:
    """The SHORT or LONG values of an entry, inline or out of line."""
    code = {_SHORT: "H", _LONG: "I"}.get(entry.type)
    if code is None:
        return []
    size = _TYPE_SIZES[entry.type] * entry.count
    at = entry.at + 8 if size <= 4 else struct.unpack_from(order + "I", tiff, entry.at + 8)[0]
    return list(struct.unpack_from(f"{order}{entry.count}{code}", tiff, at))


def _ifd1_blocks(tiff: bytes, order: str, ifd1: int) -> list[tuple[int, int]]:
    """(start, end) of everything IFD1 owns: its directory, its out-of-line values, the thumbnail."""
    blocks = [(ifd1, _next_pointer_at(tiff, order, ifd1) + 4)]
    by_tag = {}
    for entry in entries(tiff, order, ifd1):
        by_tag[entry.tag] = entry
        size = _TYPE_SIZES.get(entry.type, 1) * entry.count
        if size > 4:
            (at,) = struct.unpack_from(order + "I", tiff, entry.at + 8)
            if at >= ifd1:  # a value before IFD1 may be shared with IFD0 (same resolution): leave it
                blocks.append((at, at + size))
    for offsets_tag, lengths_tag in _THUMBNAIL_DATA:
        if offsets_tag in by_tag and lengths_tag in by_tag:
            starts = _long_values(tiff, order, by_tag[offsets_tag])
            lengths = _long_values(tiff, order, by_tag[lengths_tag])
            blocks.extend((start, start + length) for start, length in zip(starts, lengths))
    return [(start, min(end, len(tiff))) for start, end in blocks if start < len(tiff)]


def _blank(tiff: bytearray, blocks: list[tuple[int, int]], keep_before: int) -> bytes:
    """Zeroes ``blocks`` and cuts off the end of ``tiff`` where it is only blanked blocks."""
    end = len(tiff)
    for start, stop in sorted(blocks, reverse=True):
        tiff[start:stop] = bytes(stop - start)
        if stop + _PADDING >= end and start >= keep_before:  # typical: IFD1 and its thumbnail come last
            end = start
    return bytes(tiff[:end])


def _without_thumbnail_in_place(tiff: bytes) -> bytes:
    order = byte_order(tiff)
    ifd0 = first_ifd(tiff, order)
    link = _next_pointer_at(tiff, order, ifd0)
    (ifd1,) = struct.unpack_from(order + "I", tiff, link)
    if ifd1 == 0:
        return tiff
    blocks = _ifd1_blocks(tiff, order, ifd1)
    ifd0_end = link + 4
    if any(start < ifd0_end and stop > ifd0 for start, stop in blocks) or any(start < 8 for start, _ in blocks):
        raise struct.error("IFD1 overlaps IFD0 or the header")  # corrupt: let Pillow rebuild it
    patched = bytearray(tiff)
    struct.pack_into(order + "I", patched, link, 0)  # IFD0 is now the last IFD
    return _blank(patched, blocks, keep_before=ifd0_end)


def _set_long(tiff: bytearray, order: str, entry: Entry, value: int) -> None:
    """Writes one SHORT/LONG value into an entry, widening SHORT to LONG when it does not fit."""
    if entry.type == _SHORT and value <= 0xFFFF:
        struct.pack_into(order + "HH", tiff, entry.at + 8, value, 0)  # SHORT is left-justified
    else:
        struct.pack_into(order + "HII", tiff, entry.at + 2, _LONG, 1, value)


def _with_pixel_size_in_place(tiff: bytes, width: int, height: int) -> bytes:
    order = byte_order(tiff)
    exif_ifd = next((e for e in entries(tiff, order, first_ifd(tiff, order)) if e.tag == EXIF_IFD_TAG), None)
    if exif_ifd is None:
        return tiff
    (at,) = struct.unpack_from(order + "I", tiff, exif_ifd.at + 8)
    patched = bytearray(tiff)
    for entry in entries(tiff, order, at):
        if entry.tag in (PIXEL_X_TAG, PIXEL_Y_TAG) and entry.type in (_SHORT, _LONG) and entry.count == 1:
            _set_long(patched, order, entry, width if entry.tag == PIXEL_X_TAG else height)
    return bytes(patched)


def _rebuilt(exif: bytes, size: Optional[tuple[int, int]] = None) -> bytes:
    """The Pillow way, for layouts the in-place edits do not follow: re-serialised
    (Pillow never writes IFD1), with the pixel size set if ``size`` is given.
    EXIF that Pillow cannot parse either is returned unchanged: no reader can show it."""
    parsed = Image.Exif()
    try:
        parsed.load(exif)
        sub = parsed.get_ifd(EXIF_IFD_TAG) if EXIF_IFD_TAG in parsed else {}
        for tag, value in zip((PIXEL_X_TAG, PIXEL_Y_TAG), size or ()):
            if tag in sub:
                sub[tag] = value
        return parsed.tobytes()
    except Exception:  # noqa: BLE001 - Pillow raises many types for damaged EXIF
        return exif


def without_thumbnail(exif: bytes) -> bytes:
    """EXIF (with the ``Exif\\0\\0`` prefix) whose IFD1 thumbnail is gone, bytes included.

    The IFD1 link is cut and its directory, values and image data are zeroed
    (and cut off when they end the block, as cameras write them), so the old
    picture cannot be recovered from the file.
    """
    body = strip_exif_prefix(exif)
    try:
        return EXIF_PREFIX + _without_thumbnail_in_place(body)
    except struct.error:
        return _rebuilt(EXIF_PREFIX + body)


def with_pixel_size(exif: bytes, width: int, height: int) -> bytes:
    """EXIF whose PixelXDimension / PixelYDimension (where present) say ``width`` x ``height``."""
    body = strip_exif_prefix(exif)
    try:
        return EXIF_PREFIX + _with_pixel_size_in_place(body, width, height)
    except struct.error:
        return _rebuilt(EXIF_PREFIX + body, (width, height))


def exif_for_output(exif: bytes, width: int, height: int) -> bytes:
    """The EXIF to write with ``width`` x ``height`` pixels: no thumbnail, true pixel size."""
    return with_pixel_size(without_thumbnail(exif), width, height)


# ---------------------------------------------------------------- the Exif and GPS IFDs in a TIFF file


def _ascii_as_bytes(ifd: dict[int, Any], group: int) -> dict[int, Any]:
    """``ifd`` with its ASCII values as the bytes they were read from (Pillow reads them as
    Latin-1, and writes a str as ASCII with "?" for the rest: bytes go through unchanged)."""
    return {tag: value.encode("latin-1", "replace")
            if isinstance(value, str) and TiffTags.lookup(tag, group).type == TiffTags.ASCII else value
            for tag, value in ifd.items()}


def sub_ifds(parsed: Image.Exif) -> dict[int, dict[int, Any]]:
    """The Exif and GPS IFDs of parsed EXIF (or of a TIFF file's IFD0, as Pillow's ``getexif``
    reads it), pointer tag -> values, as Pillow serialises them again: the Interop IFD nested
    in the Exif IFD, ASCII values as bytes. Empty or unreadable ones are left out."""
    found = {}
    for pointer in SUB_IFD_TAGS:
        try:
            ifd = dict(parsed.get_ifd(pointer)) if pointer in parsed else {}
            if pointer == EXIF_IFD_TAG and _INTEROP_IFD_TAG in ifd:
                interop = parsed.get_ifd(_INTEROP_IFD_TAG)
                if interop:
                    ifd[_INTEROP_IFD_TAG] = _ascii_as_bytes(dict(interop), _INTEROP_IFD_TAG)
                else:  # an offset into the source: meaningless elsewhere
                    del ifd[_INTEROP_IFD_TAG]
        except Exception:  # noqa: BLE001 - Pillow raises many types for damaged EXIF
            continue
        if ifd:
            found[pointer] = _ascii_as_bytes(ifd, pointer)
    return found


def _serialised_sub_ifds(exif: bytes, order: str, at: int) -> Optional[bytes]:
    """The Exif and GPS IFDs of ``exif`` serialised to lie at offset ``at`` of a TIFF file in
    byte order ``order``, behind a directory of just their pointers; None if it has neither."""
    parsed = Image.Exif()
    parsed.load(exif)
    ifds = sub_ifds(parsed)
    if not ifds:
        return None
    pointers = Image.Exif()
    pointers.endian = order
    for tag, ifd in ifds.items():
        pointers[tag] = ifd
    return pointers.tobytes(at)[len(EXIF_PREFIX) + 8:]  # less the prefix and the TIFF header


def with_sub_ifds(tiff: bytes, exif: bytes) -> bytes:
    """A written (classic, one-image) TIFF file whose IFD0 also points to the Exif and GPS IFDs
    of ``exif`` (DateTimeOriginal, exposure, GPS...), which Pillow's libtiff writer and tifffile
    cannot write. The IFDs are appended, then a copy of IFD0 with the two pointers added (an IFD
    cannot grow in place); the old IFD0 is zeroed. The TIFF is returned unchanged where ``exif``
    has neither IFD or either cannot be parsed.

    Values are re-serialised by Pillow (types of tags it does not know are guessed from the
    value); a MakerNote comes through byte for byte, but one holding absolute offsets of its
    own (Canon's) no longer lines up, as in any TIFF rewrite that moves it.
    """
    try:
        order = byte_order(tiff)
        if struct.unpack_from(order + "H", tiff, 2)[0] != 42:
            return tiff  # BigTIFF: not written here
        ifd0 = first_ifd(tiff, order)
        records = [tiff[e.at:e.at + 12] for e in entries(tiff, order, ifd0) if e.tag not in SUB_IFD_TAGS]
        link = _next_pointer_at(tiff, order, ifd0)
        (next_ifd,) = struct.unpack_from(order + "I", tiff, link)
    except struct.error:
        return tiff
    at = len(tiff) + len(tiff) % 2
    try:
        blob = _serialised_sub_ifds(exif, order, at)
    except Exception:  # noqa: BLE001 - Pillow raises many types for damaged EXIF
        return tiff
    if not blob:
        return tiff
    (count,) = struct.unpack_from(order + "H", blob, 0)
    records += [blob[2 + 12 * i:14 + 12 * i] for i in range(count)]  # offsets already absolute
    records.sort(key=lambda record: struct.unpack_from(order + "H", record)[0])  # TIFF: ascending tags
    new_ifd0 = at + len(blob) + len(blob) % 2
    directory = struct.pack(order + "H", len(records)) + b"".join(records) + struct.pack(order + "I", next_ifd)
    if new_ifd0 + len(directory) > 0xFFFFFFFF:
        return tiff
    out = bytearray(tiff)
    out[ifd0:link + 4] = bytes(link + 4 - ifd0)
    struct.pack_into(order + "I", out, 4, new_ifd0)
    out += bytes(at - len(tiff)) + blob + bytes(new_ifd0 - at - len(blob)) + directory
    return bytes(out)


# ---------------------------------------------------------------- fitting a size limit

_MAKER_NOTE_TAG = 0x927C
# What identifies the photo: Make, Model, DateTime, Artist, Copyright, Orientation. Dropped last.
_IDENTIFYING_TAGS = frozenset({0x010F, 0x0110, 0x0132, 0x013B, 0x8298, 0x0112})


def _value_size(value: object) -> int:
    """Roughly the bytes a tag's value takes in the TIFF structure."""
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, tuple):
        return 8 * len(value)
    return 4


def _droppable(parsed: Image.Exif) -> list[tuple[dict, int]]:
    """(directory, tag) of every value in IFD0, the Exif IFD and the GPS IFD, in the order
    they are given up: the MakerNote first, then the largest, the identifying tags last."""
    # (get_ifd of an absent pointer would add an empty directory to the output)
    directories = [parsed] + [parsed.get_ifd(tag) for tag in SUB_IFD_TAGS if tag in parsed]
    pointers = {*SUB_IFD_TAGS, _INTEROP_IFD_TAG}
    values = [(ifd, tag) for ifd in directories for tag in list(ifd) if tag not in pointers]

    def order(item: tuple[dict, int]) -> tuple[bool, bool, int]:
        ifd, tag = item
        return tag != _MAKER_NOTE_TAG, ifd is parsed and tag in _IDENTIFYING_TAGS, -_value_size(ifd[tag])

    return sorted(values, key=order)


def _tag_name(tag: int) -> str:
    from PIL import ExifTags

    return ExifTags.TAGS.get(tag) or ExifTags.GPSTAGS.get(tag) or f"tag 0x{tag:04X}"


def fit_exif(exif: bytes, limit: int) -> tuple[Optional[bytes], list[str]]:
    """EXIF (``Exif\\0\\0`` + TIFF) cut down to at most ``limit`` bytes (a JPEG segment holds 64 KB).

    Values are dropped one at a time, the MakerNote first, then the largest
    (a long description, an embedded preview), until the rest fits; the
    camera, date, author and copyright go last. EXIF that already fits is
    returned unchanged, byte for byte.

    Returns:
        The EXIF (None if nothing fits or Pillow cannot parse it) and the
        names of the tags dropped.
    """
    if len(exif) <= limit:
        return exif, []
    parsed = Image.Exif()
    dropped: list[str] = []
    try:
        parsed.load(exif)
        for ifd, tag in _droppable(parsed):
            del ifd[tag]
            dropped.append(_tag_name(tag))
            fitted = parsed.tobytes()
            if len(fitted) <= limit:
                return fitted, dropped
    except Exception:  # noqa: BLE001 - Pillow raises many types for damaged EXIF
        pass
    return None, ["all of it"]
