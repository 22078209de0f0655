"""Building and running verbs: a ready-made verb for an operation name
whose ``--method`` choices and parameter options come from the registry (so
a learned method registered later by another plugin appears in the same
verb), ``imgedit run`` for pipelines, how a verb runs a batch and reports
it, and the ``train``/``eval`` groups plugins share.

This module is also the plugin API's one place for verb building blocks:
it re-exports the shared options (:mod:`imgedit.options`), progress lines
(:mod:`imgedit.progress`), the ``eval`` verbs' checks
(:mod:`imgedit.eval_report`) and SIGTERM handling (:mod:`imgedit.signals`),
so a plugin imports them all from here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import click

from imgedit.errors import BatchError, ImgeditError, Interrupted, UsageError
from imgedit.eval_report import check_overwrite, check_record, check_sheet, echo_report, sheet_option
from imgedit.operations import Param
from imgedit.options import (COMMON_OPTIONS, COUNT, MASK_OPTIONS, MAX_BATCH, MAX_COUNT, MAX_LR, MAX_NPROC, MAX_SIDE,
                             MAX_THREADS, SEED, THREADS, TRAINING_PHOTO_SIDE, CheckedPath, FiniteFloat, apply_options,
                             command_line, device_option, latent_model_option, mask_options_from, param_option, parse_tile,
                             precision_option, seed_option,
                             side, threads_option, training_options, typed_option, whole_image_options)
from imgedit.progress import Progress, StageProgress, TileProgress, duration, pace, printable, redraws_in_place, say
from imgedit.signals import sigterm_as_interrupt

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
    "TRAINING_PHOTO_SIDE",
    "Progress",
    "SEED",
    "SHARED_GROUP_HELP",
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
    "latent_model_option",
    "format_commands",
    "mask_options_from",
    "pace",
    "precision_option",
    "printable",
    "redraws_in_place",
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


def run_verb(pipeline: Any, kwargs: dict[str, Any]) -> None:
    """Run ``pipeline`` over the verb's inputs with the common options in
    ``kwargs`` (as produced by :data:`COMMON_OPTIONS`, plus mask options).
    SIGTERM (a scheduler, ``kill``) stops it as Ctrl-C does: the writes in
    flight end, the summary is said, and it exits 143."""
    from imgedit.stdio import after_interrupt, piped

    piped_advice = after_interrupt(kwargs)
    with sigterm_as_interrupt(piped_advice or "every output written so far is complete; run the same command again to resume"), \
            piped(kwargs) as kwargs:  # "-": stdin or stdout, through a temporary folder
        _run_verb(pipeline, kwargs, piped_advice)


def _run_verb(pipeline: Any, kwargs: dict[str, Any], piped_advice: Optional[str] = None) -> None:
    from imgedit.output_plan import JournalsRead, check_options, ignored_options, leave_out_own_outputs
    from imgedit.process_tuning import tune_for_batch
    from imgedit.runner import run_files

    tune_for_batch()  # before anything imports torch
    from imgedit.inputs import scan_inputs, unsearched_note

    verbose = kwargs.get("verbose", False)  # a plugin's kwargs made before -v was an option lack it
    if kwargs["quiet"] and verbose:
        raise UsageError("-q prints only errors and -v a line per image: pick one")
    if kwargs["quiet"]:
        logging.getLogger("imgedit").setLevel(logging.ERROR)  # "print only errors": no warnings either
    masks = mask_options_from(kwargs)
    scan = scan_inputs(kwargs["inputs"], recursive=kwargs["recursive"])
    items = scan.files
    if kwargs.get("threads") is not None:  # imgedit.devices imports torch (seconds): not for a rerun with nothing to do
        from imgedit.devices import set_threads

        set_threads(kwargs["threads"])
    options = _run_options(kwargs, masks)
    check_options(options, len(items))
    if typed_option("tile") and options.tile and not kwargs["quiet"]:
        _say_untiled(pipeline, options.tile)
    if kwargs.get("ray_address") and kwargs.get("engine") != "ray" and typed_option("ray_address"):  # not the env var
        raise UsageError("--ray-address joins a Ray cluster: it needs --engine ray")
    named = frozenset(Path(i) for i in kwargs["inputs"] if Path(i).is_file())
    journals = JournalsRead()  # read once, for leaving out earlier results and for the run's resume
    items, own = leave_out_own_outputs(pipeline, items, options, named, journals)
    if own and not (kwargs["quiet"] or kwargs["as_json"]):
        what = "images that are imgedit's results" if len(own) > 1 else "image that is one of imgedit's results"
        click.echo(f"left out {len(own)} {what}, of this run or an earlier one (e.g. {own[0].path}): results are "
                   "not inputs; name a file to edit it", err=True)
    for note in ignored_options(pipeline, items, options) + _ignored_mask_options(pipeline, masks):
        log.warning(note)
    if kwargs.get("engine") == "ray" and typed_option("threads"):
        log.warning("ignoring --threads: with --engine ray each actor computes on one thread (one actor per CPU)")
    if pipeline.needs_mask:
        _check_mask_source(pipeline, items, masks)
    quiet = kwargs["quiet"] or kwargs["as_json"]
    to_stdout = kwargs.get("to_stdout", False)  # -o -: the image is the news, not "wrote" a temporary file
    passed_by = [] if quiet else _passed_by(scan, options)
    # said last, once the plan or the run went well: a note above an error would hide the one line that matters
    notes = [unsearched_note(passed_by)] if passed_by else []
    if kwargs["dry_run"]:
        _print_plan(pipeline, items, options, kwargs["as_json"], journals)
        for note in notes:
            say(note)
        return
    try:
        with Progress(len(items), (quiet or to_stdout) and not verbose,
                      first=str(items[0].path) if items else "", verbose=verbose) as report:
            if kwargs.get("engine") == "ray":
                from imgedit.ray_engine import run_files_ray

                summary = run_files_ray(pipeline, items, options, on_result=report, address=kwargs.get("ray_address"),
                                        journals=journals)
            else:
                summary = run_files(pipeline, items, options, on_result=report,
                                    on_tile=TileProgress(quiet) if len(items) == 1 else None, journals=journals)
    except ImgeditError as exc:
        if kwargs["as_json"]:  # a script reading stdout gets an answer, not nothing
            _print_run_error(exc, scan, planned=len(items), left_out=own)
        raise
    summary.take_scan(scan, own)  # the results left out are said on stderr, but not to --json, which silences it
    summary.planned = len(items)
    _print_summary(summary, kwargs["quiet"] or to_stdout, kwargs["as_json"], planned=len(items),
                   notes=notes, batch=any(item.from_folder for item in items), piped_advice=piped_advice)


def _run_options(kwargs: dict[str, Any], masks: Any) -> Any:
    """The :class:`~imgedit.runner.RunOptions` of a verb's options."""
    from imgedit.runner import RunOptions, default_workers

    return RunOptions(
        output=kwargs["output"],
        name=kwargs["name_template"],
        device=kwargs["device"],
        precision=kwargs["precision"],
        tile=parse_tile(kwargs["tile"]),
        overwrite=kwargs["overwrite"],
        in_place=kwargs["in_place"],
        format=kwargs["out_format"],
        quality=kwargs["quality"],
        masks=masks,
        fail_fast=kwargs["fail_fast"],
        workers=kwargs["workers"] or default_workers(),
        force=kwargs["force"],
        retry_failed=kwargs["retry_failed"],
        skip_failed=kwargs.get("skip_failed", False),  # a plugin's kwargs made before the option lack it
        fsync=kwargs["fsync"],
    )


def _passed_by(scan: Any, options: Any) -> list[Path]:
    """The sub-folders a scan without -r passed by, but the run's own -o
    (its results: -r would leave them out as well)."""
    import os

    output = os.path.realpath(options.output) if options.output is not None else None
    return [folder for folder in scan.unsearched if os.path.realpath(folder) != output]


#: The mask options' parameter names and flags, in MASK_OPTIONS' order.
_MASK_FLAGS = {"mask": "--mask", "mask_color": "--mask-color", "color_tolerance": "--color-tolerance",
               "mask_box": "--mask-box", "dilate": "--dilate", "invert_mask": "--invert-mask"}


def _ignored_mask_options(pipeline: Any, masks: Any) -> list[str]:
    """A line for the mask options typed that this run would not use: all
    of them where no stage takes a mask, ``--color-tolerance`` without
    ``--mask-color`` (see :func:`imgedit.output_plan.ignored_options`)."""
    if not pipeline.needs_mask:
        typed = [flag for name, flag in _MASK_FLAGS.items() if typed_option(name)]
        return [f"ignoring {', '.join(typed)}: no stage of the pipeline uses a mask"] if typed else []
    if typed_option("color_tolerance") and masks.mask_color is None:
        return ["ignoring --color-tolerance: it says how near --mask-color a pixel must be, and no --mask-color is given"]
    return []


def _print_run_error(exc: ImgeditError, scan: Any, planned: int, left_out: list) -> None:
    """The ``--json`` summary of a run that an error stopped as a whole (a
    journal or an output folder that cannot be written): the error, and what
    was done before it where the runner says."""
    from imgedit.runner import Summary

    summary = getattr(exc, "summary", None) or Summary()
    summary.error, summary.planned = str(exc), planned
    summary.take_scan(scan, left_out)
    click.echo(json.dumps(summary.as_dict(), indent=2))


def _say_untiled(pipeline: Any, tile: Any) -> None:
    """One line naming the stages a typed ``--tile`` does not apply to (they
    work on the whole image: a style's look depends on all of it), so that
    it is not taken for a memory limit it is not."""
    whole = [s.label for s in pipeline.stages if not s.operation.capabilities.tileable]
    if not whole:
        return
    tiled = [s.label for s in pipeline.stages if s.operation.capabilities.tileable]
    where = f"; it applies to {', '.join(tiled)}" if tiled else " and is ignored"
    say(f"note: {', '.join(whole)} works on the whole image: --tile {tile} does not split it{where}")


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
    which = name if len(pipeline.stages) == 1 else f"stage {stage} ({name})"  # a verb's user never wrote a pipeline
    raise UsageError(
        f"{which} needs a mask and none of the inputs has one (their formats hold no transparency, and no "
        "sidecar .mask.png lies beside them): give --mask FILE|DIR, --mask-color HEX or --mask-box x,y,w,h, "
        "or put photo.mask.png beside each photo.jpg"
    )


def _print_plan(pipeline: Any, items: list, options: Any, as_json: bool, journals: Any) -> None:
    from imgedit.dryrun import describe_plan
    from imgedit.stdio import shown

    plan, problem = describe_plan(pipeline, items, options, journals)
    plan.update({key: shown(plan[key]) for key in ("first_output", "journal") if plan[key]})  # "-": stdin, stdout
    if as_json:
        click.echo(json.dumps(plan, indent=2))
    else:
        _print_plan_text(plan)
    if problem is not None:  # the run would stop at its first image: a dry run that passed would say otherwise
        raise problem


def _print_plan_text(plan: dict) -> None:
    click.echo(f"{plan['inputs']} input{'' if plan['inputs'] == 1 else 's'} ({plan['already_done']} already done), first output {plan['first_output']}")
    for number, stage in enumerate(plan["stages"], 1):
        # a parameter left empty (weights=: the shipped model) says nothing; --json keeps every one
        params = " ".join(f"{k}={v}" for k, v in stage["params"].items() if v not in (None, ""))
        click.echo(
            f"  stage {number}: {stage['operation']}.{stage['method']} {params} "
            f"[{stage['device']}, {stage['precision']}, tile {stage['tile']}]"
        )
    click.echo(
        f"journal: {plan['journal'] or 'none'}; workers {plan['workers']}, queue depth {plan['queue_depth']}; "
        f"largest image {plan['largest_image_mp']} MP; peak memory about {plan['peak_memory_estimate_mb']} MB"
    )


def _print_summary(summary: Any, quiet: bool, as_json: bool, planned: int, notes: Sequence[str] = (),
                   batch: bool = False, piped_advice: Optional[str] = None) -> None:
    """The run's summary line (a batch's: several images, or a folder's,
    however few: a log read by a script ends alike), or its error; then
    ``notes``, where nothing failed. ``piped_advice``: what to do after an
    interrupt where stdin or stdout is piped (no journal to resume from)."""
    stopped = _unbuildable_error(summary)
    if as_json:
        if stopped is not None:  # the run stopped as a whole: its error, as for a journal that cannot be written
            summary.error = str(stopped)
        click.echo(json.dumps(summary.as_dict(), indent=2))
    failed, total = len(summary.failed), len(summary.results)
    if (total > 1 or batch and total) and not quiet and not as_json and stopped is None:  # else its error says it
        unread, before = len(summary.unreadable), len(summary.failed_before)
        say(f"done {len(summary.done)}, skipped {len(summary.skipped)}"
            + (f" ({before} that failed before, unchanged)" if before else "") + f", failed {failed}"
             + (f", {unread} folder{'s' * (unread != 1)} unreadable" if unread else "")
             + (f", {len(summary.in_cloud)} in iCloud only" if summary.in_cloud else "")
             + (f", not attempted {summary.not_attempted}" if summary.not_attempted else "")
             + f" in {summary.seconds:.1f}s" + (f"; journal {summary.journal}" if summary.journal else ""))
        for result in summary.failed:
            say(f"  {result.error}")
    if summary.interrupted and piped_advice:
        raise Interrupted(f"interrupted; {piped_advice}")
    if summary.interrupted:
        done = len(summary.done)
        if summary.journal is None:  # nothing to resume from: the image in hand was not written
            raise Interrupted(f"interrupted after {done} of {planned} image{'s' * (planned != 1)}; "
                              "run the same command again to redo what was not written")
        raise Interrupted(f"interrupted after {done} image{'s' * (done != 1)} done, {summary.not_attempted} not "
                          f"attempted; run the same command again to resume (journal {summary.journal})")
    if stopped is not None:
        raise stopped
    if failed == 1 and total == 1 and planned == 1 and not batch:
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
    for note in notes:
        say(note)


def _unbuildable_error(summary: Any) -> Optional[BatchError]:
    """The error of a run whose pipeline could not be built (a model would
    not load), or None: not about an image, so said once, without per-image advice."""
    first = next((r for r in summary.failed if r.unbuildable), None)  # not an image that failed before it
    if summary.interrupted or first is None:
        return None
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


# The help of the groups plugins share: a plugin may add its sub-command
# without help, and the group reads the same whichever plugin made it.
SHARED_GROUP_HELP: dict[str, str] = {
    "train": "Train a plugin's model on your own images.",
    "eval": "Measure a plugin's model on a benchmark set.",
}


def command_group(cli: click.Group, name: str, help: Optional[str] = None) -> click.Group:
    """The ``imgedit NAME`` sub-group, created by the first plugin that asks.

    Plugins share groups such as ``train`` and ``eval`` this way: each adds
    its own sub-command (``imgedit train denoise``, ``imgedit train style``)
    without any plugin owning the group. ``help`` is used only by the
    plugin that creates it; without it, a group of :data:`SHARED_GROUP_HELP`
    takes its help from there, another a line naming it. Where ``NAME`` is
    another plugin's command, not a group, the clash is recorded as for any
    verb (see :func:`imgedit.verb_owners.record_verb_clash`) and the group returned is
    detached, so that the plugin's other verbs still register; outside
    ``register_commands`` that is a TypeError.
    """
    group = cli.commands.get(name)
    if group is None:
        group = _Group(name, help=help or SHARED_GROUP_HELP.get(name, f"Commands that plugins add under '{name}'."))
        cli.add_command(group)
    elif not isinstance(group, click.Group):
        from imgedit.verb_owners import record_verb_clash

        if not record_verb_clash(cli, name):
            raise TypeError(f"imgedit {name} is a command, not a group")
        return _Group(name, help=help)  # detached: what the plugin adds to it goes nowhere
    return group


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
  imgedit inpaint photo.png      # the hole: transparency or photo.mask.png
  imgedit inpaint photos/ -o filled/ --mask masks/
  imgedit inpaint photo.jpg --mask-box 120,80,64,48 --dilate 4
"""),
    "denoise": ("Remove noise from images (--sigma N, 0-255, or auto).",
                """Remove noise from images: --sigma N on the 0-255 scale, or auto
(the noise level read from each image); --method picks the denoiser.

\b
Examples:
  imgedit denoise photo.jpg                 # noise level read from the image
  imgedit denoise scans/ -r -o clean/ --sigma 25
  imgedit denoise photo.jpg --strength 0.7 -o softer.jpg
  imgedit denoise - < scan.png > clean.png  # - : stdin in, stdout out
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
    is read. A parameter several methods take is one option, declared as
    :meth:`~imgedit.registry.Registry.declaring_order` says; each method
    checks the value against its own declaration. Where another command
    has the name, the first is kept and the clash recorded against the
    calling plugin (:func:`imgedit.verb_owners.record_verb_clash`); outside
    ``register_commands`` that is a UsageError.
    """
    if name in cli.commands:
        if getattr(cli.commands[name], "imgedit_operation", None) != name:  # another command took the name first
            from imgedit.verb_owners import command_owner, record_verb_clash

            if record_verb_clash(cli, name):  # recorded, as a replaced verb is: the plugin's other verbs still register
                return
            owner = command_owner(cli, name)
            whose = "imgedit's own" if owner == "imgedit" else f"plugin {owner}'s" if owner else "taken"
            raise UsageError(f"cannot add verb '{name}': the command '{name}' is {whose}")
        return
    from imgedit.registry import get_registry

    methods = get_registry().methods(name)
    if not methods:
        raise UsageError(f"cannot add verb '{name}': no operation of that name is registered")
    params: dict[str, Param] = {}
    for op in get_registry().declaring_order(name):  # not by priority: a later plugin's method cannot re-declare
        for p in op.params:
            params.setdefault(p.name, p)
    choices = [op.method for op in methods]
    options = list(COMMON_OPTIONS)
    if any(op.capabilities.needs_mask for op in methods):
        options += MASK_OPTIONS
    described = " ".join(f"{op.method}: {op.description.rstrip('.')}." for op in methods if op.description)
    options.append(click.option("--method", type=click.Choice(choices), help=f"Default: {choices[0]}. {described}".strip()))
    params = _without_clashes(params, options, methods)
    options += [param_option(p, _methods_with(p.name, methods), _declared(p.name, methods)) for p in params.values()]

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
        made = probe(param_option(param))
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
      imgedit run -p "denoise | inpaint method=telea" scans/ -o out/ --mask masks/
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
