"""The options imgedit's verbs share, and the types behind them: the
common options of every image verb and the mask options, the options
every ``train`` verb takes, the option of an operation's parameter (its
range and choices checked by click), and the command line that a run was
given, spelled out. Part of the plugin API through :mod:`imgedit.verbs`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Optional, Sequence

import click

from imgedit.atomic import name_too_long
from imgedit.latents import MAX_SEED
from imgedit.masks import MAX_DILATE
from imgedit.operations import Param
from imgedit.process_tuning import usable_cpus


class FiniteFloat(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and infinity: NaN passes
    every range check (a NaN truncation drew all-black samples)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _suggested(suggest: Callable[[], Iterable[str]]) -> Callable:
    """A click completer offering ``suggest()``'s values that start with what is typed."""
    def complete(ctx: Any, option: Any, incomplete: str) -> list[str]:
        try:
            return [value for value in suggest() if value.startswith(incomplete)]
        except Exception:  # noqa: BLE001 - a broken suggestion must not break the shell's Tab
            return []

    return complete


#: What Tab offers for --device: fixed, since asking torch which GPUs there are takes seconds.
DEVICE_WORDS = ("auto", "cpu", "cuda", "mps")


class OutputFormat(click.Choice):
    """An output format, also by its file extension's name (jpg, tif), as
    users spell it."""

    ALIASES = {"jpg": "jpeg", "tif": "tiff"}  # as imgedit.imageio.formats takes them (which imports Pillow)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, str):
            value = self.ALIASES.get(value.lower(), value)
        return super().convert(value, param, ctx)


# Upper bounds of the whole-number options, checked by click (a usage error,
# exit 2): a number past a C long otherwise reaches torch, numpy or OpenCV
# as an overflow error or a page of C++ stack frames.
MAX_THREADS = 1024  # a thread per core of the largest machines; more only take turns
MAX_NPROC = usable_cpus()  # each process is a whole trainer: past one per core they only take turns
MAX_BATCH = 4096  # images in one global batch: far past what these small networks gain from, or one step holds
MAX_SIDE = 8192  # px on a side: an image of 8192 x 8192 is 67 MP, held at once as floats
# Training photos larger than this on their longest side are read scaled down (imgedit.imagepool): no
# training crop is larger, and a --patch past it only enlarges crops (train style's 8192: 13 GB, then a crash)
TRAINING_PHOTO_SIDE = 1200
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


def parse_tile(value: Optional[str]) -> Any:
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
    click.option("-o", "--output", type=CheckedPath(),
                 help="Output file (one input) or folder; - for stdout (default: beside each input, see --name)."),
    click.option("-r", "--recursive", is_flag=True, help="Recurse into sub-folders."),
    click.option("--name", "name_template",
                 help="Output name template of the fields {stem}, {op}, {ext} and {srcext} (default: '{stem}.{op}.{ext}', "
                      "in an -o folder '{stem}.{ext}')."),
    click.option("--device", envvar="IMGEDIT_DEVICE", shell_complete=_suggested(lambda: DEVICE_WORDS),
                 help="auto, cpu, cuda, cuda:N or mps (default: IMGEDIT_DEVICE, else auto)."),
    click.option(
        "--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True,
        help="auto: fp16/bf16 on a GPU where the operation allows it, fp32 on the CPU; bf16 on a CPU with "
             "AVX512-BF16/AMX runs the learned denoiser and inpainter about twice as fast.",
    ),
    click.option("--tile", default="auto", show_default=True, help="Tile size in px, 0 for none, or auto."),
    threads_option("CPU threads for computation (default: OMP_NUM_THREADS, else torch's: the physical cores, "
                   "or fewer under a container's CPU quota)."),
    click.option("--overwrite", is_flag=True, help="Replace existing output files."),
    click.option("--in-place", is_flag=True, help="Write over the input files."),
    click.option("--format", "out_format", type=OutputFormat(["jpeg", "png", "tiff", "webp", "bmp"], case_sensitive=False),
                 help="Output format, jpg and tif too (default: the input's; with -o FILE, the file's extension)."),
    click.option("--quality", type=click.IntRange(1, 100),
                 help="JPEG/WebP/AVIF quality 1-100 (default: as the source where it is the output's format: a lossless "
                      "WebP stays lossless, a JPEG keeps its quality, 75-95, and chroma subsampling; else 95)."),
    click.option("--fail-fast", is_flag=True, help="Stop at the first failing image."),
    click.option("--workers", type=THREADS, help="I/O threads for reading and writing (default: CPU count, 2-8)."),
    click.option("--force", is_flag=True, help="Redo images the journal says are done."),
    click.option("--retry-failed", is_flag=True, help="Redo only the images that failed last time."),
    click.option("--skip-failed", is_flag=True,
                 help="Leave out the images that failed last time for their own content (corrupt, not an image) "
                      "and have not changed since: a corrupt file does not fail every nightly run."),
    click.option("--fsync", is_flag=True, help="Flush every output to disk before moving on (survives a power cut; slower)."),
    click.option("--dry-run", is_flag=True, help="Print the plan and exit without touching an image; the models are loaded, so one that would stop the run (missing, not verifying) fails it: exit 1, or 2 for a file the command gives."),
    click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                 help="Run here, or on a Ray cluster (pip install 'ray[data]>=2.9')."),
    click.option("--ray-address", envvar="IMGEDIT_RAY_ADDRESS",
                 help="Ray cluster to join with --engine ray (default: IMGEDIT_RAY_ADDRESS, else RAY_ADDRESS, else a local Ray)."),
    click.option("-q", "--quiet", is_flag=True, help="Print only errors."),
    click.option("-v", "--verbose", is_flag=True,
                 help="A line per image: written or skipped, and what its stages said (e.g. the sigma estimated)."),
    click.option("--json", "as_json", is_flag=True, help="Print a JSON summary."),
]


def device_option() -> Callable:
    """``--device`` for the verbs that are not image verbs (sample,
    interpolate, train, eval): ``IMGEDIT_DEVICE`` applies to them too."""
    return click.option("--device", envvar="IMGEDIT_DEVICE", default="auto", shell_complete=_suggested(lambda: DEVICE_WORDS),
                        help="auto, cpu, cuda, cuda:N or mps (default: IMGEDIT_DEVICE, else auto).")


MASK_OPTIONS: list[Callable] = [
    click.option("--mask", type=CheckedPath(), help="Mask file (white = hole) or folder of masks by stem."),
    click.option("--mask-color", help="Hole painted in this colour, e.g. ff00ff."),
    click.option("--color-tolerance", type=click.IntRange(0, 255), default=24, show_default=True,
                 help="How far (0-255, per channel) a pixel may be from --mask-color and still be hole."),
    click.option("--mask-box", help="Hole as a box x,y,w,h."),
    click.option("--dilate", type=click.IntRange(0, MAX_DILATE), default=0, show_default=True, help="Grow the hole by N px."),
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


def typed_option(name: str) -> bool:
    """Whether the user typed option ``name`` (not its default or environment variable)."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def param_option(param: Param, only: Sequence[str] = (), declared: Sequence[Param] = ()) -> Callable:
    """The option of ``param``; its help starts with the methods it belongs
    to when ``only`` names some (other methods refuse it). ``declared``:
    every method's declaration of that name; the option takes the values
    any of them takes."""
    said = param.help or ""
    help_text = (f"({', '.join(only)}) " if only else "") + said[:1].upper() + said[1:]  # as click's own options read
    flag = param.flag or "--" + param.name.replace("_", "-")
    # None is "not given"; a value is checked by click against the declared
    # range or choices (a usage error naming the option, as for every other
    # option), then by Operation.parse_params per method, as pipeline stages are
    if param.type is bool:  # a pair, or a default of True could not be turned off
        off = "--no-" + flag.lstrip("-")
        shown = "" if param.default is None else f"  [default: {(flag if param.default else off).lstrip('-')}]"
        return click.option(f"{flag}/{off}", param.name, default=None, help=help_text + shown)
    kind = _TYPE_NAMES.get(param.type, param.type.__name__.upper()) + ("|auto" if param.allow_auto else "")
    if param.choices:
        kind = "|".join(map(str, param.choices))
    declared = _widest([param, *declared])
    extra = ([] if param.default in (None, "") else [f"default: {param.default}"]) + _range_text(declared)
    return click.option(flag, param.name, metavar=kind, type=_OptionType(declared) if declared else None,
                        help=help_text + (f"  [{'; '.join(extra)}]" if extra else ""),
                        shell_complete=_suggested(param.suggest) if param.suggest else None)


def latent_model_option(default: str) -> Callable:
    """``--model`` of the verbs that use a latent model (sample, interpolate):
    a registered name, completed on Tab, or a .safetensors file."""
    from imgedit.latents import latent_model_names

    return click.option("--model", default=default, show_default=True, shell_complete=_suggested(latent_model_names),
                        help="A latent model's name ('imgedit plugins' lists them) or its .safetensors file "
                             "(from 'imgedit train gan' or 'imgedit train interp-vae', say).")


#: A parameter's type as click names its own options' (INTEGER, TEXT), not as Python does (INT, STR).
_TYPE_NAMES = {int: "INTEGER", float: "FLOAT", str: "TEXT"}


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
        self.numbers = param.choices if param.type in (int, float) else None  # text choices: click's Choice
        if param.type is str:
            self.base = self.inner = click.Choice([str(c) for c in param.choices]) if param.choices else click.STRING
        elif param.type is int:
            self.base, self.inner = click.INT, click.IntRange(low, high)
        else:
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
        number = self.inner.convert(value, param, ctx)
        if self.numbers is not None and number not in self.numbers:  # as click's Choice words it
            self.fail(f"{value!r} is not one of {', '.join(repr(str(c)) for c in self.numbers)}.", param, ctx)
        return number

    def shell_complete(self, ctx: Any, param: Any, incomplete: str) -> Any:
        if self.numbers is not None:
            from click.shell_completion import CompletionItem

            return [CompletionItem(str(c)) for c in self.numbers if str(c).startswith(incomplete)]
        return self.inner.shell_complete(ctx, param, incomplete)  # a Choice's choices


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
                          "removed; not those of the run --resume continues) or the model to export exists (it is "
                          "replaced)."),
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


def given_on_command_line(option: str) -> bool:
    """Whether the running ``imgedit train`` verb's ``option`` (its parameter
    name: ``out_dir``, ``batch``) was typed (or set by its environment
    variable) rather than left at its default. True outside the CLI: a
    Python caller's arguments are all meant."""
    typed = typed_options()
    return typed is None or option in typed


def typed_options() -> Optional[set[str]]:
    """The parameters of the running training verb given on its command line;
    None outside one (a Python caller, or a command that is no training verb)."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    if ctx is None or "out_dir" not in ctx.params:  # every training verb has --out
        return None
    defaults = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    return {name for name in ctx.params if ctx.get_parameter_source(name) not in defaults}


def typed_settings(cfg: Any) -> Optional[set[str]]:
    """The config settings (dotted paths) that options typed on the command
    line set: an option sets the setting of its name, unless the config's
    ``OPTION_FIELDS`` (``{"size": ("model.image_size",)}``) says which;
    None outside the CLI (every setting counts)."""
    typed = typed_options()
    if typed is None:
        return None
    fields = getattr(type(cfg), "OPTION_FIELDS", {})
    return {path for option in typed for path in fields.get(option, (option,))}


def typed_command(command: str) -> str:
    """The running training verb's command line with only the options typed:
    a resumed run takes every other setting from its checkpoint, so the
    defaults :func:`command_line` spells out would be recorded
    as if given. ``command`` itself outside the CLI, or where it is empty."""
    typed = typed_options()
    if not command or typed is None:
        return command
    ctx = click.get_current_context()
    # command_line leaves out a parameter whose value is None: the untyped ones here
    only_typed = SimpleNamespace(command_path=ctx.command_path, command=ctx.command,
                                 params={name: value for name, value in ctx.params.items() if name in typed})
    return command_line(only_typed)  # type: ignore[arg-type]
