"""Pipelines: a checked list of stages (operation + parameters), parsed from
``"denoise sigma=25 | inpaint method=telea"`` or built in Python, then built
once per run (models load once) and applied to many images."""

from __future__ import annotations

import os
import shlex
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Union

from imgedit.errors import ImgeditError, OutputContractError, PluginError, UsageError
from imgedit.operations import Applier, Operation, warn_once

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class Stage:
    """One stage: the operation and its parameters (parsed and checked by
    the :class:`Pipeline` it is put in)."""

    operation: Operation
    params: dict[str, Any]

    def __hash__(self) -> int:
        # A Pipeline parses its stages' params to int, float, str, bool or
        # None, so they hash; equal stages have one key and equal params.
        return hash((self.operation.key, tuple(sorted(self.params.items()))))

    def __repr__(self) -> str:
        return f"Stage({_stage_text(self)!r})"

    @property
    def label(self) -> str:
        return self.operation.name

    def describe(self) -> dict[str, Any]:
        return {"operation": self.operation.name, "method": self.operation.method, "params": self.params}


@dataclass(frozen=True)
class Pipeline:
    """An ordered list of stages, checked before any image is touched.

    Built from :class:`Stage` objects too, it checks them as :meth:`parse`
    does: each stage's params are parsed by its operation (types, ranges,
    unknown names, defaults filled in), and an empty pipeline is refused.
    Pipelines are hashable; do not edit a stage's params afterwards, make
    a new pipeline."""

    stages: tuple[Stage, ...]

    def __repr__(self) -> str:
        # the dataclass's own repr held every Param's help text (2.5 KB for one stage)
        return f"Pipeline({' | '.join(map(_stage_text, self.stages))!r})"

    def __post_init__(self) -> None:
        stages = tuple(self.stages)  # a list given is a tuple here, so the pipeline hashes
        if not stages:
            raise UsageError("the pipeline is empty: give at least one stage")
        checked = []
        for index, stage in enumerate(stages, start=1):
            if not isinstance(stage, Stage):
                raise UsageError(f"stage {index}: expected a Stage, got {type(stage).__name__}")
            where = f"stage {index} ({stage.operation.name})"
            checked.append(Stage(stage.operation, stage.operation.parse_params(stage.params, where)))
        _check_sizes(checked)
        object.__setattr__(self, "stages", tuple(checked))  # frozen: set once, here

    @classmethod
    def parse(cls, text: str) -> "Pipeline":
        """Parse ``"op key=value ... | op2 ..."``. ``method=`` picks a method.

        Raises:
            UsageError: empty pipeline, unknown operation/method/parameter or a
                badly typed value, each naming the stage.
        """
        return cls.from_specs(parse_stages(text))

    @classmethod
    def from_specs(cls, specs: list[tuple[str, dict[str, Any]]]) -> "Pipeline":
        """Build from ``[(name, {param: value, "method": m}), ...]``."""
        from imgedit.registry import get_registry

        registry = get_registry()
        stages = []
        for index, (name, raw) in enumerate(specs, start=1):
            raw = dict(raw)
            where = f"stage {index} ({name})"
            name, method = _name_and_method(name, raw.pop("method", None), where)
            stages.append(Stage(registry.get(name, method, where=where), raw))  # Pipeline's __post_init__ parses the params, once
        return cls(tuple(stages))

    @property
    def needs_mask(self) -> bool:
        return any(s.operation.capabilities.needs_mask for s in self.stages)

    @property
    def label(self) -> str:
        return "-".join(s.label for s in self.stages)

    def describe(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.stages]

    def specs(self) -> list[tuple[str, dict[str, Any]]]:
        """The stages as :meth:`from_specs` takes them: plain, picklable data
        from which another process rebuilds this pipeline from its own registry."""
        return [(s.operation.name, {"method": s.operation.method, **s.params}) for s in self.stages]

    def build(self, device: Optional[str] = None, precision: Optional[str] = None) -> "BuiltPipeline":
        """Create every stage's applier once (this is where models load)."""
        return BuiltPipeline(self, device, precision)


def _stage_text(stage: Stage) -> str:
    """``"denoise.vae sigma=25"``: the stage as :meth:`Pipeline.parse` takes
    it, with the parameters that differ from their defaults."""
    words = [stage.operation.key]
    for key, value in stage.params.items():
        param = stage.operation.param(key)
        if param is None or value != param.default:
            words.append(f"{key}={shlex.quote(_value_text(value))}")
    return " ".join(words)


def _value_text(value: Any) -> str:
    """A parameter's value as a pipeline's ``key=value`` writes it: 25 for 25.0, true for True."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:  # an int this size is the float exactly
        return str(int(value))
    return str(value)


def _name_and_method(name: str, method: Optional[str], where: str) -> tuple[str, Optional[str]]:
    """``denoise.nlm`` as ``denoise method=nlm``: the spelling 'imgedit
    plugins' and --dry-run show, so a plan's stage can be pasted back."""
    base, dot, dotted = str(name).partition(".")
    if not dot:
        return name, method
    if method is not None and str(method) != dotted:
        raise UsageError(f"{where}: the name says method '{dotted}' but method={method} is given; give one of them")
    return base, dotted


def _check_sizes(stages: list[Stage]) -> None:
    """A stage that changes the image's size (``resizes``) leaves no mask
    for a later stage that needs one: refuse that before any image."""
    for index, stage in enumerate(stages):
        op = stage.operation
        if op.resizes is None or not op.resizes(stage.params):
            continue
        later = next((n for n, s in enumerate(stages[index + 1:], index + 2) if s.operation.capabilities.needs_mask), None)
        if later is not None:
            raise UsageError(f"stage {later} ({stages[later - 1].operation.name}) needs the mask, but stage {index + 1} "
                             f"({op.key}) changes the image size with these parameters; put it last")


def backslash_escapes() -> bool:
    """Whether a backslash escapes the next character in a pipeline, as in
    a POSIX shell; on Windows it separates path parts, so it is plain text."""
    return os.name != "nt"


def parse_stages(text: str) -> list[tuple[str, dict[str, str]]]:
    """Split ``"op key=value ... | op2 ..."`` into ``[(op, {key: value}), ...]``
    with shell quoting, so a quoted value may hold spaces or a ``|``.

    Raises:
        UsageError: an empty stage, a word that is not ``key=value``, a
            parameter given twice or an unclosed quote, naming the stage.
    """
    lexer = shlex.shlex(text, posix=True, punctuation_chars="|")
    lexer.whitespace_split = True
    lexer.commenters = ""  # a '#' is text (sigma=25#strong, art#1.png), not a comment dropping the stages after it
    if not backslash_escapes():
        lexer.escape = ""  # keep C:\Users\me\art.jpg whole; quotes still group words
    stages: list[list[str]] = [[]]
    try:
        for word in lexer:
            if word and set(word) == {"|"}:  # "||" comes as one word: each bar ends a stage
                stages.extend([] for _ in word)
            else:
                stages[-1].append(word)
    except ValueError as exc:  # shlex: "No closing quotation", "No escaped character"
        raise UsageError(f"stage {len(stages)}: {str(exc).lower()} in pipeline {text!r}") from None
    return [_stage_spec(index, words, text) for index, words in enumerate(stages, start=1)]


def _stage_spec(index: int, words: list[str], text: str) -> tuple[str, dict[str, str]]:
    if not words:
        raise UsageError(f"stage {index} is empty in pipeline {text!r}")
    name, params = words[0], {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UsageError(f"stage {index} ({name}): expected key=value, got {word!r}")
        key = key.replace("-", "_")
        if key in params:
            raise UsageError(f"stage {index} ({name}): parameter '{key}' is given twice")
        params[key] = value
    return name, params


@dataclass
class RunContext:
    """What ``Operation.create`` receives."""

    device: "torch.device"
    dtype: "torch.dtype"


@dataclass
class _BuiltStage:
    stage: Stage
    context: RunContext
    applier: Applier
    precision: "torch.dtype"  # what it computes in; context.dtype is what its tensors are (fp32 for bf16 on the CPU)


@dataclass
class BuiltPipeline:
    """A pipeline with its appliers created; call :meth:`apply` per image."""

    pipeline: Pipeline
    device_spec: Optional[str] = None
    precision_spec: Optional[str] = None
    built: list[_BuiltStage] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        from imgedit.devices import resolve_device

        device = resolve_device(self.device_spec)
        self.built = []
        for index, stage in enumerate(self.pipeline.stages, start=1):
            with _naming(index, stage, "could not start"):  # a model that cannot load, a plugin's bug
                self.built.append(self._build_stage(stage, device))
        # An applier with output_shape(shape) changes the image's size (e.g.
        # several fills side by side): no later stage can use the mask then.
        for i, built in enumerate(self.built):
            if hasattr(built.applier, "output_shape"):
                later = next((b for b in self.built[i + 1 :] if b.stage.operation.capabilities.needs_mask), None)
                if later is not None:
                    raise UsageError(
                        f"stage '{later.stage.operation.name}' needs the mask, but the earlier stage "
                        f"'{built.stage.operation.key}' changes the image size with these parameters; put it last"
                    )

    def _build_stage(self, stage: Stage, device: "torch.device") -> _BuiltStage:
        import torch

        from imgedit.devices import compute_scope, resolve_precision

        caps = stage.operation.capabilities
        # once per process: a notebook builds a pipeline on every imgedit.run call
        if device.type not in caps.devices:
            warn_once("%s does not run on %s; using the CPU for it", stage.operation.key, device)
            device = torch.device("cpu")
        precision = resolve_precision(self.precision_spec, device, caps, stage.operation.key, once=True)
        context = RunContext(device, compute_scope(device, precision)[0])
        applier = stage.operation.create(context, **stage.params)
        _check_applier(applier, stage.operation)
        return _BuiltStage(stage, context, applier, precision)

    def _cpu_fallback(self, index: int, image: "torch.Tensor", mask: "Optional[torch.Tensor]"):
        """``fallback() -> applier`` for :func:`imgedit.tiling.run_tiled`: stage
        ``index`` built again on the CPU and, where it prepares, prepared on
        the stage's whole ``image`` as on the device (else each tile would
        decide for itself what the whole image decided: a noise level, per
        tile). The stage stays on the CPU for the images after this one: a
        device too small for the smallest tile will be too small again, and
        each image would first fail there."""
        import torch

        built = self.built[index]

        def rebuild() -> Applier:
            context = RunContext(torch.device("cpu"), torch.float32)
            applier = built.stage.operation.create(context, **built.stage.params)
            _check_applier(applier, built.stage.operation)
            self.built[index] = _BuiltStage(built.stage, context, applier, torch.float32)
            prepare = getattr(applier, "prepare", None)
            if prepare is not None:
                applier = prepare(image.cpu(), None if mask is None else mask.cpu())
            return applier

        return rebuild

    def apply(
        self, image: "torch.Tensor", mask: "Optional[torch.Tensor]" = None, tile: Union[int, str, None] = "auto",
        on_tile: "Optional[Callable[[str, int, int], None]]" = None, notes: Optional[list[str]] = None,
    ) -> "torch.Tensor":
        """Run every stage on ``image`` ``(B, 3, H, W)`` (float32) and return
        the result on the CPU; between stages the image stays on the device. ``mask`` is ``(B, 1, H, W)``, 1 = hole.
        ``on_tile(stage, done, total)`` hears of each tile a tiled stage finishes
        (``stage`` as "stage 1 (denoise)"), for the progress of one large image.
        ``notes`` gets what a prepared applier says of the image it will
        process (its ``note``, e.g. "sigma 12.3 estimated"), for the user.

        Appliers may edit what they are given in place, and the first stage
        is given ``image`` and the last stage that needs it ``mask``
        themselves, without a copy (a batch reads each image once and
        needs it no more): pass copies to keep them, as :func:`imgedit.run`
        does with a caller's tensor.

        The stages run without autograd (an operation that optimises per
        image enables it for itself), and the result is detached: an ``image``
        that requires grad gets no graph built, and no gradient back.

        Raises:
            ShapeError: ``image`` is not a float ``(B, 3, H, W)`` tensor (a
                gray one is refused here: :func:`imgedit.run` takes it as RGB).
            PluginError: a stage failed on an error that is not imgedit's own
                (a plugin's bug), naming the stage and its plugin.
        """
        import torch

        from imgedit.errors import ShapeError
        from imgedit.tensor import check_image

        check_image(image)
        if image.shape[1] != 3:  # plugins are promised RGB: say so before any stage, not from inside one
            raise ShapeError("image", "(B, 3, H, W) RGB (for gray: image.repeat(1, 3, 1, 1))", tuple(image.shape))
        with torch.no_grad():  # not inference_mode: style.neural's enable_grad() inside must still work
            return self._apply_stages(image, mask, tile, on_tile, notes).detach()

    def _apply_stages(self, image: "torch.Tensor", mask: "Optional[torch.Tensor]", tile: Union[int, str, None],
                      on_tile: "Optional[Callable[[str, int, int], None]]", notes: Optional[list[str]]) -> "torch.Tensor":
        from imgedit.devices import compute_scope, guard_fork
        from imgedit.tiling import run_tiled

        guard_fork()  # at the edit, not the build: a server that builds, then forks its workers, keeps their threads
        for index, built in enumerate(self.built):
            caps = built.stage.operation.capabilities
            # intermediate images stay on the device for the next stage
            following = self.built[index + 1].context.device if index + 1 < len(self.built) else "cpu"
            applier = built.applier
            stage_mask = self._mask_for(index, mask)
            # An applier that must see the whole image first (a noise level
            # estimated once, not per tile) offers prepare(image, mask) -> applier.
            with _naming(index + 1, built.stage, "failed"), compute_scope(built.context.device, built.precision)[1]:
                _check_output_size(applier, image.shape, f"the output of stage {index + 1} ({built.stage.label})")
                prepare = getattr(applier, "prepare", None)
                if prepare is not None:
                    applier = prepare(image, stage_mask)
                    if notes is not None and getattr(applier, "note", ""):
                        notes.append(str(applier.note))
                fallback = self._cpu_fallback(index, image, stage_mask)
                image = run_tiled(
                    applier,
                    image,
                    stage_mask,
                    capabilities=caps,
                    device=built.context.device,
                    dtype=built.context.dtype,
                    tile=tile,
                    fallback=fallback,
                    out_device=following,
                    on_tile=None if on_tile is None else partial(on_tile, f"stage {index + 1} ({built.stage.label})"),
                )
                _check_range(image)
        return image

    def _mask_for(self, index: int, mask: "Optional[torch.Tensor]") -> "Optional[torch.Tensor]":
        """The mask for stage ``index``: None if it needs none, a copy if a
        later stage needs it too (an applier may edit its mask in place)."""
        if mask is None or not self.built[index].stage.operation.capabilities.needs_mask:
            return None
        later = any(b.stage.operation.capabilities.needs_mask for b in self.built[index + 1:])
        return mask.clone() if later else mask


def _check_output_size(applier: object, shape: "torch.Size", what: str) -> None:
    """Refuse, before any work, an output over the pixel limit (16 fills of a
    large photo side by side)."""
    output_shape = getattr(applier, "output_shape", None)
    if output_shape is not None:
        from imgedit.imageio import check_made_size

        height, width = output_shape(tuple(shape))[-2:]
        check_made_size(height, width, what)


def _check_applier(applier: object, op: Operation) -> None:
    """What ``create`` returned can be run: found when the pipeline is
    built, not as a TypeError on every image.

    Raises:
        OutputContractError: not callable, or a tileable operation whose
            applier changes the image's size (tiles could not be put back).
    """
    if not callable(applier):
        got = "None" if applier is None else f"a {type(applier).__name__}"
        raise OutputContractError(f"create returned {got}, not an applier (a callable applier(image, mask) -> image)"
                                  + (": a missing 'return'?" if applier is None else ""))
    if hasattr(applier, "output_shape") and op.capabilities.tileable:
        raise OutputContractError("the applier has output_shape (its output is not the input's size), but the "
                                  "operation is tileable: the guide forbids both; set tileable=False")


OUTPUT_RANGE = (-0.5, 1.5)
"""A stage's output values outside this are refused, not clamped:
sharpening or resampling overshoots [0, 1] a little (the writer clamps
that), but values this far out are a wrong scale (0-255, or an offset)
that would be written all white or all black."""


def _check_range(image: "torch.Tensor") -> None:
    """Refuse a stage's output far outside [0, 1], with a hint when it
    looks like a 0-255 scale (checked on the whole result, once a tiled
    stage's tiles are put together)."""
    from imgedit.tensor import value_range

    if not image.numel():
        return
    low, high = value_range(image)
    if OUTPUT_RANGE[0] <= low and high <= OUTPUT_RANGE[1]:
        return
    if OUTPUT_RANGE[0] <= low and 8 < high <= 300:  # nothing below 0, bright values in the tens or hundreds
        hint = "; it looks like a 0-255 scale: divide by 255"
    else:  # a filter that overshoots (sharpening, contrast): the plugin clamps its own result
        hint = "; clamp the result to [0, 1] in the operation (image.clamp(0, 1))"
    raise OutputContractError(f"applier output: expected values in [0, 1] (a little overshoot, within "
                              f"[{OUTPUT_RANGE[0]}, {OUTPUT_RANGE[1]}], is fine), got {low:.4g} to {high:.4g}{hint}")


@contextmanager
def _naming(index: int, stage: Stage, what: str) -> Iterator[None]:
    """Name the stage, operation and plugin in an error that is not one of
    ours (a plugin's bug, a library's error): "unexpected RuntimeError" alone
    does not say where to look."""
    try:
        yield
    except OutputContractError as exc:
        op = stage.operation
        raise PluginError(f"stage {index} ({op.key}, plugin {op.plugin or '?'}) {what}: {exc}") from exc
    except ImgeditError:
        raise
    except Exception as exc:
        op = stage.operation
        raise PluginError(f"stage {index} ({op.key}, plugin {op.plugin or '?'}) {what}: {type(exc).__name__}: {exc}") from exc
