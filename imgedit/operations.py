"""What an operation is: a named, parameterised image transform with a
capability manifest. Plugins register them; the CLI, the pipeline runner and
the tiling engine read the manifest to decide how to run them.

An operation's ``create(context, **params)`` builds an *applier* once per run
(this is where models load). The applier is called per image::

    applier(image, mask) -> image
    # image: (B, 3, H, W) float in [0, 1] on context.device, dtype context.dtype
    # mask:  (B, 1, H, W) float, 1 = hole, or None
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Protocol

from imgedit.errors import ImgeditError, PluginError, UsageError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import torch

__all__ = ["Applier", "Capabilities", "Context", "Operation", "PARAM_TYPES", "Param", "warn_once"]


@dataclass(frozen=True)
class Capabilities:
    """How an operation may be run.

    Attributes:
        devices: device types it runs on ("cpu", "cuda", "mps").
        precisions: precisions it supports on a GPU ("fp32", "fp16",
            "bf16"); reduced precision is used there only when listed here.
        cpu_bf16: it may run in bf16 on the CPU when the user asks for
            ``--precision bf16`` and the CPU computes bf16 natively (under
            autocast: its tensors stay fp32, convolutions run in bf16).
        tileable: whether the image may be split into tiles. Set it only for
            operations whose output pixel depends on a bounded neighbourhood.
        tile_overlap: pixels of context each tile needs on every side (at least
            the operation's receptive radius); tiled output then matches an
            untiled run.
        pad_multiple: the operation needs H and W to be multiples of this; the
            engine pads (reflect) and crops back.
        tile_align: the operation gives the same output for a pixel only when
            its crop is shifted by a multiple of this (a network that
            downsamples by this factor); the engine puts tiles on that grid,
            so a tiled run matches an untiled one.
        memory_mb_per_megapixel: rough working memory per megapixel the
            operation works on (the image, a tile, or its ``working_size``),
            used to choose a tile size and to estimate peak memory.
        needs_mask: the operation needs a hole mask (inpainting).
        batchable: reserved, not read yet: the file runner never stacks
            images (it applies one at a time), and a batch given to
            ``imgedit.run`` reaches the applier as it is, whatever this says.
    """

    devices: tuple[str, ...] = ("cpu", "cuda", "mps")
    precisions: tuple[str, ...] = ("fp32",)
    cpu_bf16: bool = False
    tileable: bool = False
    tile_overlap: int = 0
    pad_multiple: int = 1
    tile_align: int = 1
    memory_mb_per_megapixel: float = 200.0
    needs_mask: bool = False
    batchable: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "devices": list(self.devices),
            "precisions": list(self.precisions),
            "cpu_bf16": self.cpu_bf16,
            "tileable": self.tileable,
            "tile_overlap": self.tile_overlap,
            "pad_multiple": self.pad_multiple,
            "tile_align": self.tile_align,
            "memory_mb_per_megapixel": self.memory_mb_per_megapixel,
            "needs_mask": self.needs_mask,
            "batchable": self.batchable,
        }


@dataclass(frozen=True)
class Param:
    """One parameter of an operation (a CLI option and a pipeline ``key=value``).

    Attributes:
        name: python identifier, not ``method`` or ``op`` (a stage's own
            keys); the CLI option is ``--name-with-dashes`` (a ``bool`` one
            is a ``--name/--no-name`` pair), unless ``flag`` says otherwise.
        type: ``int``, ``float``, ``str`` or ``bool``.
        default: value when not given, or given as None (``sigma=None`` in
            Python means "the default", as the habit is).
        help: one line for ``--help``.
        choices: allowed values, if restricted.
        allow_auto: the string "auto" is accepted besides values of ``type``.
        minimum, maximum: inclusive numeric range, if any.
        flag: the CLI option, where ``--name-with-dashes`` would clash with a
            common option (``--name`` is every verb's output template).
        suggest: for tab completion of a free-text value, a function giving
            the values to offer (the style plugin's trained style names);
            ``choices`` complete without one.
    """

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    choices: Optional[tuple] = None
    allow_auto: bool = False
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    flag: Optional[str] = None
    suggest: Optional[Callable[[], Iterable[str]]] = field(default=None, compare=False, repr=False)

    def parse(self, value: Any, where: str) -> Any:
        """Convert ``value`` (often a string) to this parameter's type, or raise
        :class:`UsageError` naming ``where``. None gives :attr:`default`
        (checked when the operation was registered): in Python, ``sigma=None``
        means "the default", and create() must not get None for a float."""
        if value is None:
            return self.default
        if self.allow_auto and isinstance(value, str) and value.lower() == "auto":
            return "auto"
        try:
            out = self._convert(value)
        except (TypeError, ValueError):
            kind = self.type.__name__ + (" or 'auto'" if self.allow_auto else "")
            hint = " (a file's yes/no/on/off are booleans: quote the text)" if isinstance(value, bool) and self.type is str else ""
            raise UsageError(f"{where}: parameter '{self.name}' must be {kind}, got {value!r}{hint}") from None
        if isinstance(out, float) and not math.isfinite(out):  # NaN passes every range check
            raise UsageError(f"{where}: parameter '{self.name}' must be a finite number, got {value!r}")
        if self.choices is not None and out not in self.choices:
            raise UsageError(
                f"{where}: parameter '{self.name}' must be one of {', '.join(map(str, self.choices))}; got {value!r}"
            )
        if self.minimum is not None and out < self.minimum or self.maximum is not None and out > self.maximum:
            raise UsageError(f"{where}: parameter '{self.name}' must be in [{self.minimum}, {self.maximum}], got {out}")
        return out

    def declared_alike(self, other: "Param") -> bool:
        """Whether ``other`` declares this parameter alike for one option
        shared by several methods: the same type, "auto" and default (each
        method still checks its own range and choices)."""
        return (self.type, self.allow_auto, self.default) == (other.type, other.allow_auto, other.default)

    def summary(self) -> str:
        """A few words for listings: "float or auto, in [0, 255], default auto"."""
        kind = getattr(self.type, "__name__", str(self.type)) + (" or auto" if self.allow_auto else "")
        words = [kind]
        if self.choices:
            words.append("one of " + "|".join(map(str, self.choices)))
        elif self.minimum is not None and self.maximum is not None:
            words.append(f"in [{self.minimum}, {self.maximum}]")
        elif self.minimum is not None or self.maximum is not None:
            words.append(f">= {self.minimum}" if self.minimum is not None else f"<= {self.maximum}")
        if self.default not in (None, ""):
            words.append(f"default {self.default}")
        return ", ".join(words)

    def declaration_problem(self) -> str:
        """What is wrong with this declaration itself, or "". Checked when
        the operation is registered, so a plugin author's slip shows in
        ``imgedit plugins`` instead of refusing (or passing) a user's values."""
        if self.type not in PARAM_TYPES:
            return f"type {getattr(self.type, '__name__', repr(self.type))} is not one of int, float, str, bool"
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            return f"minimum {self.minimum} is above maximum {self.maximum}, so every value is refused"
        wrong = [c for c in self.choices or () if not self._of_type(c)]
        if wrong:  # ("1", "2") for an int: every value the user gives would be refused
            return f"choice {wrong[0]!r} is not {self.type.__name__}"
        return self._default_problem()

    def _of_type(self, value: Any) -> bool:
        """Whether ``value`` is already of this parameter's type (an int for a float too; a bool is no number)."""
        if self.type is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        return isinstance(value, self.type) and (self.type is bool or not isinstance(value, bool))

    def _default_problem(self) -> str:
        if self.default is None or self.type is str and self.default == "":
            return ""  # "not given": create decides (a seed of None, weights of "" for the shipped ones)
        if self.allow_auto and self.default == "auto":
            return ""
        if not self._of_type(self.default):  # create() gets the default as written: "false" would be true
            return f"default {self.default!r} is not {self.type.__name__}"
        value = self.default
        if self.choices is not None and value not in self.choices:
            return f"default {value!r} is not one of its choices ({', '.join(map(repr, self.choices))})"
        if isinstance(value, (int, float)) and not self._in_range(value):
            return f"default {value!r} is outside [{self.minimum}, {self.maximum}]"
        return ""

    def _in_range(self, value: float) -> bool:
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def _convert(self, value: Any) -> Any:
        """``value`` as ``self.type``; raises ValueError where a conversion
        would change what the user wrote (a pipeline file's ``true`` as a
        number, ``2.7`` as an int)."""
        if self.type is bool:
            if isinstance(value, bool):
                return value
            low = str(value).lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return low in ("1", "true", "yes", "on")
        if self.type in (int, float, str) and isinstance(value, bool):  # YAML reads no/yes/on/off as booleans
            raise ValueError(value)
        if self.type is int and isinstance(value, float):
            if not value.is_integer():
                raise ValueError(value)
            return int(value)
        return self.type(value)


PARAM_TYPES = (int, float, str, bool)  # what a CLI option and a pipeline "key=value" can carry


class Context(Protocol):
    """What ``Operation.create`` receives: where and how to run."""

    device: "torch.device"
    dtype: "torch.dtype"


Applier = Callable[["torch.Tensor", "Optional[torch.Tensor]"], "torch.Tensor"]


@dataclass(frozen=True)
class Operation:
    """A registered operation.

    Attributes:
        name: the stage name used in pipelines and the verb ("inpaint").
        method: which implementation ("telea"); several plugins may offer
            methods of one name. The highest ``priority`` is the default.
        create: ``create(context, **params) -> applier``; loads models.
        params: the parameters ``create`` accepts.
        capabilities: the manifest.
        description: one line for listings.
        priority: default-method ranking among methods of one name.
        weights: model names (see ``register_models``) whose hashes identify
            this operation's output, for resume journals.
        depends_on: ``depends_on(params) -> paths``: files besides the image
            whose content this operation's output depends on for these
            parameters (the weights a parameter picks, a reference image).
            The resume journal hashes them, so a run redoes what a retrained
            model or an edited file changed. ``weights`` covers the fixed ones.
        resizes: ``resizes(params) -> bool``: whether, with these parameters,
            the output is not the input's size (several fills side by side).
            A later stage that needs the mask is then refused before any
            image is read. Cheap, like ``check``.
        working_size: ``working_size(params, height, width) -> (h, w)``:
            the size the model works at for an image of that size, where
            it is not the image's own (a style applied at a capped size).
            The ``--dry-run`` memory estimate uses it. Cheap, like ``check``.
        check: ``check(params)``, run with the parsed parameters when a
            pipeline is made, before any image is read: raises
            :class:`~imgedit.errors.UsageError` for what the parameters' types
            cannot tell (a style name that does not exist, a missing file),
            or another imgedit error for the user's situation (a
            ``WeightsError`` for a style not trained yet): either reaches the
            user as it is, led by the stage. Keep it cheap: no model loading.
        plugin: filled in by the host: the plugin that registered it.
    """

    name: str
    method: str
    create: Callable[..., Applier]
    params: tuple[Param, ...] = ()
    capabilities: Capabilities = field(default_factory=Capabilities)
    description: str = ""
    priority: int = 0
    weights: tuple[str, ...] = ()
    depends_on: Optional[Callable[[dict[str, Any]], Iterable["Path"]]] = None
    check: Optional[Callable[[dict[str, Any]], None]] = None
    resizes: Optional[Callable[[dict[str, Any]], bool]] = None
    working_size: Optional[Callable[[dict[str, Any], int, int], tuple[int, int]]] = None
    plugin: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}.{self.method}"

    def param(self, name: str) -> Optional[Param]:
        return next((p for p in self.params if p.name == name), None)

    def parse_params(self, raw: dict[str, Any], where: str = "") -> dict[str, Any]:
        """Check and convert user parameters; fill defaults. Unknown names raise."""
        where = where or self.name
        out = {p.name: p.default for p in self.params}
        for key, value in raw.items():
            p = self.param(key)
            if p is None:
                known = ", ".join(p.name for p in self.params) or "none"
                near = did_you_mean(key, [p.name for p in self.params])
                raise UsageError(f"{where}: unknown parameter '{key}' for method '{self.method}'{near} (known: {known})")
            out[key] = p.parse(value, where)
        if self.check is not None:
            try:
                self.check(out)
            except ImgeditError as exc:  # the user's parameters or situation (a style not trained yet), not a bug
                raise _at_stage(exc, where, self.name) from None
            except OSError as exc:  # the file system refused a path the user gave (a stat of a bad name)
                reason = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
                raise UsageError(f"{where}: {reason}") from None
            except Exception as exc:  # a bug in the plugin's check
                raise PluginError(f"{where}: the check of {self.key} (plugin {self.plugin or '?'}) failed: "
                                  f"{type(exc).__name__}: {exc}") from exc
        return out


def _at_stage(exc: ImgeditError, where: str, name: str) -> ImgeditError:
    """``exc`` (same type, same exit code) with its message led by the
    stage; a leading ``name: `` from the check is dropped, so the stage is
    named once."""
    message, prefix = str(exc), f"{name}: "
    exc.args = (f"{where}: {message[len(prefix):] if message.startswith(prefix) else message}",)
    return exc


_warned: set[str] = set()  # the warnings this process has said (see warn_once)
_warned_lock = threading.Lock()


def warn_once(message: str, *args: Any) -> None:
    """Log ``message % args`` as a warning on the ``imgedit`` logger, the
    first time this process says it only.

    For what ``create`` (or the host building it) says about the
    parameters or the device: a notebook builds the pipeline again on every
    :func:`imgedit.run` call, and the same line thirty times in a loop
    buries the rest. The CLI runs one process per command, so it still
    sees the warning each time.
    """
    text = message % args if args else message
    with _warned_lock:
        if text in _warned:
            return
        _warned.add(text)
    logging.getLogger("imgedit").warning(message, *args, stacklevel=2)  # the record names the caller
