"""Find the hole to inpaint: from a mask file or folder, the image's own
transparency, a sidecar file, a colour, or a box.

The sources are tried in a fixed order and the first that applies wins::

    --mask FILE|DIR  >  transparent pixels  >  photo.mask.png beside the image
                     >  --mask-color HEX    >  --mask-box x,y,w,h

then the hole is grown (``dilate``) and inverted (``invert``) if asked.

Masks here are numpy ``(H, W)`` bool arrays, True = hole; turning them into
``(B, 1, H, W)`` float tensors is the caller's job. This module does not
import torch (it runs before any model is created); numpy, PIL and OpenCV are
imported when first needed so that importing it stays cheap.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from imgedit.errors import MaskError, UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    from PIL import Image

__all__ = [
    "IMAGE_SUFFIXES",
    "MaskOptions",
    "find_mask",
    "is_sidecar_name",
    "load_mask_file",
    "mask_search",
    "parse_box",
    "parse_color",
    "sidecar_path",
]

logger = logging.getLogger("imgedit")

#: Suffixes tried (case-insensitively) for mask files in a folder or beside an image.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".webp", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".gif")

#: Largest ``--dilate``: an elliptical kernel of 2N+1 px takes minutes per photo past it (1024: 2 minutes for
#: 3 MP); a hole that much larger is better given as a larger mask.
MAX_DILATE = 1000

_WAYS = (
    "give --mask FILE|DIR, make the hole transparent, put {stem}.mask.png beside it, "
    "or use --mask-color HEX / --mask-box x,y,w,h"
)


@dataclass
class MaskOptions:
    """Where the hole comes from and how to adjust it.

    Attributes:
        mask: ``--mask FILE|DIR``. A file is the mask of every image. A folder
            pairs masks to images by the image's relative path and stem: for
            ``sub/a.jpg`` (relative to its input root) it looks in ``DIR/sub/``
            for ``a.mask.<ext>``, ``a_mask.<ext>`` or ``a.<ext>``, then in
            ``DIR/`` itself (a flat mask folder).
        mask_color: ``--mask-color HEX``: pixels of that colour are the hole.
        color_tolerance: largest per-channel difference (0-255) still counted as
            the colour; the default survives JPEG compression inside the
            painted area (its edge, smeared by chroma subsampling, is taken
            by growing the hole: see :data:`LOSSY_EDGE_PX`; in a lossless
            file the pixels a paint tool's anti-aliasing tinted are taken:
            see :func:`_paint_edge`).
        mask_box: ``--mask-box x,y,w,h`` in pixels; clipped to the image.
        dilate: grow the hole by this many pixels (elliptical kernel).
        invert: ``--invert-mask``: swap hole and known pixels.
    """

    mask: Optional[Path] = None
    mask_color: Optional[str] = None
    color_tolerance: int = 24
    mask_box: Optional[tuple[int, int, int, int]] = None
    dilate: int = 0
    invert: bool = False

    def any_explicit(self) -> bool:
        """Whether the user named a source (``--mask``, ``--mask-color`` or ``--mask-box``)."""
        return self.mask is not None or self.mask_color is not None or self.mask_box is not None

    def checked(self) -> "MaskOptions":
        """These options, once a bad colour or a missing mask path has been
        refused: a usage error before any image, not a failure per image.

        Raises:
            UsageError: ``mask_color`` is not a hex colour, or ``mask`` does
                not exist or is neither a file nor a folder.
        """
        if self.mask_color is not None:
            parse_color(self.mask_color)
        if self.mask is not None and not Path(self.mask).exists():
            raise UsageError(f"--mask {self.mask}: no such file or folder")
        if self.mask is not None and not (Path(self.mask).is_file() or Path(self.mask).is_dir()):
            # /dev/zero, a FIFO: hashing it for the journal would never end
            raise UsageError(f"--mask {self.mask}: not a regular file or a folder")
        self._warn_outranked()
        return self

    def _warn_outranked(self) -> None:
        """Say once, not per image, that an explicit source below another
        one given can never apply: the first source that applies wins, and
        ``--mask`` (a file, or a folder that must pair every image) and
        ``--mask-color`` always apply."""
        given = [(n, v) for n, v in (("--mask", self.mask), ("--mask-color", self.mask_color),
                                     ("--mask-box", self.mask_box)) if v is not None]
        if len(given) > 1:
            ignored = " and ".join(name for name, _ in given[1:])
            logger.warning("ignoring %s: %s gives the hole (mask sources are tried in a fixed order, the first wins)",
                           ignored, given[0][0])


def parse_box(text: str) -> tuple[int, int, int, int]:
    """Parse ``--mask-box`` text ``"x,y,w,h"``.

    Args:
        text: four integers separated by commas (spaces allowed). ``x`` and
            ``y`` may be negative (the box is clipped later); ``w`` and ``h``
            must be positive.

    Returns:
        ``(x, y, w, h)``.

    Raises:
        UsageError: the text is not four integers, or ``w``/``h`` is not positive.

    Example:
        >>> parse_box("10, 20, 30, 40")
        (10, 20, 30, 40)
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 4:
            raise ValueError(text)
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise UsageError(f"--mask-box: expected x,y,w,h (four integers), got {text!r}") from None
    if w <= 0 or h <= 0:
        raise UsageError(f"--mask-box: width and height must be positive, got {text!r}")
    return x, y, w, h


def parse_color(text: str) -> tuple[int, int, int]:
    """Parse ``--mask-color`` hex text.

    Args:
        text: ``"#ff00ff"``, ``"ff00ff"`` or the short form ``"#f0f"``.

    Returns:
        ``(r, g, b)`` on 0-255.

    Raises:
        UsageError: the text is not a hex colour.

    Example:
        >>> parse_color("#FF00ff")
        (255, 0, 255)
    """
    digits = str(text).strip().removeprefix("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    if not re.fullmatch(r"[0-9a-fA-F]{6}", digits):
        raise UsageError(f"--mask-color: expected a hex colour like #ff00ff, got {text!r}")
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def load_mask_file(path: Path, size: tuple[int, int]) -> "np.ndarray":
    """Read a mask image: white (non-zero) = hole, black = keep.

    The file is converted to greyscale and thresholded at half range (127 for
    8-bit, 32767 for 16-bit). EXIF orientation is applied, as for photos.
    It is opened as photos are (:func:`imgedit.imageio.source.pillow_open`):
    the same pixel limit (``IMGEDIT_MAX_PIXELS``), checked from the header.

    Args:
        path: the mask file.
        size: ``(H, W)`` of the image it belongs to (numpy shape order). A
            mask of another size but the same shape (drawn on a smaller
            copy, or one up to :data:`MAX_MASK_SCALE` times larger) is
            resized (nearest) with a warning.

    Returns:
        ``(H, W)`` bool array, True = hole.

    Raises:
        MaskError: the file is missing or cannot be decoded, it is above the
            pixel limit or over :data:`MAX_MASK_SCALE` times the image's
            size, or its shape (width to height) is not the image's.

    Example:
        >>> hole = load_mask_file(Path("photo.mask.png"), rgb.shape[:2])  # doctest: +SKIP
    """
    from PIL import Image, ImageOps

    from imgedit.errors import ImageReadError
    from imgedit.imageio.source import check_size, one_line, pillow_open, pixel_limit

    path = Path(path)
    if not path.is_file():  # /dev/zero, a FIFO: there, but no file to read
        raise MaskError(f"mask {path} is not a regular file" if path.exists() else f"mask file not found: {path}")
    height, width = size
    limit = pixel_limit(None)
    try:
        with pillow_open(path, path) as img:
            check_size(path, img.size, limit)
            _check_not_much_larger(path, img.size, (width, height))
            img = ImageOps.exif_transpose(img)
            img.load()
    except MaskError:
        raise
    except ImageReadError as exc:  # its message starts with the path
        raise MaskError(f"cannot read mask file {exc}") from None
    except MemoryError:
        raise MaskError(f"cannot read mask file {path}: not enough memory to decode it") from None
    except Exception as exc:  # noqa: BLE001 - Pillow and zlib raise many types for bad data
        raise MaskError(f"cannot read mask file {path}: {one_line(exc)}") from None
    if img.size != (width, height):
        _check_same_shape(path, img.size, (width, height))
        logger.warning(
            "mask %s is %dx%d but the image is %dx%d; resizing the mask (nearest)",
            path, img.size[0], img.size[1], width, height,
        )
        img = img.resize((width, height), Image.Resampling.NEAREST)
    return pil_hole(img)


#: The one rule for a hole in a mask image: gray above half its range (white = hole),
#: by bits per sample. The API reads uint8 and uint16 arrays and tensors by it too
#: (:func:`imgedit.tensor.mask_to_tensor`, :func:`imgedit.api.inpaint`).
HOLE_ABOVE = {8: 127, 16: 32767}


def pil_hole(img: "Image.Image") -> "np.ndarray":
    """A mask image's hole, as a bool array (:data:`HOLE_ABOVE`); a mask
    file and a PIL mask given to the API alike."""
    import numpy as np

    from imgedit.imageio.source import WIDE_MODES

    if img.mode in WIDE_MODES:  # 16 or 32 bits: converting to "L" would clip, not scale
        return np.asarray(img).astype(np.float64) > HOLE_ABOVE[16]
    return np.asarray(img.convert("L")) > HOLE_ABOVE[8]


def labels_not_holes(bits: int, fix: str) -> MaskError:
    """The error for an 8- or 16-bit mask with values but no hole: 0/1 labels,
    read as a mask file is. ``fix``: how the caller passes labels instead."""
    return MaskError(f"mask: no pixel is a hole: a uint{bits} mask is read as a {bits}-bit mask file, a hole above "
                     f"{HOLE_ABOVE[bits]}; for 0/1 values pass {fix}")


#: A mask drawn on a larger copy of the photo is resized, up to this many
#: times the image's size per side; past that it is refused from its header,
#: before decoding (a 170 MP mask for an 80x60 image took 860 MB to shrink).
MAX_MASK_SCALE = 4


def _check_not_much_larger(path: Path, mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    # Sides compared sorted: the header does not say yet whether EXIF turns the mask.
    (short, long), (image_short, image_long) = sorted(mask_size), sorted(image_size)
    if short > MAX_MASK_SCALE * image_short or long > MAX_MASK_SCALE * image_long:
        raise MaskError(f"mask {path} is {mask_size[0]}x{mask_size[1]}, over {MAX_MASK_SCALE} times the size of the "
                        f"{image_size[0]}x{image_size[1]} image; give a mask of the image's size")


SHAPE_TOLERANCE = 0.02  # besides a pixel of rounding: a mask drawn on a scaled copy; a turned or cropped one is far off


def _check_same_shape(path: Path, mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """Refuse a mask whose width-to-height ratio is not the image's:
    stretched to fit, it would mark the wrong pixels (a mask drawn on the
    file's stored pixels of a photo its EXIF turns is the usual case)."""
    (mw, mh), (iw, ih) = mask_size, image_size
    height_for_width = mw * ih / iw  # the mask's height if it had the image's shape
    if abs(mh - height_for_width) <= 1 + SHAPE_TOLERANCE * height_for_width:
        return
    turned = " (drawn on the photo before its EXIF orientation turned it?)" if (mw, mh) == (ih, iw) else ""
    raise MaskError(f"mask {path} is {mw}x{mh} but the image is {iw}x{ih}, another shape{turned}: "
                    "stretched, it would mark the wrong pixels; give a mask of the image's shape")


def find_mask(
    image_path: Optional[Path],
    rgb: "np.ndarray",
    alpha: Optional["np.ndarray"],
    options: MaskOptions,
    *,
    relative: Optional[Path] = None,
    lossy: bool = False,
) -> tuple["np.ndarray", str]:
    """Find the hole for one image (see the module docstring for the order).

    Args:
        image_path: the image file, used to pair masks by stem and to find a
            sidecar; may be None (then only alpha, colour and box apply).
        rgb: ``(H, W, 3)`` RGB pixels: uint8, uint16, or float in [0, 1].
        alpha: ``(H, W)`` alpha of the same kind (uint8, uint16 or float in
            [0, 1]), or None. Pixels with alpha below half are the hole.
        options: the user's choices.
        relative: the image's path relative to its input root (e.g.
            ``sub/a.jpg`` for ``in/sub/a.jpg`` read from ``in``), used when
            ``--mask`` is a folder: ``DIR/sub/a.*`` is tried before ``DIR/a.*``.
            None pairs by the image's name only (``DIR/a.*``).
        lossy: the pixels come from a lossy file (JPEG): a painted hole's
            edge is smeared there, so a colour hole grows by
            :data:`LOSSY_EDGE_PX`.

    Returns:
        ``(hole, source)``: an ``(H, W)`` bool array (True = hole) and a short
        description of where it came from, e.g. ``"sidecar photo.mask.png"``.

    Raises:
        MaskError: an explicit source is missing or gives an empty hole, or no
            source applies (the message lists the ways to give one).
        UsageError: bad ``--mask-color``/``--mask-box`` text or option values.

    Example:
        >>> hole, source = find_mask(None, rgb, None, MaskOptions(mask_box=(4, 4, 8, 8)))  # doctest: +SKIP
        >>> source
        'box 4,4,8,8'
        >>> find_mask(Path("in/sub/a.jpg"), rgb, None, MaskOptions(mask=Path("masks")),
        ...           relative=Path("sub/a.jpg"))[1]  # doctest: +SKIP
        'mask file sub/a.png'
    """
    _check_options(options)
    size = (int(rgb.shape[0]), int(rgb.shape[1]))
    found = _from_sources(image_path, rgb, alpha, options, size, relative, lossy)
    if found is None:
        name = str(image_path) if image_path is not None else "the image"  # as the batch's other errors name it
        stem = image_path.stem if image_path is not None else "photo"
        raise MaskError(f"no hole found for {name}: " + _WAYS.format(stem=stem))
    hole, source = _adjust(*found, options)
    # checked on the final hole: an empty mask inverted is the whole image, not an empty hole
    if not hole.any():
        raise MaskError(f"the hole from {source} is empty (no pixels selected)")
    return hole, source


def _check_options(options: MaskOptions) -> None:
    if not 0 <= options.dilate <= MAX_DILATE:
        raise UsageError(f"--dilate must be in [0, {MAX_DILATE}], got {options.dilate}")
    if not 0 <= options.color_tolerance <= 255:
        raise UsageError(f"--color-tolerance must be in [0, 255], got {options.color_tolerance}")


#: Where a hole made of the image's own transparency came from: the runner makes it opaque once filled.
TRANSPARENCY = "transparent pixels"


def opaque_over_filled_hole(alpha: "np.ndarray", hole: "np.ndarray") -> "np.ndarray":
    """``alpha`` made opaque over a filled ``hole`` of transparency, and over
    the partly transparent pixels joined to it: a soft eraser's feathered edge
    (alpha at least a half, so known). Left translucent around the fill they
    show as a ring on any background; translucency apart from the hole is the
    picture's own.

    Args:
        alpha: (H, W) float32 in [0, 1].
        hole: (H, W) bool, True where the fill is.
    """
    import cv2
    import numpy as np

    _, labels = cv2.connectedComponents(((alpha < 1.0) | hole).astype(np.uint8), connectivity=8)
    touching = np.unique(labels[hole])
    rim = np.isin(labels, touching[touching > 0]) & ~hole
    return np.where(hole | rim, np.float32(1.0), alpha)


def _from_sources(image_path, rgb, alpha, options, size, relative=None, lossy=False):
    """Try each source in order; return ``(hole, source)`` or None."""
    if options.mask is not None:
        mask = Path(options.mask)
        path = _explicit_mask_path(mask, image_path, relative)
        return load_mask_file(path, size), f"mask file {_shown(path, mask)}"
    if alpha is not None:
        hole = _transparent(alpha)
        if hole.any():
            _warn_ignored(options, "the image has transparent pixels", image_path)
            return hole, TRANSPARENCY
    sidecar = _sidecar(image_path)
    if sidecar is not None:
        _warn_ignored(options, f"{sidecar.name} lies beside the image", image_path)
        return load_mask_file(sidecar, size), f"sidecar {sidecar.name}"
    if options.mask_color is not None:
        return _color_hole(rgb, options.mask_color, options.color_tolerance, grow=LOSSY_EDGE_PX if lossy else 0)
    if options.mask_box is not None:
        return _box_hole(size, options.mask_box)
    return None


def _warn_ignored(options: MaskOptions, why: str, image_path: Optional[Path]) -> None:
    # Colour and box rank below the implicit sources; say so rather than let
    # an explicit option vanish silently, naming the image: in a batch the
    # others take the option
    ignored = [n for n, v in (("--mask-color", options.mask_color), ("--mask-box", options.mask_box)) if v is not None]
    if ignored:
        where = f"{image_path}: " if image_path is not None else ""
        logger.warning("%signoring %s because %s", where, " and ".join(ignored), why)


def _shown(path: Path, mask: Path) -> str:
    """A folder-paired mask relative to the folder (``sub/a.png``), else the file name."""
    if mask.is_dir():
        try:
            return path.relative_to(mask).as_posix()
        except ValueError:  # pragma: no cover - paired masks always lie under the folder
            pass
    return path.name


def _sub_folder(mask: Path, relative: Optional[Path]) -> Optional[Path]:
    """``mask/<relative's parent>`` when ``relative`` has a (safe) parent, else None."""
    if relative is None:
        return None
    parent = Path(relative).parent
    if parent == Path(".") or parent.is_absolute() or ".." in parent.parts:
        return None
    return mask / parent


def sidecar_bases(stem: str) -> tuple[str, ...]:
    """The names (without suffix) of a sidecar mask of the image ``stem``, in the order they win."""
    return (f"{stem}.mask", f"{stem}_mask")


def is_sidecar_name(name: str) -> bool:
    """Whether a file called ``name`` is a sidecar mask (``photo.mask.png``, ``photo_mask.png``),
    not a photo: folder scans leave it out."""
    return Path(name).stem.endswith((".mask", "_mask"))


def mask_search(image_path: Path, relative: Optional[Path] = None,
                mask_folder: Optional[Path] = None) -> list[tuple[Path, tuple[str, ...]]]:
    """Where the mask of ``image_path`` may lie, in the order it is looked
    for: ``(folder, names)``, each name with any of :data:`IMAGE_SUFFIXES`
    (suffix in any case, name exact). Without ``mask_folder``: its sidecars
    beside it. With ``--mask mask_folder``: the image's own sub-folder of it
    (``relative``'s parent, as the input was found), then the folder itself,
    each by sidecar names and then the image's stem. The one rule for
    :func:`find_mask` and for the run's journal, which hashes every file found."""
    stem = image_path.stem
    if mask_folder is None:
        return [(image_path.parent, sidecar_bases(stem))]
    sub = _sub_folder(mask_folder, relative)
    return [(folder, (*sidecar_bases(stem), stem)) for folder in ([sub] if sub is not None else []) + [mask_folder]]


def _explicit_mask_path(mask: Path, image_path: Optional[Path], relative: Optional[Path] = None) -> Path:
    if mask.is_dir():
        if image_path is None:
            raise MaskError(f"--mask {mask} is a folder, which pairs masks by image name; no image name here")
        stem = image_path.stem
        sub = _sub_folder(mask, relative)
        for folder, bases in mask_search(image_path, relative, mask):
            found = _paired(folder, image_path, bases) if folder.is_dir() else None
            if found is not None:
                return found
        looked = f"{stem}.png, {stem}.mask.png, {stem}_mask.png and other image suffixes"
        if relative is None:
            raise MaskError(f"no mask for '{stem}' in {mask} (looked for {looked})")
        where = f"{sub} then in {mask}" if sub is not None else f"{mask}"
        raise MaskError(f"no mask for '{Path(relative).as_posix()}' in {mask} (looked in {where} for {looked})")
    if not mask.exists():
        raise MaskError(f"mask file not found: {mask}")
    return mask


def _paired(folder: Path, image_path: Path, bases: tuple[str, ...]) -> Optional[Path]:
    """The first of ``folder/<base>.*`` for ``bases`` (from :func:`mask_search`); never the image itself."""
    by_name = _files_by_name(folder)
    image_real = image_path.resolve() if image_path.exists() else None
    for base in bases:
        for suffix in IMAGE_SUFFIXES:
            p = _file(folder, by_name, base + suffix)
            # Pairing is by exact stem; only the suffix is case-insensitive.
            if p is not None and p.name[: len(base)] == base and p.resolve() != image_real:
                return p
    return None


def sidecar_path(image_path: Optional[Path]) -> Optional[Path]:
    """The sidecar mask beside an image, if there is one.

    Looks in the image's folder for ``<stem>.mask.<ext>`` then
    ``<stem>_mask.<ext>`` (any of :data:`IMAGE_SUFFIXES`, suffix
    case-insensitive, stem exact). Reads no pixels.

    Args:
        image_path: the image file; None (or a missing folder) gives None.

    Returns:
        The sidecar's path, or None.

    Example:
        >>> sidecar_path(Path("shots/photo.jpg"))  # doctest: +SKIP
        PosixPath('shots/photo.mask.png')
    """
    return _sidecar(None if image_path is None else Path(image_path))


def _sidecar(image_path: Optional[Path]) -> Optional[Path]:
    if image_path is None or not image_path.parent.is_dir():
        return None
    [(folder, bases)] = mask_search(image_path)
    by_name = _files_by_name(folder)
    for base in bases:
        for suffix in IMAGE_SUFFIXES:
            p = _file(folder, by_name, base + suffix)
            if p is not None and p.name[: len(base)] == base:
                return p
    return None


# Folder listings, kept while the folder's mtime stays the same (adding,
# removing or renaming an entry changes it): each image of a batch looked
# its mask or sidecar up in a fresh listing, 0.6 s apiece beside 30,000 files.
# A folder changed in the last moments is listed afresh each time: mtimes
# tick coarsely, so a file added in the same tick would leave it the same.
_LISTINGS: "OrderedDict[Path, tuple[tuple[int, int], dict[str, str]]]" = OrderedDict()
_LISTINGS_KEPT = 16  # folders; a run pairs an image with at most three
_LISTINGS_LOCK = threading.Lock()  # reader threads look masks up at once
_SETTLED_NS = 2_000_000_000  # since the folder's last change, for its listing to be kept


def _files_by_name(folder: Path) -> dict[str, str]:
    """``folder``'s files, lower-case name to name (where two differ only in
    case, the last in sorted order); {} for a folder that cannot be listed."""
    try:
        stat = folder.stat()
    except OSError:
        return {}
    version = (stat.st_mtime_ns, stat.st_ino)
    with _LISTINGS_LOCK:
        kept = _LISTINGS.get(folder)
        if kept is not None and kept[0] == version:
            _LISTINGS.move_to_end(folder)
            return kept[1]
    listed_at = time.time_ns()
    try:
        with os.scandir(folder) as entries:  # is_file() from the entry: no stat per file
            names = sorted(entry.name for entry in entries if entry.is_file())
    except OSError:
        return {}
    by_name = {name.lower(): name for name in names}
    if listed_at - stat.st_mtime_ns < _SETTLED_NS:
        return by_name
    with _LISTINGS_LOCK:
        _LISTINGS[folder] = (version, by_name)
        _LISTINGS.move_to_end(folder)
        while len(_LISTINGS) > _LISTINGS_KEPT:
            _LISTINGS.popitem(last=False)
    return by_name


def _file(folder: Path, by_name: dict[str, str], name: str) -> Optional[Path]:
    """The file in ``folder`` named ``name`` in any case, or None."""
    found = by_name.get(name.lower())
    return None if found is None else folder / found


def _to_unit(values: "np.ndarray") -> "np.ndarray":
    """uint8 / uint16 / float [0, 1] -> float64 in [0, 1]."""
    import numpy as np

    if values.dtype == np.uint8:
        return values.astype(np.float64) / 255.0
    if values.dtype == np.uint16:
        return values.astype(np.float64) / 65535.0
    return values.astype(np.float64)


def _transparent(alpha: "np.ndarray") -> "np.ndarray":
    alpha = _to_unit(alpha)
    if alpha.ndim == 3:  # (H, W, 1)
        alpha = alpha[..., 0]
    return alpha < 0.5


# JPEG's 4:2:0 chroma subsampling and 8x8 blocks blend a painted colour into
# its neighbours over a few pixels, past any tolerance that spares the photo's
# own colours: a fill that takes those pixels as known spreads a ring of the
# paint into the hole. kodim21 with magenta holes saved at q90/q95, excess
# magenta tint within 8 px of the holes against the unpainted photo (mean, of
# 255): 43 grown 0 px, 2.3-2.7 at 2 px, 0.6 at 3 px, 0.4-0.6 at 4-6 px.
LOSSY_EDGE_PX = 3


def _color_hole(rgb: "np.ndarray", text: str, tolerance: int, grow: int = 0) -> tuple["np.ndarray", str]:
    import numpy as np

    color = np.asarray(parse_color(text), dtype=np.float64)
    pixels = _to_unit(rgb[..., :3]) * 255.0  # (H, W, 3) on 0-255
    # Max-channel distance: a JPEG wobbles each channel a little independently.
    hole = np.abs(pixels - color).max(axis=-1) <= tolerance + 1e-6
    hexa = "#%02x%02x%02x" % tuple(int(c) for c in color)
    if not hole.any():
        raise MaskError(f"--mask-color {hexa}: no pixels of that colour (tolerance {tolerance})")
    if grow:
        return _grown(hole, grow), f"colour {hexa}, grown {grow} px over the lossy file's smeared edge"
    edge = _paint_edge(pixels, hole, color)
    return hole | edge, f"colour {hexa}" + (" and its anti-aliased edge" if edge.any() else "")


# A paint tool's anti-aliased stroke blends the paint into the photo over a
# pixel or two, past any tolerance that spares the photo's own colours; left
# known, that rim tints the fill (a red stroke on kodim05: +80 red levels in
# the fill). Pixels near the paint that lie toward it from their
# surroundings' colour are taken into the hole: any such pixel touching the
# paint, and one a pixel further out if it lies near the line from the
# surroundings to the paint. Exact paint on a smooth photo keeps its exact hole.
TOUCHING_MIN = 0.05  # of paint in a pixel touching the paint: less is the photo's own colour
BLEND_MIN = 0.1  # the same a pixel further out
BLEND_RESIDUAL = 12.0  # levels (0-255) off the surroundings-to-paint line still called a blend there


def _paint_edge(pixels: "np.ndarray", hole: "np.ndarray", color: "np.ndarray") -> "np.ndarray":
    """The anti-aliased edge of the paint ``color`` around ``hole`` (``pixels`` on 0-255)."""
    import cv2
    import numpy as np

    touching = _grown(hole, 1) & ~hole
    rim = _grown(hole, 2) & ~hole
    # the surroundings' colour: a blur of the pixels beyond the rim, normalised by how many there are
    known = (~_grown(hole, 2)).astype(np.float64)
    weight = cv2.blur(known, (7, 7))[rim]
    around = np.stack([cv2.blur(pixels[..., c] * known, (7, 7))[rim] for c in range(3)], -1)
    around = around / np.maximum(weight, 1e-6)[:, None]
    toward = color - around  # (N, 3): from the surroundings to the paint
    share = np.clip(((pixels[rim] - around) * toward).sum(-1) / np.maximum((toward ** 2).sum(-1), 1e-6), 0, 1)
    residual = np.abs(pixels[rim] - (around + share[:, None] * toward)).max(-1)
    edge = np.zeros_like(hole)
    edge[rim] = np.where(touching[rim], share >= TOUCHING_MIN, (share >= BLEND_MIN) & (residual <= BLEND_RESIDUAL))
    edge[rim] &= weight > 0.05  # no surroundings to tell by (the paint fills the neighbourhood)
    return edge


def _box_hole(size: tuple[int, int], box: "tuple[int, int, int, int] | str") -> tuple["np.ndarray", str]:
    import numpy as np

    height, width = size
    # Accept the raw CLI text too, so callers need not parse it first.
    x, y, w, h = parse_box(box) if isinstance(box, str) else parse_box(",".join(map(str, box)))
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    text = f"{x},{y},{w},{h}"
    if x0 >= x1 or y0 >= y1:
        raise MaskError(f"--mask-box {text} lies outside the {width}x{height} image")
    hole = np.zeros((height, width), dtype=bool)
    hole[y0:y1, x0:x1] = True
    return hole, f"box {text}"


def _grown(hole: "np.ndarray", pixels: int) -> "np.ndarray":
    """``hole`` grown by ``pixels`` in every direction (a disc)."""
    import cv2
    import numpy as np

    k = 2 * pixels + 1
    return cv2.dilate(hole.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0


def _adjust(hole: "np.ndarray", source: str, options: MaskOptions) -> tuple["np.ndarray", str]:
    """Apply ``dilate`` then ``invert``. ``source`` is returned unchanged: callers
    compare it (the runner makes a filled :data:`TRANSPARENCY` hole opaque)."""
    if options.dilate > 0:
        hole = _grown(hole, options.dilate)
    if options.invert:
        hole = ~hole
        if not hole.any():
            raise MaskError(f"the inverted hole from {source} is empty: the mask covered the whole image")
    if hole.all():
        logger.warning("the hole (%s) covers the whole image; nothing is left to fill it from", source)
    return hole, source
