"""The batch runner: decode, compute and encode as concurrent stages with
bounded queues, a resume journal, and per-file failures that never end a
batch.

Decoding and encoding run in thread pools (Pillow, OpenCV and torch release
the GIL); computation runs in the calling thread, in input order. At most
``depth`` decoded images and ``depth`` pending writes exist at any time, so
memory stays flat however many images there are.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import suppress
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from imgedit.atomic import name_too_long
from imgedit.errors import (DiskFullError, ImageNotReadHereError, ImageReadError, ImgeditError,
                            OutputExistsError, RunStopped)
from imgedit.inputs import InputFile, is_link
from imgedit.journal import WITHDRAWN, WROTE, Journal, Source, bytes_digest, file_digest, stat_key
from imgedit.journal_keys import JournalKeys, holds_done
from imgedit.masks import TRANSPARENCY, MaskOptions, opaque_over_filled_hole
from imgedit.output_plan import JournalsRead, RealPaths, journal_folder, plan_outputs, remove_stale_temps
from imgedit.pipeline import BuiltPipeline, Pipeline
from imgedit.process_tuning import usable_cpus
from imgedit.progress import json_text
from imgedit.stdio import shown

log = logging.getLogger("imgedit")


@dataclass
class RunOptions:
    """Everything about a run that is not the pipeline itself."""

    output: Optional[Path] = None
    name: Optional[str] = None
    device: Optional[str] = None
    precision: Optional[str] = None
    tile: Union[int, str, None] = "auto"
    overwrite: bool = False
    in_place: bool = False
    format: Optional[str] = None
    quality: Optional[int] = None  # None: as the source where it is the output's format, else 95
    masks: MaskOptions = field(default_factory=MaskOptions)
    fail_fast: bool = False
    workers: int = 2  # I/O threads for decoding, and again for encoding
    depth: int = 4  # images decoded ahead / writes pending, at most
    force: bool = False  # redo what the journal says is done
    retry_failed: bool = False  # redo only what the journal says failed
    skip_failed: bool = False  # leave out what failed before and has not changed since (a corrupt file)
    fsync: bool = False  # flush each output to disk: survives a power cut, costs ms per file


#: Pixels a batch reads ahead and keeps waiting to be written, at most, once
#: it has met a large image (a small one waits ``RunOptions.depth`` deep): 48 MP,
#: about 0.8 GB as float RGB with a mask.
READ_AHEAD_PIXELS = 48_000_000


def read_ahead(depth: int, largest: int) -> int:
    """Images to read ahead, and to keep waiting to be written: ``depth``,
    fewer where the largest image read has ``largest`` pixels, so that about
    :data:`READ_AHEAD_PIXELS` wait at most (four 96 MP photos read ahead,
    each 1.6 GB as floats with its mask, took 9 GB). ``--dry-run`` plans by it too."""
    return max(1, min(max(1, depth), READ_AHEAD_PIXELS // max(1, largest)))

#: The note of an image ``--skip-failed`` left out (its error follows).
FAILED_BEFORE = "failed in an earlier run, unchanged since (--retry-failed tries it again)"


@dataclass
class FileResult:
    source: Path
    output: Optional[Path] = None
    status: str = "done"  # done, skipped, failed
    error: Optional[str] = None
    exit_code: int = 0  # a failure's: 1, or its error's own (2 for a mask or usage problem)
    note: str = ""
    needs_overwrite: bool = False  # failed only because the output exists and is not this run's to replace
    bad_file: bool = False  # failed for the file's own content (corrupt, not an image): so until it changes
    unbuildable: bool = False  # failed because the pipeline could not be built: the run's error, not this image's
    earlier_error: Optional[str] = None  # skipped by --skip-failed: the error its earlier run recorded
    panels: int = 1  # results side by side in the output (inpaint --samples K)
    details: list = field(default_factory=list)  # what the stages said of this image ("sigma 12.3 estimated")


@dataclass
class Summary:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    journal: Optional[Path] = None
    unbuildable: bool = False  # the pipeline could not be built (a model would not load): no image can be done
    build_error: Optional[Exception] = None  # why, as raised (the local engine's): the Python API raises it
    unreadable: list[Path] = field(default_factory=list)  # input folders that could not be listed: their images were left out
    planned: Optional[int] = None  # images the run was given: more than its results when it stopped early
    error: Optional[str] = None  # what stopped the run itself (a journal that cannot be written), not one image
    left_out: list[Path] = field(default_factory=list)  # files a scan found that an earlier run made: results, not inputs
    in_cloud: list[Path] = field(default_factory=list)  # images iCloud holds only: said, not failed (they may be done)

    def take_scan(self, scan: Any, left_out: list[InputFile]) -> None:
        """What the scan behind the run found and did not give it: folders
        it could not read, photos iCloud holds only, and ``left_out``, the
        earlier results it left out (see :func:`imgedit.output_plan.leave_out_own_outputs`)."""
        self.unreadable, self.in_cloud = scan.unreadable, scan.in_cloud
        self.left_out = [item.path for item in left_out]

    def _with(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.status == status]

    @property
    def done(self) -> list[FileResult]:
        return self._with("done")

    @property
    def skipped(self) -> list[FileResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return self._with("failed")

    @property
    def failed_before(self) -> list[FileResult]:
        """The skipped that ``--skip-failed`` left out: failed before, unchanged since."""
        return [r for r in self.skipped if r.earlier_error is not None]

    def unreadable_note(self) -> str:
        """What the batch left out because folders could not be listed ("" if
        none): it did not do all it was asked, so it ends in an error (as
        rsync's and cp's do)."""
        from imgedit.inputs import shorten_path

        if not self.unreadable:
            return ""
        count = len(self.unreadable)
        return (f"{count} input folder{'s' * (count != 1)} could not be read and their images were left out "
                f"(e.g. {shorten_path(self.unreadable[0])}): fix the permissions and run the same command again "
                "(what is done is skipped)")

    @property
    def not_attempted(self) -> int:
        """Images never tried: after --fail-fast, Ctrl-C or a run-level error."""
        return max(0, self.planned - len(self.results)) if self.planned is not None else 0

    def as_dict(self) -> dict[str, Any]:
        """The summary for ``--json``: every string valid Unicode (see :func:`imgedit.progress.json_text`),
        a piped run's files named as the streams (:func:`imgedit.stdio.shown`)."""
        def text(value: str) -> str:
            return shown(json_text(value))

        return {
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "failed_before": [{"input": text(str(r.source)), "error": text(r.earlier_error)}
                              for r in self.failed_before],
            "not_attempted": self.not_attempted,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "error": text(self.error) if self.error else None,
            "journal": text(str(self.journal)) if self.journal else None,
            "outputs": [{"input": text(str(r.source)), "output": text(str(r.output)), "note": text(r.note),
                         "panels": r.panels, "details": [text(d) for d in r.details]} for r in self.done],
            "failures": [{"input": text(str(r.source)), "error": r.error and text(r.error)} for r in self.failed],
            "unreadable_folders": [text(str(folder)) for folder in self.unreadable],
            "in_cloud_only": [text(str(path)) for path in self.in_cloud],
            "left_out_results": [text(str(path)) for path in self.left_out],
        }


# -- the stages ----------------------------------------------------------


@dataclass
class _Work:
    """One image on its way through the stages."""

    item: InputFile
    dst: Path
    key: str = ""
    source: Optional[Source] = None  # the input, as the journal names it
    result_key: Optional[str] = None  # --in-place: the key of the result written over the input
    result_digest: Optional[str] = None  # --in-place: and the digest of its content
    read_stat: Optional[tuple] = None  # the input's (size, mtime_ns, inode) just before it was read
    read_mode: Optional[int] = None  # and its st_mode: a private photo's edit is private too
    picture: Any = None  # decoded metadata (and pixels until they become a tensor)
    hole: Any = None  # (H, W) bool
    image: Any = None  # (1, 3, H, W) tensor
    mask: Any = None  # (1, 1, H, W) tensor
    size: tuple = ()  # (H, W) as read: a result K times as wide holds K results side by side
    dst_free: bool = False  # the output was not there when the input was read (see _check_before_rename)
    overtaken: bool = False  # another run changed the input or wrote the output meanwhile: not this image's failure
    start_time: Optional[float] = None  # the time of its journal's "start" line, which a "withdrawn" one names
    result: FileResult = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.result = FileResult(self.item.path, self.dst)


class _Batch:
    """The state of one run: options, journal, stages."""

    def __init__(self, pipeline: Pipeline, options: RunOptions, journal: Optional[Journal], built: Optional[BuiltPipeline],
                 on_tile: Optional[Callable[[str, int, int], None]] = None):
        self.pipeline, self.options, self.journal = pipeline, options, journal
        self.keys = JournalKeys(pipeline, options)
        self.real = RealPaths()
        self._built = built
        self.on_tile = on_tile
        self.build_error: Optional[Exception] = None  # then no image can be done: the run stops after the first
        self._previews_said = False  # camera JPEGs with a preview are said once a run, not per photo
        self._drops_said: set[str] = set()  # and what an output format drops (16 bits, transparency)
        self._lock = threading.Lock()
        self._largest = 0  # pixels of the largest image read so far: how many to read ahead and keep in writing

    @property
    def built(self) -> BuiltPipeline:
        if self._built is None:  # models load on the first image that needs them
            try:
                self._built = self.pipeline.build(self.options.device, self.options.precision)
            except Exception as exc:
                self.build_error = exc
                raise
        return self._built

    @property
    def build_failed(self) -> bool:
        return self.build_error is not None

    def read_ahead(self) -> int:
        """:func:`read_ahead` for this run: 1 until an image has been read (the
        first ones skipped as done, or failed), since their size is unknown."""
        return read_ahead(self.options.depth, self._largest) if self._largest else 1

    def decode(self, work: _Work) -> _Work:
        """Runs in an I/O thread: journal check, read, mask."""
        from imgedit.imageio.read import read_image
        from imgedit.masks import find_mask

        with _catch(work):
            if self._done_unread(work):
                return work
            info = _stat(work.item.path)  # before the read: a change after it shows on the next run
            work.read_stat = stat_key(info) if info is not None else None
            work.read_mode = info.st_mode if info is not None else None
            if info is not None and info.st_size == 0 and self._skip_empty(work):
                return work
            # one read serves the journal key and the decoder: the key is of the bytes decoded
            data = self._read_whole(work)  # an empty file fails here, keyed by _skip_empty
            if data is None or self._skip(work, data, info=info):
                return work
            if self.options.in_place:
                _check_in_place_target(work.item)
            from imgedit.tensor import mask_to_tensor, to_tensor  # torch: not for an image skipped as done

            work.picture = read_image(work.item.path, data=data)
            with self._lock:
                self._largest = max(self._largest, work.picture.width * work.picture.height)
            self._check_frames(work)
            if self.pipeline.needs_mask:
                work.hole, work.result.note = find_mask(
                    work.item.path, work.picture.rgb, work.picture.alpha, self.options.masks, relative=work.item.relative,
                    lossy=work.picture.encoding.is_lossy(work.picture.format),
                )
                work.mask = mask_to_tensor(work.hole)
            work.image = to_tensor(work.picture.rgb)
            work.size = tuple(work.picture.rgb.shape[:2])
            work.picture.rgb = None  # the tensor holds the pixels now; don't keep two copies
        return work

    def _read_whole(self, work: _Work) -> Optional[bytes]:
        """The input's bytes (:func:`read_file_bytes`). A large file that its
        header refuses is not read whole, yet its failure is keyed by its
        content, hashed as it streams, as any image's is: so that
        ``--skip-failed`` knows it next time. None: skipped as such a failure."""
        from imgedit.imageio.read import read_file_bytes

        try:
            return read_file_bytes(work.item.path)
        except ImageReadError:
            if self.journal is not None:
                with suppress(OSError):  # not there, or not readable: said by the error as it is
                    keys = self.keys.matching(work.item, file_digest(work.item.path))
                    work.key = keys[0]
                    if self._failed_before(work, self.journal.get(work.dst), keys):
                        return None
            raise

    def needs_no_work(self, work: _Work) -> bool:
        """Whether the journal lets ``work`` be skipped, by the check
        :meth:`decode` makes, without decoding: for a driver that hands the
        rest to other processes. Only inputs the journal knows are read (to
        hash them); any error means work to do, reported by whoever does it."""
        from imgedit.imageio.read import read_file_bytes

        if self.journal is None or self.journal.get(work.dst) is None and not self.options.retry_failed:
            return False
        try:
            if self._done_unread(work):
                return True
            info = _stat(work.item.path)
            return self._skip(work, read_file_bytes(work.item.path), info=info)
        except Exception:
            return False

    def _done_unread(self, work: _Work) -> bool:
        """Skip ``work`` as done without reading its input (see
        :func:`done_unread`): a rerun over a folder of done photos then
        reads none of them. Anything less sure reads the file."""
        options = self.options
        if self.journal is None or options.force or options.retry_failed or options.in_place:
            return False
        done = done_unread(self.journal, self.keys, work.item, work.dst, self.real)
        if done is None:
            return False
        work.key, work.source = done
        self._record_done_if_killed(work)
        work.result.status, work.result.note = "skipped", "done in an earlier run"
        return True

    def _check_frames(self, work: _Work) -> None:
        """Only a multi-frame file's first frame is read: say so, and refuse
        to write it back over the file, before any work is spent on it."""
        frames, previews = work.picture.frames, work.picture.previews
        if previews:  # a camera's JPEG with its preview(s), as many are: said once a run
            with self._lock:
                said, self._previews_said = self._previews_said, True
            if not said:
                log.warning("%s holds its camera's preview%s besides the photo, as many cameras' JPEGs do (MPO): "
                            "the photo is edited and the preview%s not kept", work.item.path, "s" * (previews > 1),
                            "s are" if previews > 1 else " is")
        if frames > 1:
            what = f"{work.item.path} has {frames} {'pages' if work.picture.format == 'TIFF' else 'frames'}"
            if self.options.in_place:  # writing it back would destroy every frame after the first
                raise ImgeditError(f"{what}; only the first is edited, so --in-place would destroy the others; use -o")
            log.warning("%s; only the first is edited", what)

    def _skip(self, work: _Work, data: bytes, reread: bool = True, info: Optional[os.stat_result] = None) -> bool:
        options, journal = self.options, self.journal
        if journal is not None:
            if options.in_place and reread and journal.written_since_read(work.item.path):
                journal.reread()  # a photo edited since the journal was read: maybe by another run, now its result
            digest = bytes_digest(data)
            source = Source.of_file(self.real(work.item.path), digest, stat_key(info) if info is not None else None)
            keys = self.keys.matching(work.item, digest)
            work.key, work.source = keys[0], source
            entry = journal.get(work.dst)
            if options.retry_failed and (entry is None or entry.status != "failed"):
                work.result.status, work.result.note = "skipped", "not a previous failure"
                return True
            if self._failed_before(work, entry, keys):
                return True
            if not options.force and holds_done(journal, work.dst, keys, options.in_place):
                self._record_done_if_killed(work)
                work.result.status, work.result.note = "skipped", "done in an earlier run"
                return True
            earlier = journal.holds_earlier_edit(work.dst, digest) if options.in_place and not options.force else None
            if earlier is not None:  # another recipe's edit: editing it again would stack the two
                by = f" ({earlier})" if earlier else ""
                work.result.status = "skipped"
                work.result.note = f"holds an earlier in-place edit{by} made with other settings; --force edits it again"
                log.warning("%s: %s", work.item.path, work.result.note)
                return True
        ours = journal is not None and journal.owns(work.dst, self.pipeline.label, work.source)
        work.dst_free = not os.path.lexists(work.dst)  # a dangling link is there too: the link would refuse it
        if not work.dst_free and not (options.overwrite or options.in_place or ours):
            if journal is not None and reread and journal.written_since_read(work.dst):  # by another run, maybe
                journal.reread()
                return self._skip(work, data, reread=False, info=info)
            raise self._exists_error(work)
        return False

    def _failed_before(self, work: _Work, entry: Any, keys: list[str]) -> bool:
        """With ``--skip-failed``: skip ``work`` where its record says it failed
        for the file's own content, with a key it has now (``keys``: unchanged since)."""
        if not (self.options.skip_failed and entry is not None and entry.bad_file and entry.key in keys):
            return False
        work.result.earlier_error = entry.error or "no reason recorded"
        work.result.status, work.result.note = "skipped", f"{FAILED_BEFORE}: {work.result.earlier_error}"
        return True

    def _skip_empty(self, work: _Work) -> bool:
        """An empty input, keyed by the bytes it holds (none), so that its
        failure ("is empty") is recorded with its key and, with
        ``--skip-failed``, known again."""
        if self.journal is None:
            return False
        keys = self.keys.matching(work.item, bytes_digest(b""))
        work.key = keys[0]
        return self._failed_before(work, self.journal.get(work.dst), keys)

    def _exists_error(self, work: _Work) -> OutputExistsError:
        """Why ``work``'s output, there already, is not this run's to replace."""
        journal, ops = self.journal, self.pipeline.label
        other = journal.owner(work.dst) if journal is not None else None
        if other is None:
            return OutputExistsError(f"{work.dst} exists; pass --overwrite to replace it")
        if other not in ("", ops):
            return OutputExistsError(f"{work.dst} holds an earlier run's {other} result; pass --overwrite to replace "
                                     f"it with this run's {ops} result, or give another -o")
        source = journal.source_of(work.dst)
        made_from = f", {source.path}" if source is not None else ""
        return OutputExistsError(f"{work.dst} holds the result of another input{made_from}; pass --overwrite to "
                                 f"replace it with {work.item.path}'s, or give another -o")

    def _record_done_if_killed(self, work: _Work) -> None:
        """The run that wrote ``work``'s output was killed between the rename
        and its "done" line: say it is done now, for the runs after this one."""
        entry = self.journal.get(work.dst)
        if entry.status != "start":
            return
        source = self.journal.source_of(work.dst)
        self.journal.record(work.dst, entry.key, "done", size=os.stat(work.dst).st_size, ops=self.pipeline.label,
                            **(source.fields() if source else {}),
                            **({"result_key": entry.result_key} if entry.result_key else {}),
                            **({"result_sha256": entry.result_sha256} if entry.result_sha256 else {}))

    def compute(self, work: _Work) -> _Work:
        """Runs in the calling thread: the pipeline itself, nothing else."""
        if work.image is not None:
            with _catch(work):
                try:
                    built = self.built
                except Exception:
                    work.result.unbuildable = True
                    raise
                work.image = built.apply(work.image, work.mask, tile=self.options.tile, on_tile=self.on_tile,
                                         notes=work.result.details)
        return work

    def _result_picture(self, work: _Work) -> Any:
        """The picture to write: the source's, with the result's pixels."""
        import numpy as np

        from imgedit.imageio.picture import fit_plane
        from imgedit.tensor import to_numpy

        result = work.picture.with_rgb(to_numpy(work.image))
        (height, width), (out_height, out_width) = work.size, result.rgb.shape[:2]
        if out_height == height and out_width > width and out_width % width == 0:
            work.result.panels = out_width // width
        if work.hole is not None and work.result.note == TRANSPARENCY and result.alpha is not None:
            # the filled hole must be visible, in every panel of a side-by-side sheet (--samples K)
            hole = fit_plane(work.hole.astype(np.float32), result.alpha.shape) > 0.5
            result.alpha = opaque_over_filled_hole(result.alpha, hole)
        return result

    def _written(self, work: _Work) -> dict[str, str]:
        """What "start" and "done" say of the output besides its key: the
        input it is made from and, for ``--in-place``, the key of the result
        itself, which a rerun finds over the input and knows to be done."""
        return {**(work.source.fields() if work.source else {}),
                **({"result_key": work.result_key, "result_sha256": work.result_digest} if work.result_key else {})}

    def _record_start(self, work: _Work, temporary: Path) -> None:
        """The "start" line, written when the result is complete in its
        temporary file and about to be renamed into place (see
        :func:`imgedit.atomic.before_rename`)."""
        if self.options.in_place:
            work.result_digest = file_digest(temporary)
            work.result_key = self.keys.of(work.item, work.result_digest)
        work.start_time = self.journal.record(work.dst, work.key, "start", replacing=work.dst.exists(),
                                              size=os.path.getsize(temporary), ops=self.pipeline.label,
                                              **self._written(work))

    def _write(self, work: _Work, picture: Any) -> None:
        """Write the result atomically, journalled: "start" just before the
        rename, "done" after it. An output that was not there when the input
        was read is created only if still absent (see :meth:`_check_before_rename`):
        another run finishing the same instant keeps its file, and this
        run's "start" is withdrawn."""
        from imgedit.atomic import before_rename
        from imgedit.imageio import write_image

        options = self.options
        self._say_what_the_format_drops(work, picture)
        stopped: list[ImgeditError] = []  # raised before the rename: write_image would wrap it as a failure to encode
        only_if_absent = work.dst_free and not (options.overwrite or options.in_place)

        def before(temporary: Path) -> None:
            try:
                self._check_before_rename(work)
                if self.journal is not None:
                    self._record_start(work, temporary)
            except ImgeditError as exc:
                stopped.append(exc)
                raise

        try:
            with before_rename(before):
                write_image(picture, work.dst, format=options.format, quality=options.quality,
                            overwrite=not only_if_absent, durable=options.fsync, source_mode=work.read_mode)
        except OutputExistsError:
            if not only_if_absent:
                raise
            if work.start_time is not None:  # its "start" was recorded
                self.journal.record(work.dst, work.key, WITHDRAWN, start_time=work.start_time)
            raise self._overtaken_error(work) from None
        except ImgeditError:
            if stopped:
                raise stopped[0] from None
            raise
        if self.journal is None:
            return
        self.journal.record(work.dst, work.key, "done", size=os.stat(work.dst).st_size, ops=self.pipeline.label,
                            **self._written(work))

    def _say_what_the_format_drops(self, work: _Work, picture: Any) -> None:
        """A warning, once a run for each, where the output format drops what
        the image holds: the depth of a 16-bit one (JPEG, WebP), the
        transparency of one with transparent pixels (JPEG, BMP)."""
        from imgedit.imageio.formats import ALPHA_FORMATS, HIGH_DEPTH_FORMATS, format_for_path, normalize_format

        try:
            fmt = normalize_format(self.options.format) if self.options.format else format_for_path(work.dst)
        except ImgeditError:
            return  # the write says why
        drops = []
        if picture.bit_depth > 8 and fmt not in HIGH_DEPTH_FORMATS:
            drops.append(("depth", f"{fmt} holds 8 bits a channel: 16-bit images are written at 8 (e.g. "
                                   f"{work.item.path}); --format png or tiff keeps their depth"))
        if picture.alpha is not None and fmt not in ALPHA_FORMATS and bool((picture.alpha < 1).any()):
            drops.append(("alpha", f"{fmt} has no transparency: transparent images are written opaque, with the "
                                   f"colours under their transparent parts showing (e.g. {work.item.path}); "
                                   "--format png or webp keeps it"))
        for kind, message in drops:
            with self._lock:
                said = kind in self._drops_said
                self._drops_said.add(kind)
            if not said:
                log.warning("%s", message)

    def _check_before_rename(self, work: _Work) -> None:
        """Just before the result is renamed into place, what another program
        or run may have done meanwhile. With ``--in-place`` the input must
        still be the file that was read: one replaced meanwhile (a sync
        client, a second run) would be lost under an edit of its old
        content, and the journal would call it done. An output that was not
        there when the input was read, and is now (another run's, say
        ``xargs -P`` over two folders' ``x.png``), is not replaced without
        ``--overwrite``."""
        options = self.options
        if options.in_place and work.read_stat is not None:
            now = _stat(work.item.path)
            if now is None or stat_key(now) != work.read_stat:
                work.overtaken = True
                raise ImgeditError(f"{work.item.path} changed while it was being edited, so it was left as it is; "
                                   "run the same command again to edit the new version")
        if work.dst_free and not (options.overwrite or options.in_place) and os.path.lexists(work.dst):
            raise self._overtaken_error(work)

    def _overtaken_error(self, work: _Work) -> OutputExistsError:
        """Why ``work``'s output, absent when its input was read, is not
        replaced now: another run wrote it meanwhile."""
        work.overtaken = True
        return OutputExistsError(f"{work.dst} was written by another run while this one made it from "
                                 f"{work.item.path}; pass --overwrite to replace it, or give another -o")

    def _done_meanwhile(self, work: _Work) -> bool:
        """Whether the run that overtook ``work`` (see :meth:`_check_before_rename`)
        made its very result: the same input with this recipe, recorded in the
        journal as done (into ``-o``) or as the result the photo now is (in place)."""
        if self.journal is None or not work.key:
            return False
        self.journal.reread()
        if self.journal.is_done(work.dst, work.key):
            return True
        with suppress(OSError):
            return self.options.in_place and self.journal.holds_result(work.dst,
                                                                       self.keys.of(work.item, file_digest(work.dst)))
        return False

    def encode(self, work: _Work) -> _Work:
        """Runs in an I/O thread: atomic write, then the journal."""
        if work.image is not None:
            with _catch(work):
                self._write(work, self._result_picture(work))
        work.picture = work.hole = work.image = work.mask = None  # free the pixels now
        if work.overtaken and self._done_meanwhile(work):  # two runs at once on one photo: one edit, no failure
            work.result.status, work.result.error, work.result.exit_code = "skipped", None, 0
            work.result.note = "done meanwhile by another run"
        if work.result.status == "failed" and self.journal is not None and work.key and not self._others(work) \
                and not work.overtaken and not work.result.unbuildable:  # not this image's failure: the other
            # run's record stands (its next run would redo it); nor a model's that would not load
            self.journal.record(work.dst, work.key, "failed", error=work.result.error,
                                **({"bad_file": True} if work.result.bad_file else {}))
        return work


    def _others(self, work: _Work) -> bool:
        """Whether ``work`` was refused for an output another input's (or
        another pipeline's) result holds: its failure is not recorded over
        that result's record, or the owner's next run would redo it."""
        if not work.result.needs_overwrite:
            return False
        entry = self.journal.get(work.dst) if self.journal is not None else None
        return entry is not None and entry.status in WROTE


def _check_in_place_target(item: InputFile) -> None:
    """Refuse to edit in place what a rename over it would not edit as the
    user means: a link (the link would become the edited file and its
    target stay as it was), a file a scan reached through a link to a
    folder (a downloaded folder's ``gallery -> ~/Pictures`` would have the
    photos there rewritten: in place edits only the tree that was named;
    a Windows junction is such a link), or a file nobody may write (a
    photographer's way to keep originals safe).

    Raises:
        ImgeditError: ``item`` is a symbolic link, lies behind one (or a
            junction) below its root, or is read-only.
    """
    path = item.path
    if is_link(path):
        raise ImgeditError(f"{path} is a symbolic link: --in-place would replace the link with the edited image and "
                           f"leave {os.path.realpath(path)} as it was; name that file, or use -o")
    folder = item.root
    for part in item.relative.parts[:-1]:
        folder = folder / part
        if is_link(folder):
            raise ImgeditError(f"{path} lies behind the link {folder}, outside the folder named: --in-place edits "
                               "only files inside it; name the folder the link leads to, or use -o")
    # no write permission for anyone: made read-only on purpose (a colleague's 0644 photo in a folder the
    # group shares is theirs to protect, not this check's; os.access would refuse it)
    if not os.stat(path).st_mode & 0o222:
        allow = "clear its Read-only attribute" if sys.platform == "win32" else "chmod u+w"
        raise ImgeditError(f"{path} is read-only, so --in-place leaves it as it is ({allow} to allow, or use -o)")


class _catch:
    """Record an error on the work item instead of raising it."""

    def __init__(self, work: _Work):
        self.work = work

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Optional[BaseException], tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, RunStopped):
            return False  # KeyboardInterrupt and friends pass through; a journal error or a full disk ends the run
        result, path = self.work.result, str(self.work.item.path)
        result.exit_code = 1
        if isinstance(exc, ImgeditError):
            log.debug("error on %s", path, exc_info=True)  # --debug: down to a plugin's own frame, via __cause__
            message = str(exc)
            result.exit_code = exc.exit_code
            result.needs_overwrite = isinstance(exc, OutputExistsError)
            result.bad_file = isinstance(exc, ImageReadError) and not isinstance(exc, ImageNotReadHereError)
        elif isinstance(exc, MemoryError):  # numpy's "Unable to allocate 91.6 MiB ...": the machine, not the image
            from imgedit.imageio.source import one_line

            log.debug("out of memory on %s", path, exc_info=True)
            message = (f"not enough memory for this image ({one_line(exc) or 'MemoryError'}); free some, or run "
                       "it alone: images are read ahead while others are computed")
        elif isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG and (long := name_too_long(self.work.dst)):
            message = f"output {long}: a shorter --name fits it"  # a long input's name and the verb's suffix
        elif isinstance(exc, OSError) and exc.strerror:  # the OS refused a read or a write: say what, plainly
            log.debug("OS error on %s", path, exc_info=True)
            message = f"{exc.filename or self.work.dst}: {exc.strerror.lower()}"
        else:  # one bad file must not end a batch of thousands
            log.debug("unexpected error on %s", path, exc_info=True)
            message = f"unexpected {type(exc).__name__}: {exc}"
        result.status, result.error = "failed", message if path in message else f"{path}: {message}"
        self.work.picture = self.work.hole = self.work.image = self.work.mask = None
        return True


def _bounded_map(pool: ThreadPoolExecutor, fn: Callable[[_Work], _Work], works: list[_Work],
                 depth: Union[int, Callable[[], int]]) -> Iterator[_Work]:
    """``map`` over a pool with at most ``depth`` items in flight, in order.
    A callable ``depth`` is asked again as each item ends, and the first item
    goes alone: how far to read ahead may depend on what it reads (a batch
    of 96 MP photos, see :meth:`_Batch.read_ahead`)."""
    limit = depth if callable(depth) else (lambda: depth)
    pending: deque[Future] = deque()
    upcoming = iter(works)
    first = next(upcoming, None)
    if first is not None:
        pending.append(pool.submit(fn, first))
    while pending:
        done = pending.popleft().result()
        while len(pending) < max(1, limit()):
            following = next(upcoming, None)
            if following is None:
                break
            pending.append(pool.submit(fn, following))
        yield done


def run_works(batch: _Batch, works: list[_Work], finish: Callable[[FileResult], None]) -> None:
    """Decode, compute and encode ``works``, calling ``finish`` with each
    result in order; with ``fail_fast``, stop after the first failure.

    However it ends (Ctrl-C included), the writes in flight finish first:
    every output is complete or absent.
    """
    workers = max(1, batch.options.workers)
    writes: deque[Future] = deque()
    failed = False

    def drain_one() -> None:
        nonlocal failed
        result = writes[0].result().result  # taken off the queue once it is in hand: see the finally below
        writes.popleft()
        failed = failed or result.status == "failed"
        finish(result)

    readers, writers = ThreadPoolExecutor(workers, "imgedit-read"), ThreadPoolExecutor(workers, "imgedit-write")
    try:
        for work in _bounded_map(readers, batch.decode, works, batch.read_ahead):
            writes.append(writers.submit(batch.encode, batch.compute(work)))
            # a failed read or compute is known here, before any later image is computed
            failed = failed or work.result.status == "failed"
            while writes and (len(writes) > batch.read_ahead() or writes[0].done()):
                drain_one()
            if batch.options.fail_fast and failed or batch.build_failed:
                break
    finally:
        # A second Ctrl-C cannot cut these short: the threads are joined at
        # exit all the same. So it is let pass, and the writes that end are
        # counted (it said "interrupted after 0 images" of a photo written).
        _uninterrupted(lambda: readers.shutdown(wait=True, cancel_futures=True))
        stopped: Optional[BaseException] = None
        while writes:
            try:
                _uninterrupted(drain_one)
            except BaseException as exc:  # noqa: BLE001 - the journal or the disk stopped the run, or finish()
                # raised (an API caller's progress): the other writes in flight still end, and then it is raised
                if writes and writes[0].done() and writes[0].exception() is exc:  # that write's, not finish()'s
                    writes.popleft()
                if stopped is None or isinstance(exc, RunStopped) and not isinstance(stopped, RunStopped):
                    stopped = exc  # the journal's or the disk's says more of the run than a caller's error
        _uninterrupted(lambda: writers.shutdown(wait=True))
        if stopped is not None:
            raise stopped


def _uninterrupted(step: Callable[[], None]) -> None:
    """Run ``step`` to its end, again after each Ctrl-C that breaks into it."""
    while True:
        try:
            step()
            return
        except KeyboardInterrupt:
            log.warning("finishing the writes in flight: every output is complete or absent")


def open_journal(items: list[InputFile], options: RunOptions,
                 journals: Optional[JournalsRead] = None) -> Optional[Journal]:
    """The run's journal, held until :meth:`Journal.release`, with the
    shards a Ray run left folded in (unless another run writes there); the
    one planning read, where it read the run's folder (``journals``)."""
    folder = journal_folder(items, options)
    if folder is None:
        return None
    try:  # a folder we cannot write to fails the run in one line, before any image is read
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ImgeditError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    journal = journals.take(folder) if journals is not None else None
    try:  # the journal or its lock another user made, which this one cannot write: named, before any image
        if journal is None:
            journal = Journal(folder)
        else:
            journal.reread()  # what was appended since planning read it
        if journal.path.exists() and not os.access(journal.path, os.W_OK):  # else the first image's record fails
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(journal.path))
        alone = journal.hold()  # until the run ends; folds in shards first if no other run writes here
    except OSError as exc:
        raise ImgeditError(f"cannot write to {exc.filename or folder}: {exc.strerror or exc}") from None
    if not alone:  # safe, but both may compute the same images: a cron job wants to know (flock -n)
        log.warning("another imgedit run is writing into %s too: each skips the images the other has finished, "
                    "and both may work on the same ones meanwhile", folder)
    return journal


def run_files(
    pipeline: Pipeline,
    items: list[InputFile],
    options: RunOptions,
    on_result: Optional[Callable[[FileResult], None]] = None,
    built: Optional[BuiltPipeline] = None,
    on_tile: Optional[Callable[[str, int, int], None]] = None,
    journals: Optional[JournalsRead] = None,
) -> Summary:
    """Process ``items``; failures are recorded in the summary, never raised.
    ``on_tile(stage, done, total)`` hears of each tile of a tiled stage (see
    :meth:`BuiltPipeline.apply`). ``journals``: those
    :func:`~imgedit.output_plan.leave_out_own_outputs` read, to take up the
    run's own from there rather than read it again.

    Ctrl-C stops reading new images, lets the writes in flight finish, saves
    the journal and returns a summary marked ``interrupted``.
    """
    start = time.perf_counter()
    outputs = plan_outputs(pipeline, items, options)
    remove_stale_temps(outputs, journal_folder(items, options))
    journal = open_journal(items, options, journals)
    batch = _Batch(pipeline, options, journal, built, on_tile)
    summary = Summary(journal=journal.path if journal else None, planned=len(items))

    def finish(result: FileResult) -> None:
        summary.results.append(result)
        if on_result is not None:
            on_result(result)

    try:
        run_works(batch, [_Work(item, dst) for item, dst in zip(items, outputs)], finish)
    except KeyboardInterrupt:
        summary.interrupted = True
    except RunStopped as exc:  # the journal or the disk: what the run did is still worth saying (--json)
        if isinstance(exc, DiskFullError):
            exc = DiskFullError(f"{exc}; stopped there: free some space and run the same command again (what is "
                                "done is skipped)")
        summary.error = str(exc)
        exc.summary = summary  # type: ignore[attr-defined]
        raise exc from None
    finally:
        if journal is not None:
            journal.release()
    summary.unbuildable, summary.build_error = batch.build_failed, batch.build_error
    summary.seconds = time.perf_counter() - start
    return summary


def done_unread(journal: Journal, keys: JournalKeys, item: InputFile, dst: Path,
                real: RealPaths) -> Optional[tuple[str, Source]]:
    """(key, source) of ``item``, where the journal holds this recipe's
    result at ``dst`` and knows the input's digest, the file being unchanged
    since (:meth:`Journal.unread_digest`): the run and ``--dry-run`` skip it
    without reading it. None where the file must be read to tell."""
    info = _stat(item.path)
    if info is None:
        return None
    path = real(item.path)
    digest = journal.unread_digest(dst, path, info)
    if digest is None:
        return None
    matching = keys.matching(item, digest)
    return (matching[0], Source.of_file(path, digest, stat_key(info))) if holds_done(journal, dst, matching, False) else None


def _stat(path: Path) -> Optional[os.stat_result]:
    """``path``'s stat, or None: the read that follows says what is wrong."""
    try:
        return os.stat(path)
    except OSError:
        return None


def default_workers() -> int:
    """I/O threads: enough to keep one compute thread fed."""
    return max(2, min(8, usable_cpus()))
