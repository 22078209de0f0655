"""Turn command-line inputs (files, folders, globs) into a list of image
files, and decide where each output goes."""

from __future__ import annotations

import glob
import logging
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Iterable, Iterator, Optional, Union

from imgedit.atomic import WINDOWS_BAD_CHARS, check_name_lengths
from imgedit.errors import UsageError
from imgedit.masks import is_sidecar_name

__all__ = [
    "InputFile",
    "InputScan",
    "NAME_FIELDS",
    "check_name_template",
    "expand_inputs",
    "glob_base",
    "is_link",
    "names_an_image_file",
    "output_is_file",
    "output_path",
    "scan_inputs",
    "shorten_path",
]

logger = logging.getLogger("imgedit")


@dataclass(frozen=True)
class InputFile:
    """An image to process and the folder its relative path is taken from
    (so outputs mirror the input tree)."""

    path: Path
    root: Path
    from_folder: bool = False  # found by scanning a folder or a glob, not named: a batch, however small

    @property
    def relative(self) -> Path:
        return self.path.relative_to(self.root)


#: Folders a file system or an OS keeps at a drive's root, passed by like
#: hidden ones: ``-r`` over a memory card or an ext4 disk would otherwise
#: warn of one it cannot read (and exit 1) on every run, or edit the trash.
SYSTEM_FOLDERS = frozenset({"System Volume Information", "$RECYCLE.BIN", "$Recycle.Bin", "RECYCLER", "lost+found"})

#: macOS packages: folders Finder shows as one file, whose files are an
#: app's to change (``-r ~/Pictures --in-place`` would rewrite the Photos
#: library's originals behind its back; without Full Disk Access its listing
#: fails, and every run exits 1). Passed by as hidden folders are, with a
#: warning, on any OS (a Mac's disk, a NAS), unless named. Lower case.
PACKAGE_SUFFIXES = (".photoslibrary", ".photolibrary", ".migratedphotolibrary", ".aplibrary", ".app", ".bundle",
                    ".lrdata", ".fcpbundle", ".photobooth")
PACKAGE_FOLDERS = frozenset({"photo booth library"})

#: stat.IO_REPARSE_TAG_MOUNT_POINT (a junction's), which the stat module defines on Windows only
_JUNCTION_TAG = 0xA0000003


def _image_suffixes() -> frozenset[str]:
    from imgedit.imageio import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES


@dataclass
class InputScan:
    """What the inputs name: the image files, and the folders that could
    not be listed (their images are missing from ``files``: a batch that
    left some out has not done all it was asked)."""

    files: list[InputFile]
    unreadable: list[Path]
    unsearched: list[Path] = field(default_factory=list)  # sub-folders of an input folder, without -r
    raw: list[Path] = field(default_factory=list)  # camera RAW files a scan found and left out
    packages: list[Path] = field(default_factory=list)  # macOS package folders -r passed by
    in_cloud: list[Path] = field(default_factory=list)  # images iCloud holds only, named as their placeholders' photos


@dataclass
class _LinksLeftOut:
    """Symbolic links a folder scan did not follow: broken ones (their
    target is gone, or they loop on themselves) and links to a folder above
    them (following one would scan the same folders forever)."""

    broken: list[Path] = field(default_factory=list)
    loops: list[Path] = field(default_factory=list)

    def warn(self) -> None:
        """One line for all of them: the user sees what the batch lacks."""
        said = []
        if self.broken:
            said.append(f"{_count(self.broken, 'broken symbolic link')} (e.g. {shorten_path(self.broken[0])})")
        if self.loops:
            said.append(f"{_count(self.loops, 'symbolic link')} to a folder above it, which would loop "
                        f"(e.g. {shorten_path(self.loops[0])})")
        if said:
            logger.warning("left out %s", " and ".join(said))


def _count(things: list, name: str) -> str:
    return f"{len(things)} {name}{'s' * (len(things) != 1)}"


def _scan_folder(folder: Path, recursive: bool, scan: InputScan) -> None:
    """Add the images in ``folder`` to ``scan``, and what it left out to its lists."""
    suffixes = _image_suffixes()  # once per folder
    links = _LinksLeftOut()
    found = sorted(_files_in(folder, recursive, scan, links))
    links.warn()
    scan.raw.extend(p for p in found if _is_raw_name(p))
    scan.in_cloud.extend(p.with_name(photo) for p in found if (photo := _in_cloud_photo(p.name, suffixes)))
    scan.files.extend(InputFile(p, folder, from_folder=True) for p in found if _is_image_name(p, suffixes))


def _in_cloud_photo(name: str, suffixes: frozenset[str]) -> Optional[str]:
    """The image an iCloud placeholder stands for (``.IMG_0002.JPG.icloud``:
    ``IMG_0002.JPG``), else None: macOS 13 and earlier leave such a hidden
    stub where "Optimize Mac Storage" evicted a photo."""
    if not (name.startswith(".") and name.endswith(".icloud")):
        return None
    photo = name[1:-len(".icloud")]
    return photo if _is_image_name(Path(photo), suffixes) else None


def _files_in(folder: Path, recursive: bool, scan: InputScan, links: _LinksLeftOut) -> Iterator[Path]:
    """The files in ``folder`` and, if ``recursive``, in its sub-folders, but
    not in hidden ones (``.thumbnails``, ``.AppleDouble``, our own
    ``.imgedit-journal.d``), as hidden files are left out, nor in macOS
    package folders (a Photos library), which go to ``scan.packages``. A
    folder that cannot be listed is reported, added to ``scan.unreadable``
    and left out; the rest of the batch goes on.

    Links to folders are followed, as ``find -L`` does, once every folder
    reached without one has been listed, and each real folder is listed
    once: a link to a folder already listed adds nothing, and one to a
    folder above it (a loop) is left out, added to ``links`` with the broken
    links. Without ``recursive``, its visible sub-folders go to ``scan.unsearched``."""
    linked: list[Path] = []
    yield from _walk(folder, recursive, scan, links, linked)
    listed = [os.path.realpath(folder)] if linked else []  # the real trees listed so far
    while linked:
        link = linked.pop(0)
        target = os.path.realpath(link)
        if _is_within(os.path.realpath(link.parent), target):
            links.loops.append(link)
        elif not any(_is_within(target, tree, visible=True) for tree in listed):
            listed.append(target)
            yield from _walk(link, recursive, scan, links, linked)


def _walk(top: Path, recursive: bool, scan: InputScan, links: _LinksLeftOut, linked: list[Path]) -> Iterator[Path]:
    """The files under ``top`` reached without a link to a folder; those links
    go to ``linked``, broken links to ``links``."""
    pending = [top]
    while pending:  # a loop, not recursion: a tree 2000 folders deep is legal
        current = pending.pop()
        try:
            with os.scandir(current) as listing:
                entries = list(listing)
        except OSError as exc:  # no permission, a path over PATH_MAX, removed meanwhile
            _warn_unreadable(current, exc)
            scan.unreadable.append(current)
            continue
        for entry in entries:
            junction, hidden = _windows_marks(entry)
            if hidden:  # passed by as a dot-name is: Documents' "My Pictures" junction denies its listing to all
                continue
            visible = not _is_hidden(entry.name)
            is_link = junction or _quietly(entry.is_symlink)
            if visible and _is_package(entry.name) and _is_folder(entry, is_link):
                if recursive:  # without -r, no more a sub-folder -r would search than a hidden one
                    scan.packages.append(Path(entry.path))
            elif recursive and visible and _is_folder(entry, is_link):
                (linked if is_link else pending).append(Path(entry.path))
            elif _is_file(entry):
                yield Path(entry.path)
            elif is_link and visible and not os.path.exists(entry.path):
                links.broken.append(Path(entry.path))
            elif not recursive and visible and _is_folder(entry, is_link):
                scan.unsearched.append(Path(entry.path))


def _is_hidden(name: str) -> bool:
    """Whether a scan passes ``name`` by unsaid: a hidden file or folder, or a drive's system folder."""
    return name.startswith(".") or name in SYSTEM_FOLDERS


def _is_package(name: str) -> bool:
    """Whether folder ``name`` is a macOS package's (see :data:`PACKAGE_SUFFIXES`)."""
    lowered = name.lower()
    return lowered.endswith(PACKAGE_SUFFIXES) or lowered in PACKAGE_FOLDERS


def _windows_marks(entry: Union[os.DirEntry, Path]) -> tuple[bool, bool]:
    """On Windows, whether ``entry`` is a junction (a link to a folder that
    ``is_symlink()`` and ``os.path.islink`` do not see), and whether it is
    hidden (Explorer hides it; a system folder alone it shows); (False, False)
    elsewhere, without a stat."""
    if os.name != "nt":
        return False, False
    try:
        info = entry.stat(follow_symlinks=False)  # an entry's comes with its listing there: no call to the OS
    except OSError:
        return False, False
    attributes = getattr(info, "st_file_attributes", 0)
    # the reparse tag is what DirEntry.is_junction() (Python 3.12) reads, on every version
    return (getattr(info, "st_reparse_tag", 0) == _JUNCTION_TAG,
            bool(attributes & stat.FILE_ATTRIBUTE_HIDDEN))  # SYSTEM alone: a folder with a desktop.ini, shown


def is_link(path: Path) -> bool:
    """Whether ``path`` is a symbolic link or, on Windows, a junction."""
    return os.path.islink(path) or _windows_marks(path)[0]


def _is_folder(entry: os.DirEntry, is_link: bool) -> bool:
    # a real folder from the listing itself (no stat); a link's target needs one
    return _quietly(lambda: entry.is_dir(follow_symlinks=is_link))


def _is_within(path: str, tree: str, visible: bool = False) -> bool:
    """Whether real ``path`` is ``tree`` or inside it; with ``visible``,
    only through folders a folder scan lists (not hidden ones, nor packages)."""
    try:
        inside = os.path.relpath(path, tree)
    except ValueError:  # on two Windows drives: no relative path, and not inside
        return False
    if inside == ".":
        return True
    parts = Path(inside).parts
    return parts[0] != ".." and not (visible and any(_is_hidden(part) or _is_package(part) for part in parts))


def _is_file(entry: os.DirEntry) -> bool:
    # from the listing itself (no stat), so a name too long to stat is still
    # taken, and fails on its own, with its name, instead of vanishing
    return _quietly(entry.is_file)


def _quietly(test) -> bool:
    """``test()``, False where it cannot tell (a broken link, a vanished entry)."""
    try:
        return test()
    except OSError:
        return False


def _warn_unreadable(folder: Path, exc: OSError) -> None:
    logger.warning("cannot read folder %s (%s): its images are left out", shorten_path(folder), exc.strerror or exc)


def shorten_path(path: Path) -> str:
    """``path`` for a message; one over PATH_MAX by its start and end, which say where it is."""
    shown = str(path)
    return f"{shown[:100]}...{shown[-80:]}" if len(shown) > 200 else shown


def _is_image_file(path: Path, suffixes: Optional[frozenset[str]] = None) -> bool:
    """What a glob takes: image files (see :func:`_is_image_name`)."""
    return _is_image_name(path, suffixes) and _quietly(path.is_file)


def _is_image_name(path: Path, suffixes: Optional[frozenset[str]] = None) -> bool:
    """What a folder scan or a glob takes: image files, not sidecar masks,
    not our own hidden temporary files, not a README beside the photos."""
    suffixes = suffixes or _image_suffixes()
    return path.suffix.lower() in suffixes and not is_sidecar_name(path.name) and not path.name.startswith(".")


def output_is_file(output: Path, count: int) -> bool:
    """Whether ``-o output`` is the one output file of ``count`` inputs (else a folder).

    Raises:
        UsageError: a name in ``output`` is too long for any file system (its stat would fail).
    """
    check_name_lengths(output, f"-o {shorten_path(output)}")
    return count == 1 and names_an_image_file(output) and not output.is_dir()


def names_an_image_file(path: Path) -> bool:
    """Whether ``-o path`` names an image file rather than a folder: its
    suffix is one an image format uses, readable here or not (``out.pdf``
    and ``out.psd`` are files imgedit cannot write, refused as such, not
    folders made under those names); ``results.v2`` stays a folder."""
    suffix = path.suffix.lower()
    if suffix in _image_suffixes():
        return True
    from PIL import Image

    Image.init()
    return suffix in Image.registered_extensions()


def expand_inputs(items: Iterable[str], recursive: bool = False) -> list[InputFile]:
    """Expand files, folders and glob patterns, in order, without duplicates.

    A folder that cannot be listed (no permission, a path past PATH_MAX) is
    named in a warning and its images left out; the others are still taken.
    :func:`scan_inputs` also says which folders those were.

    Raises:
        UsageError: an input does not exist (or has a name too long for any
            file system), a glob matches nothing, or nothing at all was given.
    """
    return scan_inputs(items, recursive).files


def scan_inputs(items: Iterable[str], recursive: bool = False) -> InputScan:
    """:func:`expand_inputs`, with the folders that could not be listed."""
    scan = InputScan([], [])
    for item in items:
        check_name_lengths(item, "input")  # before the stats below, which such a name fails
        path = Path(item)
        if path.is_dir():
            _scan_folder(path, recursive, scan)
        elif path.exists():
            scan.files.append(InputFile(path, path.parent))
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=recursive or "**" in item))  # "**" asks for the depth itself
            if not matches:
                raise UsageError(f"no files match {item!r}")
            base = glob_base(item)
            scan.files.extend(InputFile(Path(m), base, from_folder=True) for m in matches if _is_image_file(Path(m)))
            scan.raw.extend(Path(m) for m in matches if _is_raw_name(Path(m)))
        else:
            raise UsageError(f"no such file or folder: {item}")
    unique = _one_per_file(scan.files)
    scan.unsearched.sort()
    scan.packages.sort()
    left_out = [said for said in (_packages_said(scan.packages), _in_cloud_said(scan.in_cloud)) if said]
    if not unique and items:
        raise UsageError("no images found in " + ", ".join(map(str, items)) + _raw_hint(scan.raw)
                         + "".join(f"; {said}" for said in left_out) + _unsearched_hint(scan.unsearched))
    if scan.raw:
        logger.warning("left out %s%s", _count(scan.raw, "camera RAW file"), _raw_advice(scan.raw))
    for said in left_out:
        logger.warning("%s", said)
    scan.files = unique
    return scan


def glob_base(pattern: str) -> Path:
    """The folder a glob's matches lie under: its part before the first wildcard."""
    base = Path(pattern.split("*")[0].split("?")[0].split("[")[0] or ".")
    return base if base.is_dir() else base.parent


def _is_raw_name(path: Path) -> bool:
    from imgedit.imageio.formats import is_camera_raw

    return is_camera_raw(path) and not path.name.startswith(".")


def _raw_hint(raw: list[Path]) -> str:
    """What "no images found" adds where camera RAW files were there ("" if none)."""
    return f", only {_count(raw, 'camera RAW file')}{_raw_advice(raw)}" if raw else ""


def _raw_advice(raw: list[Path]) -> str:
    from imgedit.imageio.formats import RAW_ADVICE

    advice = RAW_ADVICE if len(raw) == 1 else RAW_ADVICE.replace("export it", "export them")
    return f" ({'e.g. ' * (len(raw) > 1)}{shorten_path(raw[0])}): {advice}"


def _packages_said(packages: list[Path]) -> str:
    """The line for the macOS package folders -r passed by ("" if none)."""
    if not packages:
        return ""
    return (f"left out {_count(packages, 'macOS package folder')} (e.g. {shorten_path(packages[0])}): a package's "
            "files are its app's to change (a Photos library's originals); name the folder to scan inside it")


def _in_cloud_said(in_cloud: list[Path]) -> str:
    """The line for the images a scan found iCloud placeholders of ("" if none)."""
    if not in_cloud:
        return ""
    many = len(in_cloud) != 1
    return (f"{_count(in_cloud, 'image')} {'are' if many else 'is'} in iCloud only "
            f"(e.g. {shorten_path(in_cloud[0])}): download {'them' if many else 'it'} first (Finder: Download Now)")


def _unsearched_hint(unsearched: list[Path]) -> str:
    """What "no images found" adds where sub-folders were passed by ("" if none)."""
    if not unsearched:
        return ""
    count = len(unsearched)
    return (f"; {count} sub-folder{'s' * (count != 1)} (e.g. {unsearched[0]}) "
            f"{'were' if count != 1 else 'was'} not searched: add -r")


def unsearched_note(unsearched: list[Path]) -> str:
    """The note for sub-folders a scan without ``-r`` passed by ("" if none)."""
    if not unsearched:
        return ""
    count = len(unsearched)
    return (f"note: {count} sub-folder{'s' * (count != 1)} not searched (e.g. {unsearched[0]}): "
            "-r takes in the images under them")


def _one_per_file(found: list[InputFile]) -> list[InputFile]:
    """``found`` with each real file once, in order: the first found, but a
    file rather than a link to it (``a.png`` and ``z.png -> a.png``:
    ``a.png``'s output, named as the photo is, not ``z.png``'s)."""
    same_file: dict[str, list[int]] = {}
    folders: dict[str, str] = {}  # each folder resolved once: 20 000 photos in one folder cost one lookup
    for index, item in enumerate(found):
        text = os.fspath(item.path)
        if os.path.islink(text):
            real = os.path.realpath(text)
        else:
            folder, name = os.path.split(text)
            if folder not in folders:
                folders[folder] = os.path.realpath(folder or ".")
            real = os.path.join(folders[folder], name)
        same_file.setdefault(real, []).append(index)
    keep = sorted(_not_a_link(found, indexes) for indexes in same_file.values())
    return [found[index] for index in keep]


def _not_a_link(found: list[InputFile], indexes: list[int]) -> int:
    """The first of ``indexes`` whose file is not a symbolic link, else the first."""
    if len(indexes) == 1:  # the usual case: no lstat
        return indexes[0]
    return next((index for index in indexes if not found[index].path.is_symlink()), indexes[0])


def output_path(
    item: InputFile,
    *,
    output: Optional[Path],
    single: bool,
    op_label: str,
    ext: str,
    template: Optional[str] = None,
    in_place: bool = False,
) -> Path:
    """Where the result for ``item`` is written.

    Without ``-o`` the result goes beside the input as ``{stem}.{op}.{ext}``;
    with ``-o FOLDER`` it goes to the mirrored relative folder as
    ``{stem}.{ext}``; with ``-o FILE.ext`` and a single input, to that file.
    ``template`` overrides the name (fields: stem, ext, op, and srcext: the
    input's own suffix, to keep ``a.jpg`` and ``a.png`` apart).

    Raises:
        UsageError: a bad ``template`` (:func:`check_name_template`), or a
            ``template`` or ``output`` that names no file a file system holds.
    """
    if in_place:
        return item.path
    if output is not None and output_is_file(output, 1 if single else 2):
        return output
    default = "{stem}.{op}.{ext}" if output is None else "{stem}.{ext}"
    if template is not None:
        check_name_template(template)
        _check_template_length(template, ext, op_label)
    name = (template or default).format(stem=item.path.stem, ext=ext, op=op_label, srcext=item.path.suffix.lstrip("."))
    if template is not None and _leaves_folder(PurePath(name)):  # a file '...png' has the stem '..'
        raise UsageError(f"--name {template!r} names {name!r} for {item.path}, outside the output folder: "
                         "give a template that keeps {stem} inside a file name, e.g. '{stem}.{op}.{ext}'")
    folder = item.path.parent if output is None else output / item.relative.parent
    return folder / name


def _check_template_length(template: str, ext: str, op_label: str) -> None:
    """Refuse a ``--name`` whose own text makes every output name too long
    for a file system (each image would fail alike as it is written); an
    input whose long name alone does is that image's failure, not the batch's."""
    check_name_lengths(template.format(stem="", ext=ext, op=op_label, srcext=""), "--name")


NAME_FIELDS = ("stem", "ext", "op", "srcext")


def _leaves_folder(name: PurePath) -> bool:
    """Whether ``name`` points outside the folder it is joined to: an anchor
    (``/x``; on Windows also ``\\x`` and ``C:x``, which are not absolute
    but replace the folder's root or drive) or a ``..``."""
    return bool(name.anchor) or ".." in name.parts


def check_name_template(template: str) -> None:
    """Refuse a ``--name`` template that is not plain fields and text, or
    that leaves the output folder.

    Raises:
        UsageError: an unknown, positional, indexed or formatted field, a bad
            brace, or an absolute path or ``..`` in the template.
    """
    import string

    hint = "use {stem}, {ext}, {op} and {srcext}, e.g. '{stem}.{op}.{ext}'"
    try:
        fields = [(f, conv, spec) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:  # "Single '}' encountered", "expected '}' before end of string"
        raise UsageError(f"bad --name template {template!r}: {exc}; {hint}") from None
    for field_name, conversion, spec in fields:
        if field_name not in NAME_FIELDS or conversion or spec:
            shown = "{" + field_name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise UsageError(f"bad --name template {template!r}: {shown} is not a field; {hint}")
    if _leaves_folder(Path(template)):
        raise UsageError(f"bad --name template {template!r}: it must stay inside the output folder (no absolute path, drive or '..')")
    if sys.platform == "win32":  # ':' would write into a file's hidden stream, or onto drive D: from a stem 'd'
        text = "".join(literal for literal, *_ in string.Formatter().parse(template))
        bad = sorted(set(text) & WINDOWS_BAD_CHARS)
        if bad:
            raise UsageError(f"bad --name template {template!r}: Windows names cannot hold {' '.join(bad)}")
