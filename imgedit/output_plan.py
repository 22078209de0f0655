"""Planning a run's outputs before any image is read: the path of each
input's output (never the input itself, never two inputs on one output),
the option combinations refused or ignored, the inputs that are an earlier
run's results, where the resume journal lives, and the temporary files a
killed run left beside the outputs.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from imgedit.errors import UsageError
from imgedit.inputs import InputFile, output_path

if TYPE_CHECKING:  # pragma: no cover
    from imgedit.pipeline import Pipeline
    from imgedit.runner import RunOptions

log = logging.getLogger("imgedit")


def _output_ext(item: InputFile, options: RunOptions) -> str:
    if options.format:
        from imgedit.imageio import suffix_for_format

        return suffix_for_format(options.format.upper()).lstrip(".")
    return item.path.suffix.lstrip(".") or _sniffed_ext(item.path)


def _sniffed_ext(path: Path) -> str:
    """The suffix of the format a file without one holds, from its first
    bytes, so a JPEG named ``scan`` stays a JPEG; png where they do not
    tell (the read then fails and says why, as for anything but a regular
    file: a FIFO is not opened, which would wait for a writer)."""
    try:
        info = os.stat(path)
    except OSError:
        return "png"
    if not stat.S_ISREG(info.st_mode):
        return "png"
    return _sniffed_ext_of(path, info.st_size, info.st_mtime_ns, info.st_ino)


@lru_cache(maxsize=4096)
def _sniffed_ext_of(path: Path, size: int, mtime_ns: int, inode: int) -> str:
    """:func:`_sniffed_ext` of one version of the file: a service that gives
    one upload path new content gets the new content's format."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return "png"
    return ext_of_bytes(head)


def ext_of_bytes(head: bytes) -> str:
    """The suffix of the format whose file begins with ``head`` (16 bytes
    tell), png where they do not tell."""
    from imgedit.imageio.pngchunks import PNG_SIGNATURE
    from imgedit.imageio.source import is_tiff

    if is_tiff(head):
        return "tif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    starts = ((b"\xff\xd8\xff", "jpg"), (PNG_SIGNATURE, "png"), (b"BM", "bmp"), (b"GIF8", "gif"))
    return next((ext for magic, ext in starts if head.startswith(magic)), "png")


class RealPaths:
    """``path``'s folder resolved (links followed), joined to its name, as a
    string: one lookup per folder rather than per file, and no Path objects,
    so planning thousands of files in a few folders costs a few syscalls."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def __call__(self, path: Path) -> str:
        folder, name = os.path.split(os.fspath(path))
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(folder or ".")
        return os.path.join(real, name)


def plan_output(
    item: InputFile, pipeline: Pipeline, options: RunOptions, single: bool, real: Optional[RealPaths] = None
) -> Path:
    """The output path for ``item``; refuses to overwrite the input."""
    real = real or RealPaths()
    dst = _named_output(item, pipeline, options, single)
    if not options.in_place and (real(dst) == real(item.path) or _same_file(dst, item.path)):
        raise UsageError(f"{item.path}: output would overwrite the input; pass --in-place to allow that")
    _check_suffix(dst, options)
    return dst


def _named_output(item: InputFile, pipeline: Pipeline, options: RunOptions, single: bool) -> Path:
    """The output path the options name for ``item``, unchecked."""
    return output_path(item, output=options.output, single=single, op_label=pipeline.label,
                       ext=_output_ext(item, options), template=options.name, in_place=options.in_place)


def _check_suffix(dst: Path, options: RunOptions) -> None:
    """The output's suffix names a writable format, the one ``--format`` asks
    for if given: PNG bytes in a file called .jpg mislead every other program."""
    from imgedit.imageio import format_for_path
    from imgedit.imageio.formats import normalize_format

    fmt = format_for_path(dst)
    if options.format and normalize_format(options.format) != fmt:
        raise UsageError(
            f"{dst}: --format {options.format} would write {normalize_format(options.format)} data into a "
            f"{dst.suffix} file; drop --format, or name the output with a matching suffix"
        )


def check_options(options: RunOptions, count: int) -> None:
    """Refuse option combinations that cannot do what the user meant, before
    any image is read (``count``: how many inputs)."""
    from imgedit.inputs import names_an_image_file, output_is_file

    check_compute_options(options)
    out = options.output
    if options.in_place and out is not None:
        raise UsageError("--in-place writes over the inputs and -o writes elsewhere: give one of them")
    if options.force and options.retry_failed:
        raise UsageError("--force redoes every image and --retry-failed only the failed ones: give one of them")
    if options.skip_failed and (options.force or options.retry_failed):
        flag = "--force redoes every image" if options.force else "--retry-failed redoes only the failed ones"
        raise UsageError(f"--skip-failed leaves out the images that failed before and {flag}: give one of them")
    if out is None or output_is_file(out, count) or out.is_dir():
        return
    if out.exists():
        raise UsageError(f"-o {out} is a file; give a folder for {count} inputs" if count > 1
                         else f"-o {out} is a file without an image suffix; give an image file name or a folder")
    if names_an_image_file(out):
        raise UsageError(f"-o {out} names one image, but there are {count} inputs; give a folder")


def check_compute_options(options: RunOptions) -> None:
    """The device (or ``IMGEDIT_DEVICE``), precision and tile size, and the
    limits set in the environment, are valid here: one line before any image
    is read, not the same failure once per image.

    Torch (seconds and hundreds of MB to import) is asked only where it must
    judge: whether a GPU asked for is there, and any device or precision that
    is not plainly valid (refused with its own message). The usual request
    (auto or the CPU) needs none, so a rerun with nothing left to do, a cron job
    polling a folder, never imports it."""
    import numbers

    from imgedit.imageio.source import pixel_limit
    from imgedit.process_tuning import cpu_memory_setting

    if not _any_machine_device(options.device):
        from imgedit.devices import resolve_device

        resolve_device(options.device)
    if not _precision_name(options.precision):
        from imgedit.devices import parse_precision

        parse_precision(options.precision)
    tile = options.tile
    if not (tile is None or tile == "auto" or isinstance(tile, numbers.Integral) and not isinstance(tile, bool) and tile >= 0):
        raise UsageError(f"tile: expected a size in px, 0 or 'auto', got {tile!r}")
    pixel_limit(None)
    cpu_memory_setting()


#: The device requests every machine serves, as :func:`imgedit.devices.resolve_device`
#: reads them: it never refuses these. Any other (a GPU, a typo) is its to judge.
_ANY_MACHINE_DEVICES = frozenset({"auto", "cpu", "cpu:0"})

#: The precisions :func:`imgedit.devices.parse_precision` takes (None too).
_PRECISION_NAMES = frozenset({"auto", "fp32", "fp16", "bf16"})


def _any_machine_device(spec: Optional[str]) -> bool:
    """Whether ``spec`` (None: ``IMGEDIT_DEVICE``, else auto, as
    :func:`~imgedit.devices.resolve_device` reads it) is one of :data:`_ANY_MACHINE_DEVICES`."""
    if spec is None:
        spec = os.environ.get("IMGEDIT_DEVICE") or "auto"  # imgedit.devices.ENV_DEVICE: importing it imports torch
    return str(spec).strip().lower() in _ANY_MACHINE_DEVICES


def _precision_name(spec: Optional[str]) -> bool:
    """Whether ``spec`` is None or one of :data:`_PRECISION_NAMES`."""
    return spec is None or str(spec).strip().lower() in _PRECISION_NAMES


#: The output formats whose encoder takes a quality (see imgedit.imageio.encode), as users spell them.
QUALITY_FORMATS = {"JPEG": "JPEG", "WEBP": "WebP", "AVIF": "AVIF"}


def ignored_options(pipeline: Pipeline, items: list[InputFile], options: RunOptions) -> list[str]:
    """One line for each option in ``options`` that this run would accept
    and then not use ("ignoring --force: ..."), for the CLI to say before
    any image is read; the run goes on without them. ``items``: the inputs
    as they will run (after :func:`leave_out_own_outputs`). Combinations
    that can only be a mistake are refused by :func:`check_options` instead."""
    from imgedit.inputs import output_is_file

    if not items:
        return []
    notes = []
    to_file = options.output is not None and output_is_file(options.output, len(items))
    if options.name is not None and (to_file or options.in_place):
        why = "-o FILE names the output" if to_file else "--in-place writes over the inputs"
        notes.append(f"ignoring --name: {why}")
    if options.quality is not None:
        formats = _output_formats(pipeline, items, options)
        if formats and not formats & QUALITY_FORMATS.keys():
            notes.append(f"ignoring --quality: only {_listed(QUALITY_FORMATS.values())} outputs use it, and this run "
                         f"writes {_listed(sorted(formats))}")
    if (options.force or options.retry_failed or options.skip_failed) and journal_folder(items, options) is None:
        flag, then = (("--force", "nothing is skipped as done (--overwrite replaces an existing output)") if options.force
                      else ("--retry-failed" if options.retry_failed else "--skip-failed",
                            "no failure is on record and the image is processed"))
        notes.append(f"ignoring {flag}: one file given alone{' with -o FILE' if to_file else ''} keeps no journal, "
                     f"so {then}")
    return notes


def _listed(words: Any) -> str:
    """"a", "a and b", "a, b and c"."""
    words = list(words)
    return " and ".join(filter(None, [", ".join(words[:-1]), words[-1]]))


def _output_formats(pipeline: Pipeline, items: list[InputFile], options: RunOptions) -> set[str]:
    """The formats the run's outputs will be written in, as :func:`plan_output`
    names them and the writer reads their suffixes; an empty set where
    planning fails (the run reports why)."""
    from imgedit.imageio import format_for_path
    from imgedit.imageio.formats import normalize_format

    try:
        if options.format:
            return {normalize_format(options.format)}
        single = len(items) == 1
        return {format_for_path(_named_output(item, pipeline, options, single)) for item in items}
    except UsageError:
        return set()


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` exists and is ``b`` (through a symbolic link, say)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def names_ignore_case() -> bool:
    """Whether file names usually ignore case here: APFS on macOS and NTFS
    on Windows do by default, so Photo.jpg and photo.jpg are one file."""
    return sys.platform in ("darwin", "win32")


def _file_key(path: str) -> str:
    """``path`` (real, as :class:`RealPaths` gives it) as the file system
    tells files apart: two outputs with one key would overwrite each other.
    APFS and HFS+ ignore the Unicode form too: Café typed (NFC) and Café as
    Finder copies it (NFD) are one file on macOS, two on NTFS."""
    if sys.platform == "darwin":
        path = unicodedata.normalize("NFC", path)
    return path.casefold() if names_ignore_case() else path


def plan_outputs(pipeline: Pipeline, items: list[InputFile], options: RunOptions) -> list[Path]:
    """Output paths for all items; two inputs landing on one output is an
    error raised before any image is touched."""
    check_options(options, len(items))
    single, real = len(items) == 1, RealPaths()
    outputs = [plan_output(item, pipeline, options, single, real) for item in items]
    seen: dict[str, Path] = {}
    for item, dst in zip(items, outputs):
        other = seen.setdefault(_file_key(real(dst)), item.path)
        if other != item.path:
            raise UsageError(f"{other} and {item.path} would both be written to {dst}; {_apart(other, item.path)}")
    if not options.in_place:
        for item in items:
            source = seen.get(_file_key(real(item.path)))
            if source is not None and source != item.path:
                raise UsageError(f"{source}'s output {item.path} is also an input; give -o a folder of its own")
    return outputs


def _apart(a: Path, b: Path) -> str:
    """How to keep two inputs' outputs apart."""
    ignore_case = names_ignore_case()
    if _file_key(a.stem) != _file_key(b.stem):
        return "put {stem} in the --name template, e.g. '{stem}.{op}.{ext}'"  # only a template without it joins them
    # photo.JPG and photo.jpg too, where names keep their case: {srcext} does (ignoring it, they lie in two folders)
    if a.suffix.lower() != b.suffix.lower() or a.suffix != b.suffix and not ignore_case:
        return "add {srcext} to the name, e.g. --name '{stem}.{srcext}.{ext}'"
    return "they have the same name in different folders: run each folder with its own -o, or pass their common parent folder with -r (outputs mirror the tree)"


def leave_out_own_outputs(pipeline: Pipeline, items: list[InputFile], options: RunOptions,
                          named: frozenset[Path] = frozenset(), journals: Optional[JournalsRead] = None,
                          ) -> tuple[list[InputFile], list[InputFile]]:
    """Split the inputs into those to process and those that are this run's
    own outputs: a second run over a folder that holds the first run's
    results (``photo.denoise.png`` beside ``photo.png``), ``-o`` inside an
    input folder with ``-r``, or what an earlier run made from photos of
    the same scan (its journal says so). Those were found by a folder scan
    or a glob, not named (``named``), and are results, not work: processing
    them would nest outputs one level deeper on every run. The journals
    read to tell are kept in ``journals``, for the run to take up.

    Raises:
        UsageError: every input found is such a result: a run that did
        nothing must not pass for done.
    """
    if options.in_place:
        return items, []
    real, journals = RealPaths(), journals or JournalsRead()
    items, nested = _leave_out_output_tree(items, options, named, real)
    items, earlier = _leave_out_earlier_results(items, named, real, journals)
    items, beside = _leave_out_results_by_name(items, named, journals)
    keep, own = (items, []) if len(items) < 2 else _leave_out_output_names(pipeline, items, options, named, real)
    left_out = nested + earlier + beside + own
    if left_out and not keep:
        raise UsageError(f"every image found is a result of imgedit, this run's or an earlier one's (e.g. "
                         f"{left_out[0].path}): name the files to edit them")
    return keep, left_out


def _leave_out_output_tree(items: list[InputFile], options: RunOptions, named: frozenset[Path],
                           real: RealPaths) -> tuple[list[InputFile], list[InputFile]]:
    """With ``-o`` a strict sub-folder of an input folder, everything found
    under ``-o``: all of it is results, of this pipeline or of an earlier
    run with other options (``--format jpeg`` after PNGs), which the names
    this run would write do not recognise. (``-o`` the input folder itself
    holds the photos too: there only the names tell.)"""
    if options.output is None:
        return items, []
    output = Path(os.path.realpath(options.output))
    roots: dict[Path, Path] = {}
    keep, own = [], []
    for item in items:
        if item.from_folder and item.path not in named:
            if item.root not in roots:
                roots[item.root] = Path(os.path.realpath(item.root))
            root = roots[item.root]
            if output != root and output.is_relative_to(root) and Path(real(item.path)).is_relative_to(output):
                own.append(item)
                continue
        keep.append(item)
    return keep, own


def _leave_out_earlier_results(items: list[InputFile], named: frozenset[Path], real: RealPaths,
                               journals: JournalsRead) -> tuple[list[InputFile], list[InputFile]]:
    """Split the inputs: those a folder scan found that an earlier run made
    from another of this run's inputs, as the journal of their folder (or of
    one above it, up to the input folder) records: ``photo.denoise.png``
    beside ``photo.png``, found again by ``imgedit inpaint photos/ -o out/``.
    A folder of results given as the input, their photos elsewhere
    (``imgedit inpaint stage1/`` after ``imgedit denoise raw/ -o stage1/``),
    is the user's input, and so is a photo an ``--in-place`` run edited."""
    scanned = [item for item in items if item.from_folder and item.path not in named]
    if not any(journals.over(item) for item in scanned):  # the usual case: no journal where the photos are
        return items, []
    paths = [real(item.path) for item in items]
    reals = set(paths)
    keep, own = [], []
    for item, path in zip(items, paths):
        if item.from_folder and item.path not in named:
            sources = (journal.result_source(item.path) for journal in journals.over(item))
            if any(source is not None and source.path != path and source.path in reals for source in sources):
                own.append(item)
                continue
        keep.append(item)
    return keep, own


def _leave_out_results_by_name(items: list[InputFile], named: frozenset[Path],
                               journals: JournalsRead) -> tuple[list[InputFile], list[InputFile]]:
    """Split the inputs: those a folder scan found that are named as imgedit
    names a result beside its photo, ``{stem}.{op}.{ext}`` with ``op`` one
    or more operations (``photo.denoise.jpg``, ``photo.denoise-style.png``)
    and a photo of that stem found beside it, whatever verb made it, where
    no journal there has a record of the file: a file named alone keeps no
    journal to say so (``imgedit denoise photo.jpg``, then ``imgedit inpaint
    .``). A journal's word stands (:func:`_leave_out_earlier_results`): a
    file put where its result was is a photo again."""
    if len(items) < 2:
        return items, []
    from imgedit.registry import get_registry

    operations = set(get_registry().operation_names())
    stems = {(item.path.parent, item.path.stem) for item in items}
    keep, own = [], []
    for item in items:
        parts = item.path.name.split(".")
        result = (item.from_folder and item.path not in named and len(parts) >= 3
                  and all(op in operations for op in parts[-2].split("-"))
                  and (item.path.parent, ".".join(parts[:-2])) in stems
                  and not any(journal.get(item.path) is not None for journal in journals.over(item)))
        (own if result else keep).append(item)
    return keep, own


class JournalsRead:
    """The journals in a scanned file's folder and the folders above it, up
    to its input folder: each folder looked at once, each journal read once.
    The run takes up the one in its own journal folder (:meth:`take`): a
    rerun over a folder of photos and their results, whose journal lies
    there, reads it once (a second read of 20 000 records was 1 s)."""

    def __init__(self) -> None:
        self._journals: dict[Path, Any] = {}
        self._chains: dict[tuple[str, Path], list] = {}

    def over(self, item: InputFile) -> list:
        key = (os.path.dirname(item.path), item.root)  # strings: no Path made per file of a large scan
        if key not in self._chains:
            folders = _folders_up_to(item.path.parent, item.root)
            self._chains[key] = [j for folder in folders if (j := self._in(folder)) is not None]
        return self._chains[key]

    def _in(self, folder: Path) -> Any:
        from imgedit.errors import ImgeditError
        from imgedit.journal import JOURNAL_NAME, SHARDS_NAME, Journal

        if folder not in self._journals:
            self._journals[folder] = None
            if (folder / JOURNAL_NAME).is_file() or (folder / SHARDS_NAME).is_dir():
                try:
                    self._journals[folder] = Journal(folder)
                except (ImgeditError, OSError):  # not readable: the run's own journal says why, if it is this one
                    pass
        return self._journals[folder]

    def take(self, folder: Path) -> Any:
        """The journal read in ``folder``, handed over (the taker rereads what
        was appended since and writes to it), or None where none was read."""
        journal, self._journals[folder] = self._journals.get(folder), None
        return journal


def _folders_up_to(folder: Path, root: Path) -> Iterator[Path]:
    """``folder``, then the folders above it up to ``root``; ``folder`` alone
    where ``root`` is not above it (a glob's match)."""
    yield folder
    if not folder.is_relative_to(root):
        return
    while folder != root and folder != folder.parent:
        folder = folder.parent
        yield folder


def _leave_out_output_names(pipeline: Pipeline, items: list[InputFile], options: RunOptions, named: frozenset[Path],
                            real: RealPaths) -> tuple[list[InputFile], list[InputFile]]:
    """Split the inputs: those found where this run writes another input's result are its own outputs."""
    output_of: dict[str, Path] = {}
    for item in items:
        try:
            dst = output_path(item, output=options.output, single=False, op_label=pipeline.label,
                              ext=_output_ext(item, options), template=options.name)
        except UsageError:
            return items, []  # plan_outputs reports it
        output_of[real(dst)] = item.path
    keep, own = [], []
    for item in items:
        source = output_of.get(real(item.path))
        is_own = source is not None and source != item.path and item.path not in named
        (own if is_own else keep).append(item)
    return keep, own


def remove_stale_temps(outputs: list[Path], lock_folder: Optional[Path] = None) -> None:
    """Clear what writers killed mid-write left beside these outputs: one
    listing per output folder, not one per image.

    Only while no other run holds the run lock of ``lock_folder`` (the
    journal's folder; by default the nearest folder above the outputs that
    has one), held meanwhile: a temporary there may be another run's write
    in flight, not a dead one's. A run that is not alone leaves them; the
    next run that is clears them. (Judging by age instead would delete a
    slow write of a large image, or keep a dead run's for hours.)"""
    from imgedit.atomic import remove_stale_temps_of
    from imgedit.journal import alone_in

    names: dict[Path, set[str]] = {}
    for dst in outputs:
        names.setdefault(dst.parent, set()).add(dst.name)
    with alone_in(lock_folder or _nearest_run_lock(list(names))) as alone:
        if not alone:
            log.debug("another run writes here: its temporary files are left alone")
            return
        for folder, wanted in names.items():
            remove_stale_temps_of(folder, wanted)


def _nearest_run_lock(folders: list[Path]) -> Optional[Path]:
    """The nearest folder, at or above all of ``folders``, holding a run lock."""
    from imgedit.journal import LOCK_NAME

    if not folders:
        return None
    try:
        common = Path(os.path.commonpath([os.path.abspath(f) for f in folders]))
    except ValueError:  # on different drives (Windows)
        return None
    for folder in (common, *common.parents):
        if (folder / LOCK_NAME).exists():
            return folder
    return None


def journal_folder(items: list[InputFile], options: RunOptions) -> Optional[Path]:
    """Where the resume journal lives: the output folder, else the input
    root of a batch (``--in-place`` too: a rerun must know which photos it
    has edited already), even a folder holding one photo, so a rerun skips
    it as it would skip many; a file named alone has none unless ``-o`` is
    a folder."""
    if options.output is not None:
        from imgedit.inputs import output_is_file

        return None if output_is_file(options.output, len(items)) else options.output
    return items[0].root if len(items) > 1 or items and items[0].from_folder else None
