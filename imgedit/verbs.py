"""Building blocks for image verbs: the common options every image verb
takes, the mask options, and a ready-made verb for an operation name whose
``--method`` choices and parameter options come from the registry (so a
learned method registered later by another plugin appears in the same verb);
the shared ``train``/``eval`` groups and the options every ``train`` verb takes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import click

from imgedit.atomic import name_too_long
from imgedit.errors import BatchError, ImgeditError, Interrupted, UsageError
from imgedit.latents import MAX_SEED
from imgedit.masks import MAX_DILATE
from imgedit.operations import Param

__all__ = [
    "COMMON_OPTIONS",
    "COUNT",
    "CheckedPath",
    "FiniteFloat",
    "MASK_OPTIONS",
    "MAX_BATCH",
    "MAX_COUNT",
    "MAX_LR",
    "MAX_NPROC",
    "MAX_SIDE",
    "MAX_THREADS",
    "Progress",
    "SEED",
    "SHARED_VERB_HELP",
    "StageProgress",
    "THREADS",
    "TileProgress",
    "add_operation_verb",
    "apply_options",
    "check_overwrite",
    "check_record",
    "check_sheet",
    "command_group",
    "command_line",
    "device_option",
    "duration",
    "echo_report",
    "format_commands",
    "mask_options_from",
    "pace",
    "precision_option",
    "printable",
    "run_command",
    "run_verb",
    "seed_option",
    "sheet_option",
    "side",
    "sigterm_as_interrupt",
    "threads_option",
    "training_options",
    "typed_option",
    "whole_image_options",
]

log = logging.getLogger("imgedit")


class FiniteFloat(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and infinity: NaN passes
    every range check (a NaN truncation drew all-black samples)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


# Upper bounds of the whole-number options, checked by click (a usage error,
# exit 2): a number past a C long otherwise reaches torch, numpy or OpenCV
# as an overflow error or a page of C++ stack frames.
MAX_THREADS = 1024  # a thread per core of the largest machines; more only take turns
MAX_NPROC = os.cpu_count() or 1  # each process is a whole trainer: past one per core they only take turns
MAX_BATCH = 4096  # images in one global batch: far past what these small networks gain from, or one step holds
MAX_SIDE = 8192  # px on a side: an image of 8192 x 8192 is 67 MP, held at once as floats
MAX_COUNT = 10**9  # images, pairs or steps: more than a folder holds or years of training
MAX_LR = 1.0  # learning rate: past it Adam's steps dwarf any weight here (a run that diverges below it is stopped)

SEED = click.IntRange(0, MAX_SEED)  # what every generator here draws distinctly from (imgedit.latents.MAX_SEED)
THREADS = click.IntRange(1, MAX_THREADS)
COUNT = click.IntRange(1, MAX_COUNT)


def side(minimum: int) -> click.IntRange:
    """An image side or patch size in px, from ``minimum`` to :data:`MAX_SIDE`."""
    return click.IntRange(minimum, MAX_SIDE)


def threads_option(help: str = "CPU threads.") -> Callable:
    """``--threads N``, N from 1 to :data:`MAX_THREADS`."""
    return click.option("--threads", type=THREADS, help=help)


def seed_option(default: Optional[int] = 0, help: Optional[str] = None, flag: str = "--seed") -> Callable:
    """A seed option (``--seed``), from 0 to :data:`MAX_SEED` (2**32 - 1)."""
    return click.option(flag, type=SEED, default=default, show_default=default is not None, help=help)


class CheckedPath(click.Path):
    """``click.Path`` that refuses an empty path, which would silently mean
    the current folder (an output written there, a mask folder read from
    there), and (``check_names``) a name longer than a file system holds,
    whose first stat would fail as an unexpected error."""

    def __init__(self, check_names: bool = True) -> None:
        super().__init__(path_type=Path)
        self.check_names = check_names

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, Path) and os.fspath(value) == "":
            self.fail("the path is empty; give a file or folder (. for the current one)", param, ctx)
        problem = name_too_long(value) if self.check_names else None
        if problem is not None:
            self.fail(problem, param, ctx)
        return super().convert(value, param, ctx)


def _tile(value: Optional[str]) -> Any:
    if value is None or value == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter("must be a number of pixels, 0 (no tiling) or 'auto'", param_hint="'--tile'") from None
    if number < 0:
        raise click.BadParameter("must be >= 0", param_hint="'--tile'")
    return number or None


COMMON_OPTIONS: list[Callable] = [
    click.argument("inputs", nargs=-1, required=True),
    click.option("-o", "--output", type=CheckedPath(), help="Output file (one input) or folder."),
    click.option("-r", "--recursive", is_flag=True, help="Recurse into sub-folders."),
    click.option("--name", "name_template", help="Output name template, e.g. '{stem}.{op}.{ext}'."),
    click.option("--device", envvar="IMGEDIT_DEVICE", help="auto, cpu, cuda, cuda:N or mps (default: IMGEDIT_DEVICE, else auto)."),
    click.option(
        "--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True,
        help="auto: fp16/bf16 on a GPU where the operation allows it, fp32 on the CPU; bf16 on a CPU with "
             "AVX512-BF16/AMX runs the learned denoiser and inpainter about twice as fast.",
    ),
    click.option("--tile", default="auto", show_default=True, help="Tile size in px, 0 for none, or auto."),
    threads_option("CPU threads for computation."),
    click.option("--overwrite", is_flag=True, help="Replace existing output files."),
    click.option("--in-place", is_flag=True, help="Write over the input files."),
    click.option("--format", "out_format", type=click.Choice(["jpeg", "png", "tiff", "webp", "bmp"], case_sensitive=False),
                 help="Output format (default: the input's; with -o FILE, the file's extension)."),
    click.option("--quality", type=click.IntRange(1, 100),
                 help="JPEG/WebP quality 1-100 (default: as the source where it is the output's format: a lossless "
                      "WebP stays lossless, a JPEG keeps its quality, 75-95, and chroma subsampling; else 95)."),
    click.option("--fail-fast", is_flag=True, help="Stop at the first failing image."),
    click.option("--workers", type=THREADS, help="I/O threads for reading and writing (default: CPU count, 2-8)."),
    click.option("--force", is_flag=True, help="Redo images the journal says are done."),
    click.option("--retry-failed", is_flag=True, help="Redo only the images that failed last time."),
    click.option("--fsync", is_flag=True, help="Flush every output to disk before moving on (survives a power cut; slower)."),
    click.option("--dry-run", is_flag=True, help="Print the plan and exit without touching an image."),
    click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                 help="Run here, or on a Ray cluster (pip install 'ray[data]>=2.9')."),
    click.option("--ray-address", envvar="IMGEDIT_RAY_ADDRESS",
                 help="Ray cluster to join with --engine ray (default: IMGEDIT_RAY_ADDRESS, else RAY_ADDRESS, else a local Ray)."),
    click.option("-q", "--quiet", is_flag=True, help="Print only errors."),
    click.option("--json", "as_json", is_flag=True, help="Print a JSON summary."),
]

def device_option() -> Callable:
    """``--device`` for the verbs that are not image verbs (sample,
    interpolate, train, eval): ``IMGEDIT_DEVICE`` applies to them too."""
    return click.option("--device", envvar="IMGEDIT_DEVICE", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default: IMGEDIT_DEVICE, else auto).")


MASK_OPTIONS: list[Callable] = [
    click.option("--mask", type=CheckedPath(), help="Mask file (white = hole) or folder of masks by stem."),
    click.option("--mask-color", help="Hole painted in this colour, e.g. ff00ff."),
    click.option("--color-tolerance", type=click.IntRange(0, 255), default=24, show_default=True,
                 help="How far (0-255, per channel) a pixel may be from --mask-color and still be hole."),
    click.option("--mask-box", help="Hole as a box x,y,w,h."),
    click.option("--dilate", type=click.IntRange(0, MAX_DILATE), default=0, help="Grow the hole by N px."),
    click.option("--invert-mask", is_flag=True, help="Swap hole and kept pixels."),
]


def apply_options(options: list[Callable]) -> Callable:
    """Decorator applying click options in the order they are listed."""

    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def mask_options_from(kwargs: dict[str, Any]):
    """Pop the mask options out of a verb's kwargs into a MaskOptions."""
    from imgedit.masks import MaskOptions, parse_box

    box = kwargs.pop("mask_box", None)
    return MaskOptions(
        mask=kwargs.pop("mask", None),
        mask_color=kwargs.pop("mask_color", None),
        color_tolerance=kwargs.pop("color_tolerance", 24),
        mask_box=parse_box(box) if box else None,
        dilate=kwargs.pop("dilate", 0),
        invert=kwargs.pop("invert_mask", False),
    ).checked()


def run_verb(pipeline: Any, kwargs: dict[str, Any]) -> None:
    """Run ``pipeline`` over the verb's inputs with the common options in
    ``kwargs`` (as produced by :data:`COMMON_OPTIONS`, plus mask options).
    SIGTERM (a scheduler, ``kill``) stops it as Ctrl-C does: the writes in
    flight end, the summary is said, and it exits 143."""
    with sigterm_as_interrupt("every output written so far is complete; run the same command again to resume"):
        _run_verb(pipeline, kwargs)


def _run_verb(pipeline: Any, kwargs: dict[str, Any]) -> None:
    from imgedit.process_tuning import tune_for_batch
    from imgedit.runner import (RunOptions, check_options, default_workers, ignored_options, leave_out_own_outputs,
                                run_files)

    tune_for_batch()  # before anything imports torch
    from imgedit.devices import set_threads
    from imgedit.inputs import scan_inputs

    if kwargs["quiet"]:
        logging.getLogger("imgedit").setLevel(logging.ERROR)  # "print only errors": no warnings either
    masks = mask_options_from(kwargs)
    scan = scan_inputs(kwargs["inputs"], recursive=kwargs["recursive"])
    items = scan.files
    set_threads(kwargs.get("threads"))
    options = RunOptions(
        output=kwargs["output"],
        name=kwargs["name_template"],
        device=kwargs["device"],
        precision=kwargs["precision"],
        tile=_tile(kwargs["tile"]),
        overwrite=kwargs["overwrite"],
        in_place=kwargs["in_place"],
        format=kwargs["out_format"],
        quality=kwargs["quality"],
        masks=masks,
        fail_fast=kwargs["fail_fast"],
        workers=kwargs["workers"] or default_workers(),
        force=kwargs["force"],
        retry_failed=kwargs["retry_failed"],
        fsync=kwargs["fsync"],
    )
    check_options(options, len(items))
    if typed_option("tile") and options.tile and not kwargs["quiet"]:
        _say_untiled(pipeline, options.tile)
    if kwargs.get("ray_address") and kwargs.get("engine") != "ray" and typed_option("ray_address"):  # not the env var
        raise UsageError("--ray-address joins a Ray cluster: it needs --engine ray")
    named = frozenset(Path(i) for i in kwargs["inputs"] if Path(i).is_file())
    items, own = leave_out_own_outputs(pipeline, items, options, named)
    if own and not (kwargs["quiet"] or kwargs["as_json"]):
        click.echo(f"left out {len(own)} image{'s' * (len(own) > 1)} named as this run's own outputs "
                   f"(e.g. {own[0].path}): they are results, not inputs", err=True)
    for note in ignored_options(pipeline, items, options) + _ignored_mask_options(pipeline, masks):
        log.warning(note)
    if kwargs.get("engine") == "ray" and typed_option("threads"):
        log.warning("ignoring --threads: with --engine ray each actor computes on one thread (one actor per CPU)")
    if pipeline.needs_mask:
        _check_mask_source(pipeline, items, masks)
    if kwargs["dry_run"]:
        _print_plan(pipeline, items, options, kwargs["as_json"])
        return
    quiet = kwargs["quiet"] or kwargs["as_json"]
    try:
        with Progress(len(items), quiet) as report:
            if kwargs.get("engine") == "ray":
                from imgedit.ray_engine import run_files_ray

                summary = run_files_ray(pipeline, items, options, on_result=report, address=kwargs.get("ray_address"))
            else:
                summary = run_files(pipeline, items, options, on_result=report,
                                    on_tile=TileProgress(quiet) if len(items) == 1 else None)
    except ImgeditError as exc:
        if kwargs["as_json"]:  # a script reading stdout gets an answer, not nothing
            _print_run_error(exc, scan.unreadable, planned=len(items))
        raise
    summary.unreadable, summary.planned = scan.unreadable, len(items)
    _print_summary(summary, kwargs["quiet"], kwargs["as_json"], planned=len(items))


#: The mask options' parameter names and flags, in MASK_OPTIONS' order.
_MASK_FLAGS = {"mask": "--mask", "mask_color": "--mask-color", "color_tolerance": "--color-tolerance",
               "mask_box": "--mask-box", "dilate": "--dilate", "invert_mask": "--invert-mask"}


def _ignored_mask_options(pipeline: Any, masks: Any) -> list[str]:
    """A line for the mask options typed that this run would not use: all
    of them where no stage takes a mask, ``--color-tolerance`` without
    ``--mask-color`` (see :func:`imgedit.runner.ignored_options`)."""
    if not pipeline.needs_mask:
        typed = [flag for name, flag in _MASK_FLAGS.items() if typed_option(name)]
        return [f"ignoring {', '.join(typed)}: no stage of the pipeline uses a mask"] if typed else []
    if typed_option("color_tolerance") and masks.mask_color is None:
        return ["ignoring --color-tolerance: it says how near --mask-color a pixel must be, and no --mask-color is given"]
    return []


def _print_run_error(exc: ImgeditError, unreadable: list, planned: int) -> None:
    """The ``--json`` summary of a run that an error stopped as a whole (a
    journal or an output folder that cannot be written): the error, and what
    was done before it where the runner says."""
    from imgedit.runner import Summary

    summary = getattr(exc, "summary", None) or Summary()
    summary.error, summary.unreadable, summary.planned = str(exc), unreadable, planned
    click.echo(json.dumps(summary.as_dict(), indent=2))


def typed_option(name: str) -> bool:
    """Whether the user typed option ``name`` (not its default or environment variable)."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def _say_untiled(pipeline: Any, tile: Any) -> None:
    """One line naming the stages a typed ``--tile`` does not apply to (they
    work on the whole image: a style's look depends on all of it), so that
    it is not taken for a memory limit it is not."""
    whole = [s.label for s in pipeline.stages if not s.operation.capabilities.tileable]
    if not whole:
        return
    tiled = [s.label for s in pipeline.stages if s.operation.capabilities.tileable]
    where = f"; it applies to {', '.join(tiled)}" if tiled else " and is ignored"
    _say(f"note: {', '.join(whole)} works on the whole image: --tile {tile} does not split it{where}")


def _check_mask_source(pipeline: Any, items: list, masks: Any) -> None:
    """A stage needs a mask: refuse before any work when no image can have one."""
    from imgedit.masks import sidecar_path

    if masks.any_explicit():
        return
    alpha_formats = {".png", ".webp", ".tif", ".tiff", ".gif"}
    if any(sidecar_path(i.path) or i.path.suffix.lower() in alpha_formats for i in items):
        return
    stage = next(i for i, s in enumerate(pipeline.stages, 1) if s.operation.capabilities.needs_mask)
    name = pipeline.stages[stage - 1].operation.name
    raise UsageError(
        f"stage {stage} ({name}) needs a mask and none of the inputs has one: "
        "give --mask FILE|DIR, --mask-color HEX or --mask-box x,y,w,h, or put a .mask.png beside each image"
    )


def _print_plan(pipeline: Any, items: list, options: Any, as_json: bool) -> None:
    from imgedit.dryrun import describe_plan

    plan = describe_plan(pipeline, items, options)
    if as_json:
        click.echo(json.dumps(plan, indent=2))
        return
    click.echo(f"{plan['inputs']} input{'' if plan['inputs'] == 1 else 's'} ({plan['already_done']} already done), first output {plan['first_output']}")
    for number, stage in enumerate(plan["stages"], 1):
        params = " ".join(f"{k}={v}" for k, v in stage["params"].items())
        click.echo(
            f"  stage {number}: {stage['operation']}.{stage['method']} {params} "
            f"[{stage['device']}, {stage['precision']}, tile {stage['tile']}]"
        )
    click.echo(
        f"journal: {plan['journal'] or 'none'}; workers {plan['workers']}, queue depth {plan['queue_depth']}; "
        f"largest image {plan['largest_image_mp']} MP; peak memory about {plan['peak_memory_estimate_mb']} MB"
    )


def _say(text: str, bar: Any = None) -> None:
    """A progress line on stderr, above ``bar`` if there is one. A line that
    cannot be written (stderr full or gone) is dropped: it must not end a
    batch that is writing its images fine."""
    text = printable(text)
    try:
        if bar is not None:
            bar.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)
    except OSError:
        pass


def printable(text: str) -> str:
    """``text`` with control characters (and undecodable bytes of a file name)
    escaped, as ``\\x1b`` or ``\\n``: a file's name must not send terminal
    escapes or fake a line of its own."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _rate_and_eta(count: int, total: int, seconds: float) -> tuple[float, float]:
    """Units per second so far, and the seconds the rest would take at that rate."""
    rate = count / max(seconds, 1e-9)
    return rate, (total - count) / max(rate, 1e-9)


def pace(rate: float, unit: str) -> str:
    """``rate`` as people read it: "2.5 img/s", or "12.3 s/img" below one a
    second, where "0.0/s" would say nothing (a slow model on large photos)."""
    if rate >= 1 or rate <= 0:
        return f"{rate:.1f} {unit}/s"
    return f"{1 / rate:.1f} s/{unit}"


def duration(seconds: float) -> str:
    """"45s", "12m05s", "3h20m": an ETA of hours is not read in seconds."""
    seconds = round(seconds)
    if seconds < 100:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Progress of a batch: a tqdm bar on a terminal, plain lines every few
    seconds otherwise, and nothing but errors when quiet."""

    interval = 10.0  # seconds between plain progress lines

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.bar = total, quiet, None
        self.count, self.started, self.last = 0, time.monotonic(), time.monotonic()

    def __enter__(self) -> Callable:
        if not self.quiet and self.total > 1 and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="img", file=sys.stderr)
        return self.report

    def report(self, result: Any) -> None:
        self.count += 1
        if result.error and self.total > 1:  # a single input's failure is the final error line
            _say(f"failed: {result.error}", self.bar)
        if self.bar is not None:
            self.bar.update(1)
        elif self.quiet:
            return
        elif self.total == 1 and not result.error:
            _say(f"{'skipped' if result.status == 'skipped' else 'wrote'} {result.output}{_result_note(result)}")
        elif time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            rate, eta = _rate_and_eta(self.count, self.total, self.last - self.started)
            _say(f"{self.count}/{self.total} images, {pace(rate, 'img')}, ETA {duration(eta)}")

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


class StageProgress:
    """Progress of one long stage of a verb (inverting, pacing, decoding,
    writing), as :class:`imgedit.verbs.Progress` shows a batch's: a tqdm bar
    on a terminal, a plain line every ``interval`` seconds otherwise,
    nothing when ``quiet`` (``-q``). Call it with the units just done.

        >>> with StageProgress(3000, "decoding", "frame", quiet=False) as advance:
        ...     advance(256)
    """

    interval = 10.0  # seconds between plain progress lines

    def __init__(self, total: int, what: str, unit: str, quiet: bool):
        self.total, self.what, self.unit, self.quiet = total, what, unit, quiet
        self.count, self.bar = 0, None
        self.started = self.last = time.monotonic()

    def __enter__(self) -> Callable[[int], None]:
        if not self.quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.what, unit=self.unit, file=sys.stderr, leave=False,
                            dynamic_ncols=True)
        return self.advance

    def advance(self, done: int = 1) -> None:
        self.count += done
        if self.bar is not None:
            self.bar.update(done)
        elif not self.quiet and time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            rate, eta = _rate_and_eta(self.count, self.total, self.last - self.started)
            percent = math.floor(100 * self.count / max(self.total, 1))
            _say(f"{self.what}: {self.count}/{self.total} {self.unit}s ({percent}%), {pace(rate, self.unit)}, "
                 f"ETA {duration(eta)}")

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


class TileProgress:
    """Progress through the tiles of a single large image (``on_tile`` of
    :func:`imgedit.runner.run_files`), one :class:`StageProgress` per
    tiled stage: a batch's progress counts images, and one 12-megapixel
    photo would otherwise run a minute without a word."""

    def __init__(self, quiet: bool):
        self.quiet, self.stage, self.progress = quiet, "", None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if total <= 1:  # run whole: nothing to count
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.progress = StageProgress(total, stage, "tile", self.quiet)
            self.progress.__enter__()
        self.progress.advance(1)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None


def _result_note(result: Any) -> str:
    """What a single result's line adds: why it was skipped, where its hole
    came from, what its stages said of it, how many results it holds."""
    if result.status == "skipped":
        return f" ({result.note})" if result.note else ""
    notes = ([f"hole from {result.note}"] if result.note else []) + list(result.details) + (
        [f"{result.panels} results side by side"] if result.panels > 1 else [])
    return f" ({', '.join(notes)})" if notes else ""


def _print_summary(summary: Any, quiet: bool, as_json: bool, planned: int) -> None:
    stopped = _unbuildable_error(summary)
    if as_json:
        if stopped is not None:  # the run stopped as a whole: its error, as for a journal that cannot be written
            summary.error = str(stopped)
        click.echo(json.dumps(summary.as_dict(), indent=2))
    failed, total = len(summary.failed), len(summary.results)
    if total > 1 and not quiet and not as_json:
        unread = len(summary.unreadable)
        _say(f"done {len(summary.done)}, skipped {len(summary.skipped)}, failed {failed}"
             + (f", {unread} folder{'s' * (unread != 1)} unreadable" if unread else "")
             + f" in {summary.seconds:.1f}s" + (f"; journal {summary.journal}" if summary.journal else ""))
        for result in summary.failed:
            _say(f"  {result.error}")
    if summary.interrupted:
        raise Interrupted(
            f"interrupted after {len(summary.done)} images; run the same command again to resume"
            + (f" (journal {summary.journal})" if summary.journal else "")
        )
    if stopped is not None:
        raise stopped
    if failed == 1 and total == 1 and planned == 1:
        error = BatchError(summary.failed[0].error)
        error.exit_code = summary.failed[0].exit_code  # a mask or usage problem stays exit 2
        raise error
    if failed and total < planned:  # --fail-fast stopped the run: --retry-failed would skip the rest
        raise BatchError(f"{failed} of {total} images failed; stopped there (--fail-fast), {planned - total} not attempted: "
                         "run the same command again to go on (what is done is skipped)")
    if failed:
        raise BatchError(f"{failed} of {total} images failed" + _advice(summary)
                         + (f"; {summary.unreadable_note()}" if summary.unreadable else ""))
    if summary.unreadable:
        raise BatchError(summary.unreadable_note())


def _unbuildable_error(summary: Any) -> Optional[BatchError]:
    """The error of a run whose pipeline could not be built (a model would
    not load), or None: not about an image, so said once, without per-image advice."""
    if summary.interrupted or not (summary.unbuildable and summary.failed):
        return None
    first = summary.failed[0]
    error = BatchError(f"{first.error.removeprefix(f'{first.source}: ')}; no image was processed")
    error.exit_code = first.exit_code
    return error


def _declared(name: str, methods: list) -> list[Param]:
    """The declarations of parameter ``name`` by the methods that take it."""
    return [op.param(name) for op in methods if op.param(name) is not None]


def _methods_with(name: str, methods: list) -> list[str]:
    """The methods that take parameter ``name``; [] when all of them do."""
    having = [op.method for op in methods if op.param(name) is not None]
    return [] if len(having) == len(methods) else having


def _advice(summary: Any) -> str:
    """What to do about a batch's failures: outputs in the way need
    --overwrite (retrying would refuse them again); others a retry."""
    if all(result.needs_overwrite for result in summary.failed):
        return " (their outputs exist: pass --overwrite to replace them, or give another -o)"
    return " (--retry-failed redoes only those)" if summary.journal else ""


def _param_option(param: Param, only: Sequence[str] = (), declared: Sequence[Param] = ()) -> Callable:
    """The option of ``param``; its help starts with the methods it belongs
    to when ``only`` names some (other methods refuse it). ``declared``:
    every method's declaration of that name; the option takes the values
    any of them takes."""
    help_text = (f"({', '.join(only)}) " if only else "") + (param.help or "")
    flag = param.flag or "--" + param.name.replace("_", "-")
    # None is "not given"; a value is checked by click against the declared
    # range or choices (a usage error naming the option, as for every other
    # option), then by Operation.parse_params per method, as pipeline stages are
    if param.type is bool:  # a pair, or a default of True could not be turned off
        off = "--no-" + flag.lstrip("-")
        shown = "" if param.default is None else f"  [default: {(flag if param.default else off).lstrip('-')}]"
        return click.option(f"{flag}/{off}", param.name, default=None, help=help_text + shown)
    kind = param.type.__name__.upper() + ("|auto" if param.allow_auto else "")
    if param.choices:
        kind = "|".join(map(str, param.choices))
    declared = _widest([param, *declared])
    extra = ([] if param.default in (None, "") else [f"default: {param.default}"]) + _range_text(declared)
    return click.option(flag, param.name, metavar=kind, type=_OptionType(declared) if declared else None,
                        help=help_text + (f"  [{'; '.join(extra)}]" if extra else ""))


def _widest(declared: Sequence[Param]) -> Optional[Param]:
    """The first of ``declared`` (the declarations of one parameter name by
    a verb's methods) with the range and choices of all of them, so that
    the option refuses only what every method refuses; None where they
    differ in type or in allowing "auto" (the option takes text, and each
    method checks it)."""
    from dataclasses import replace

    first = declared[0]
    if any(p.type is not first.type or p.allow_auto != first.allow_auto for p in declared):
        return None

    def bound(values: list, pick: Callable) -> Any:
        return None if any(v is None for v in values) else pick(values)

    choices = bound([p.choices for p in declared], lambda all_: tuple(dict.fromkeys(c for cs in all_ for c in cs)))
    return replace(first, minimum=bound([p.minimum for p in declared], min),
                   maximum=bound([p.maximum for p in declared], max), choices=choices)


def _range_text(param: Optional[Param]) -> list[str]:
    """The range of a numeric parameter as click shows an option's ("1<=x<=8"), or []."""
    if param is None or param.type not in (int, float) or param.choices:
        return []
    low, high = _bounds(param)
    if low is not None and high is not None:
        return [f"{low}<=x<={high}"]
    return [f"x>={low}"] if low is not None else [f"x<={high}"] if high is not None else []


def _bounds(param: Param) -> tuple[Any, Any]:
    """``param``'s minimum and maximum, whole numbers for an int parameter."""
    if param.type is not int:
        return param.minimum, param.maximum
    return (None if param.minimum is None else math.ceil(param.minimum),
            None if param.maximum is None else math.floor(param.maximum))


class _OptionType(click.ParamType):
    """The values of an operation parameter's option: click's own type for
    the parameter's declared type, range and choices, and besides it the
    word "auto" where the parameter allows it (as :meth:`Param.parse` takes it)."""

    def __init__(self, param: Param):
        self.auto = param.allow_auto
        low, high = _bounds(param)
        if param.type is str:
            self.base = self.inner = click.Choice([str(c) for c in param.choices]) if param.choices else click.STRING
        elif param.type is int:
            self.base, self.inner = click.INT, click.IntRange(low, high)
        else:  # float; numeric choices are left to Param.parse
            self.base, self.inner = click.FLOAT, FiniteFloat(low, high)
        self.name = self.inner.name

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if self.auto and isinstance(value, str) and value.lower() == "auto":
            return "auto"
        if self.auto:
            try:
                self.base.convert(value, param, ctx)
            except click.BadParameter:
                self.fail(f"{value!r} is not a valid {self.base.name} or 'auto'.", param, ctx)
        return self.inner.convert(value, param, ctx)

    def shell_complete(self, ctx: Any, param: Any, incomplete: str) -> Any:
        return self.inner.shell_complete(ctx, param, incomplete)  # a Choice's choices


def format_commands(group: click.Group, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """The "Commands" section of a group's ``--help``: each command's
    ``short_help``, else the whole first sentence of its help, wrapped where
    it is long (click's own cuts it at the terminal's width with "...", and
    a plugin's verb may say what it does in more words)."""
    rows = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None and not command.hidden:
            rows.append((name, command.get_short_help_str(limit=10**6)))
    if rows:
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class _Group(click.Group):
    """A shared group (``train``, ``eval``) listing whole summaries (:func:`format_commands`)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        format_commands(self, ctx, formatter)


def command_group(cli: click.Group, name: str, help: str) -> click.Group:
    """The ``imgedit NAME`` sub-group, created by the first plugin that asks.

    Plugins share groups such as ``train`` and ``eval`` this way: each adds
    its own sub-command (``imgedit train denoise``, ``imgedit train style``)
    without any plugin owning the group.
    """
    group = cli.commands.get(name)
    if group is None:
        group = _Group(name, help=help)
        cli.add_command(group)
    elif not isinstance(group, click.Group):
        raise TypeError(f"imgedit {name} is a command, not a group")
    return group


def training_options(data_help: str, steps: int, out_dir: Path, batch: int, lr: float) -> list[Callable]:
    """The options every ``imgedit train ...`` verb shares, with its defaults:
    ``--data`` (repeatable), ``--steps``, ``--resume``, ``-o/--out``, ``--overwrite``, ``--export``,
    ``--device``, ``--batch``, ``--lr``, ``--seed``, ``-q`` and ``--nproc``."""
    return [
        click.option("--data", "sources", multiple=True, required=True, help=data_help),
        click.option("--steps", type=COUNT, default=steps, show_default=True, help="Total optimisation steps."),
        click.option("--resume", type=CheckedPath(), help="Checkpoint to continue from."),
        click.option("-o", "--out", "out_dir", type=CheckedPath(), default=out_dir, show_default=True,
                     help="Folder for the checkpoint and log."),
        click.option("--overwrite", is_flag=True,
                     help="Start a new run even where --out holds an earlier one (its checkpoint, log and samples are "
                          "removed) or the model to export exists (it is replaced)."),
        # the weights' name is checked with its card's (imgedit.training.check_export_path)
        click.option("--export", "export_path", type=CheckedPath(check_names=False), help="Where to write the trained weights (default: your imgedit weights folder)."),
        device_option(),
        click.option("--batch", type=click.IntRange(1, MAX_BATCH), default=batch, show_default=True,
                     help="Images (or patches) per optimisation step; with --nproc, over all processes together."),
        click.option("--lr", type=FiniteFloat(min=0, min_open=True, max=MAX_LR), default=lr, show_default=True,
                     help="Learning rate (the peak, where the trainer warms up and decays it)."),
        seed_option(help="Seed of the initial weights and of training's random draws."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
        click.option("--nproc", type=click.IntRange(1, MAX_NPROC), default=1, show_default=True, expose_value=False,
                     callback=_distributed_training,
                     help="Train in N processes on this machine (torchrun, DistributedDataParallel), at most one "
                          "per CPU core; --batch is the global batch."),
    ]


def precision_option() -> Callable:
    """``--precision fp32|bf16`` for a training verb whose trainer runs its
    forward passes under :func:`imgedit.training.autocast`."""
    precisions = ("fp32", "bf16")  # imgedit.training.PRECISIONS, not imported: it loads torch, and --help must not
    return click.option("--precision", type=click.Choice(precisions), default="fp32", show_default=True,
                        help="bf16: mixed precision, about 2.5x faster on CPUs with AMX/AVX512-BF16 and on "
                             "recent GPUs; weights stay fp32.")


def _distributed_training(ctx: click.Context, param: click.Parameter, nproc: int) -> None:
    """``--nproc``: inside torchrun, join its process group; otherwise, with
    N > 1, run this same command line under torchrun and exit with its status."""
    import sys

    from imgedit import distributed

    if distributed.under_torchrun():
        distributed.start()
    elif nproc > 1:
        ctx.exit(distributed.relaunch(nproc, distributed.without_nproc(sys.argv[1:])))


def whole_image_options(eval_verb: str, default_name: str) -> list[Callable]:
    """The options of verbs that train on whole images as squares (``train
    gan``, ``train interp-vae``): ``--size``, ``--holdout``, ``--name``, ``--licence``."""
    return [
        click.option("--size", type=side(8), default=64, show_default=True,
                     help="Image size in px (a power of two); images are centre-cropped to squares and resized."),
        click.option("--holdout", type=click.IntRange(0, MAX_COUNT), default=0, show_default=True,
                     help="Keep N images out of training (those whose file names have the smallest sha256), "
                          f"listed in the model card for '{eval_verb} --held-out'."),
        click.option("--name", help=f"The model's name for --model (default: the --export file's name, else {default_name})."),
        click.option("--licence", help="Terms of the training data for the model card (UTKFace's are recognised from its file names)."),
    ]


def sheet_option(help: str) -> Callable:
    """``--sheet FILE``: a contact sheet an ``eval`` verb writes (check it with :func:`check_sheet`)."""
    return click.option("--sheet", type=CheckedPath(), help=help)


def check_sheet(sheet: Optional[Path], overwrite: bool = False) -> None:
    """Refuse, before an evaluation, a ``--sheet`` that could not be written
    after it (an unknown suffix, a folder, a folder that cannot be
    written): failing then would lose the figures; and one that exists,
    unless ``overwrite``: the sheet would replace it silently."""
    if sheet is None:
        return
    from imgedit.atomic import check_writable_folder
    from imgedit.imageio.formats import format_for_path

    if sheet.is_dir():
        raise UsageError(f"--sheet {sheet} is a folder: give the contact sheet's file (e.g. {sheet / 'sheet.png'})")
    format_for_path(sheet)
    check_writable_folder(sheet.parent, f"--sheet {sheet}")
    if not overwrite and (sheet.exists() or sheet.is_symlink()):
        raise UsageError(f"--sheet {sheet} exists: pass --overwrite to replace it, or give another --sheet")


def echo_report(report: dict, notes: list[str], as_json: bool, text: Callable[[], str]) -> None:
    """An ``eval`` verb's output: the report and its notes as JSON, or
    ``text()`` (the report as a table) followed by the notes, one per line."""
    import json

    if as_json:
        click.echo(json.dumps({**report, "notes": notes}, indent=2))
        return
    click.echo(text())
    for note in notes:
        click.echo(note)


def check_record(recorded: Any, new: dict, counts: tuple[str, ...], overwrite: bool, where: str) -> None:
    """Keep an ``eval`` verb's ``--record`` from replacing a model card's
    figures with weaker ones: figures on held-out images with figures that
    are not, or figures over more images (or steps) with figures over fewer.

    Args:
        recorded: what the card holds now under its ``metrics`` key (``None``: nothing).
        new: this run's ``held_out`` and ``counts`` (a number, or a list counted by its length).
        counts: the keys that say how much the figures rest on, e.g. ``("n",)``.
        overwrite: ``--overwrite`` was given: replace them anyway.
        where: the card and key, for the message.

    Raises:
        UsageError: the new figures would be weaker.
    """
    if overwrite or not isinstance(recorded, dict):
        return
    if recorded.get("held_out") and not new.get("held_out"):
        raise UsageError(f"--record: {where} holds figures on held-out images and these are not; "
                         "use --held-out, or --overwrite to replace them anyway")

    def count(value: Any) -> Optional[int]:
        return len(value) if isinstance(value, list) else value if isinstance(value, int) else None

    for key in counts:
        old, now = count(recorded.get(key)), count(new.get(key))
        if old is not None and now is not None and now < old:
            raise UsageError(f"--record: {where} holds figures with {key}={old} and these have {key}={now}; "
                             "--overwrite replaces them anyway")


_REPLACED = {"record": "a model card's recorded figures", "sheet": "an existing --sheet"}


def check_overwrite(overwrite: bool, **given: Any) -> None:
    """``--overwrite`` of an ``eval`` verb says how the outputs it names are
    written: without any of them it is a slip.

    Args:
        overwrite: ``--overwrite`` was given.
        given: the value of each option of the verb that it applies to
            (``record=False``, ``sheet=None``): of ``record`` and ``sheet``.

    Raises:
        UsageError: ``overwrite`` without any of them.
    """
    if overwrite and all(value is None or value is False for value in given.values()):
        raise UsageError(f"--overwrite replaces {' or '.join(_REPLACED[name] for name in given)}: it needs "
                         + " or ".join(f"--{name}" for name in given))


def command_line(ctx: click.Context) -> str:
    """The running command with every option spelled out (defaults too), for
    a model card or checkpoint to say exactly how it was made."""
    from imgedit.shell import quote_arg

    words = ["imgedit", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == ():
            continue
        if isinstance(value, bool):  # a flag, or the off side of an --x/--no-x pair
            opts = param.opts if value else getattr(param, "secondary_opts", [])
            words += [max(opts, key=len)] if opts else []
            continue
        flag = max(param.opts, key=len)
        for item in value if isinstance(value, tuple) else [value]:
            words += [flag, str(item)]
    return " ".join(quote_arg(w) for w in words)


# The help of the verbs whose methods come from several plugins (the
# classical and the VAE plugin both fill holes and remove noise): the verb is
# the host's, so its help is too, and each plugin adds the verb without
# help. Any plugin left out, the verb stays the same.
SHARED_VERB_HELP: dict[str, tuple[str, str]] = {
    "inpaint": ("Fill holes in images (mask, transparency, colour or box).",
                """Fill holes in images; --method picks the fill. The hole comes from
--mask (a file, or a folder of masks by stem), the image's transparency, a
sidecar photo.mask.png, --mask-color or --mask-box.

\b
Examples:
  imgedit inpaint photo.png                      # hole from transparency or photo.mask.png
  imgedit inpaint photos/ -o filled/ --mask masks/
  imgedit inpaint photo.jpg --mask-box 120,80,64,48 --dilate 4
"""),
    "denoise": ("Remove noise from images (--sigma N, 0-255, or auto).",
                """Remove noise from images: --sigma N on the 0-255 scale, or auto
(the noise level read from each image); --method picks the denoiser.

\b
Examples:
  imgedit denoise photo.jpg                      # noise level read from the image
  imgedit denoise scans/ -r -o clean/ --sigma 25
  imgedit denoise photo.jpg --strength 0.7 -o softer.jpg
"""),
}


def add_operation_verb(cli: click.Group, name: str, help: Optional[str] = None, short_help: Optional[str] = None) -> None:
    """Add the verb ``name`` running the operation of that name; ``help``
    is its ``--help`` text, ``short_help`` its line in ``imgedit --help``
    (default: the first sentence of ``help``). Without ``help``, a verb of
    :data:`SHARED_VERB_HELP` takes its help from there, another a line
    naming its operation.

    Idempotent: several plugins offering methods of one operation may all call
    it; the verb is made once and reads the registry when it runs. Each
    operation's own ``check`` runs as the pipeline is made, before any image
    is read.
    """
    if name in cli.commands:
        if getattr(cli.commands[name], "imgedit_operation", None) != name:  # another command took the name first
            from imgedit.plugins import command_owner

            owner = command_owner(cli, name)
            whose = "imgedit's own" if owner == "imgedit" else f"plugin {owner}'s" if owner else "taken"
            raise UsageError(f"cannot add verb '{name}': the command '{name}' is {whose}")
        return
    from imgedit.registry import get_registry

    methods = get_registry().methods(name)
    if not methods:
        raise UsageError(f"cannot add verb '{name}': no operation of that name is registered")
    params: dict[str, Param] = {}
    for op in methods:
        for p in op.params:
            params.setdefault(p.name, p)
    choices = [op.method for op in methods]
    options = list(COMMON_OPTIONS)
    if any(op.capabilities.needs_mask for op in methods):
        options += MASK_OPTIONS
    options.append(click.option("--method", type=click.Choice(choices), help=f"Default: {choices[0]}."))
    params = _without_clashes(params, options, methods)
    options += [_param_option(p, _methods_with(p.name, methods), _declared(p.name, methods)) for p in params.values()]

    if help is None:
        short_help, help = SHARED_VERB_HELP.get(name, (short_help, f"Run the '{name}' operation on images."))

    @click.command(name=name, help=help, short_help=short_help)
    @apply_options(options)
    def verb(**kwargs: Any) -> None:
        from imgedit.pipeline import Pipeline
        from imgedit.process_tuning import tune_for_batch

        tune_for_batch()  # before an operation's check may import torch
        method = kwargs.pop("method")
        raw = {p: kwargs.pop(p) for p in params if kwargs.get(p) is not None}
        for p in params:
            kwargs.pop(p, None)
        pipeline = Pipeline.from_specs([(name, dict(raw, **({"method": method} if method else {})))])
        run_verb(pipeline, kwargs)

    verb.imgedit_operation = name  # type: ignore[attr-defined]  # plugins may re-add it: not a clash
    cli.add_command(verb)


def _without_clashes(params: dict[str, Param], options: list[Callable], methods: list) -> dict[str, Param]:
    """The parameters whose option would not clash with a common one
    (``--quality``, ``--tile``...): a clashing one is left out of the verb,
    still usable in pipelines, and the clash is shown by ``imgedit plugins``
    against the plugin that registered it."""
    from imgedit.registry import get_registry

    def probe(option: Callable) -> click.Option:
        return option(click.Command("probe")).params[0]

    taken: set[str] = set()
    for option in options:
        made = probe(option)
        taken |= {made.name or "", *made.opts, *made.secondary_opts}
    kept = {}
    for name, param in params.items():
        made = probe(_param_option(param))
        clash = sorted(({made.name or ""} | set(made.opts) | set(made.secondary_opts)) & taken)
        if not clash:
            kept[name] = param
            continue
        op = next(op for op in methods if param in op.params)
        get_registry().problems.setdefault(op.plugin, []).append(
            f"parameter '{param.name}' of {op.key} clashes with the common option {clash[0]}; it is left out of "
            f"'imgedit {op.name}' (give it flag='--other-name'), and pipelines still take it"
        )
    return kept


@click.command(name="run")
@click.option("-p", "--pipeline", "pipeline_text", multiple=True,
              help='Stages, e.g. "denoise sigma=25 | inpaint"; several -p run one after the other.')
@click.option("-f", "--file", "pipeline_file", type=CheckedPath(), help="Pipeline file (TOML or YAML).")
@apply_options(COMMON_OPTIONS + MASK_OPTIONS)
def run_command(pipeline_text: tuple[str, ...], pipeline_file: Optional[Path], **kwargs: Any) -> None:
    """Run a pipeline of operations from any plugin over images.

    \b
    Examples:
      imgedit run -p "denoise sigma=25 | inpaint method=telea" photos/ -o out/ --mask masks/
      imgedit run -f edit.toml scans/ -r -o clean/
    """
    from imgedit.pipeline import Pipeline

    if bool(pipeline_text) == (pipeline_file is not None):
        raise UsageError("give the pipeline with either -p TEXT or -f FILE")
    if pipeline_file is not None:
        from imgedit.pipeline_file import load_pipeline_specs

        specs = load_pipeline_specs(pipeline_file)
        try:
            pipeline = Pipeline.from_specs(specs)
        except UsageError as exc:  # "stage 2 (inpaint): ..." says which stage, not which file
            raise type(exc)(f"{pipeline_file}: {exc}") from None
    else:
        pipeline = Pipeline.parse(" | ".join(pipeline_text))
    run_verb(pipeline, kwargs)


@contextmanager
def sigterm_as_interrupt(kept: str) -> Iterator[None]:
    """Stop on SIGTERM (``kill``, a job scheduler) as on Ctrl-C instead of
    dying where the process stands: the exception unwinds through every
    clean-up (a file being written, a staging folder), then one line saying
    what is ``kept``, and exit 143 (128 + SIGTERM). Main thread only, where
    signals arrive."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    _received.clear()
    try:
        yield
    except _Terminated:
        error = Interrupted(f"stopped by SIGTERM; {kept}")  # as training says it
        error.exit_code = 128 + signal.SIGTERM
        raise error from None
    except Interrupted as stopped:
        if not _received:
            raise
        # a batch stops on SIGTERM as on Ctrl-C (the writes in flight end, the
        # summary is said) and says so as an Interrupted of its own: say the signal
        error = Interrupted(f"stopped by SIGTERM; {stopped}")
        error.exit_code = 128 + signal.SIGTERM
        raise error from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is; a KeyboardInterrupt, so that no
    ``except Exception`` on the way swallows it and every Ctrl-C clean-up runs."""


_received: list[int] = []  # SIGTERM arrived in the present sigterm_as_interrupt block


def _raise_terminated(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise _Terminated
