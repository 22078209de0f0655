"""Everything the plugins registered: operations (by name and method),
models and latent models. Built lazily from the hooks on first use, and
again after :func:`reset` (a train verb that wrote new weights calls it)."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from typing import Optional

from imgedit.catalog import UserLatentModelSpec
from imgedit.errors import UsageError, did_you_mean
from imgedit.latents import LatentModelSpec
from imgedit.models import ModelSpec
from imgedit.operations import Operation, Param
from imgedit.plugins import call_each_register, plugin_infos, plugin_rank

__all__ = ["RESERVED_PARAMS", "Registry", "get_registry", "reset"]

logger = logging.getLogger("imgedit")


class Registry:
    """Operations keyed ``(name, method)``; models and latent models keyed by name."""

    def __init__(self) -> None:
        self.operations: dict[tuple[str, str], Operation] = {}
        self.models: dict[str, ModelSpec] = {}
        self.latent_models: dict[str, LatentModelSpec] = {}
        # operation key -> the later plugins whose registration of it was left out
        self.left_out: dict[str, list[str]] = {}
        # plugin -> registration problems, shown by `imgedit plugins`
        self.problems: dict[str, list[str]] = {}
        # plugin -> what works but differs from what users are shown, shown by `imgedit plugins`
        self.warnings: dict[str, list[str]] = {}
        self._warned: set[str] = set()  # the operation keys whose left-out registrations were warned of

    def add_operation(self, plugin: str, op: Operation) -> None:
        problem = _operation_problem(op)
        if problem:
            self.problems.setdefault(plugin, []).append(problem)
            return
        op = dataclasses.replace(op, plugin=plugin)
        key = (op.name, op.method)
        if key in self.operations:
            # As with verbs and models, the first loaded keeps it (built-ins load first),
            # between third-party plugins too: their load order is fixed, by name, so
            # the same one wins on every machine, and the other is flagged, not both broken.
            first = self.operations[key].plugin
            self.left_out.setdefault(op.key, []).append(plugin)
            self.problems.setdefault(plugin, []).append(
                f"operation '{op.key}' is already registered by {first}; kept theirs (give yours another method name)")
            return
        self.operations[key] = op

    def add_model(self, plugin: str, spec: ModelSpec) -> None:
        self._add_named(self.models, "model", plugin, spec)

    def add_latent_model(self, plugin: str, spec: LatentModelSpec) -> None:
        self._add_named(self.latent_models, "latent model", plugin, spec)

    def _add_named(self, table: dict, what: str, plugin: str, spec: "ModelSpec | LatentModelSpec") -> None:
        """Keep the first registration of a name; a later one is a problem of its plugin."""
        kind = LatentModelSpec if table is self.latent_models else ModelSpec
        if not isinstance(spec, kind):
            self.problems.setdefault(plugin, []).append(f"registered {_shown(spec)} as a {what}, not a {kind.__name__}")
            return
        spec = dataclasses.replace(spec, plugin=plugin)
        if self._shadowed(spec):
            return
        if spec.name in table:
            if _from_user_file(table[spec.name]):  # a shipped model takes its name back, whichever plugin loaded first
                table[spec.name] = spec
                return
            other = table[spec.name].plugin
            self.problems.setdefault(plugin, []).append(f"{what} '{spec.name}' is already registered by {other}")
            return
        table[spec.name] = spec

    def _shadowed(self, spec: "ModelSpec | LatentModelSpec") -> bool:
        """Whether ``spec`` is a user's latent model whose name a latent model
        registered earlier holds (a shipped one registered later takes the
        name back in :meth:`_add_named`). It is left out, not a problem of the
        plugin that found it: ``imgedit models`` lists the file as shadowed,
        to be passed by its path. A name only another kind of model has (a
        style's) is no clash: ``sample --model`` looks among latent models."""
        if not _from_user_file(spec):
            return False
        holder = self.latent_models.get(spec.name)
        if holder is None:
            return False
        logger.debug("user model %s (%s) is shadowed by %s's model of that name", spec.name,
                     getattr(spec, "weights", None), holder.plugin)
        return True

    # -- queries -------------------------------------------------------
    def operation_names(self) -> list[str]:
        return sorted({name for name, _ in self.operations})

    def methods(self, name: str) -> list[Operation]:
        """Methods of one operation, the default (highest priority) first."""
        found = [op for (n, _), op in self.operations.items() if n == name]
        return sorted(found, key=lambda op: (-op.priority, op.method))

    def declaring_order(self, name: str) -> list[Operation]:
        """Methods of one operation in the order their declarations of a
        shared parameter count for the verb's option (the first of each name
        is the option's): imgedit's own plugins' first, then the others as
        they loaded, each plugin's by priority. So a later plugin's method
        cannot re-declare an option, whatever its priority."""
        return sorted(self.methods(name), key=lambda op: plugin_rank(op.plugin))

    def get(self, name: str, method: Optional[str] = None, where: str = "") -> Operation:
        """The operation ``name`` with ``method`` (default: highest priority).

        Where a later plugin's registration of it was left out, a warning
        says so, once per operation.

        Raises:
            UsageError: unknown operation or method.
        """
        where = where or name
        methods = self.methods(name)
        if not methods:
            known = ", ".join(self.operation_names()) or "none"
            broken = sorted(n for n, why in self.problems.items() if why) + [i.name for i in plugin_infos() if i.errors]
            hint = f"; plugins with errors, see 'imgedit plugins': {', '.join(sorted(set(broken)))}" if broken else ""
            near = did_you_mean(name, self.operation_names())
            raise UsageError(f"{where}: unknown operation '{name}'{near} (known: {known}){hint}")
        op = methods[0] if method is None else next((m for m in methods if m.method == method), None)
        if op is None:
            known = ", ".join(m.method for m in methods)
            near = did_you_mean(method, [m.method for m in methods])
            raise UsageError(f"{where}: unknown method '{method}' for '{name}'{near} (known: {known})")
        if op.key in self.left_out and op.key not in self._warned:
            self._warned.add(op.key)
            logger.warning("operation '%s' of %s is used; %s registered it too and is left out (see 'imgedit plugins')",
                           op.key, op.plugin, " and ".join(self.left_out[op.key]))
        return op


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")  # what a pipeline stage and a verb can spell


def _operation_problem(op: object) -> str:
    """Why ``op`` cannot be registered, or ""."""
    if not isinstance(op, Operation):
        return f"registered {_shown(op)}, not an Operation"
    for field_name in ("name", "method"):
        value = getattr(op, field_name)
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            return f"operation {field_name} {value!r} is not a name (letters, digits, '_' and '-')"
    if not callable(op.create):
        return f"operation '{op.key}' has no create function (got {_shown(op.create)})"
    return _resize_problem(op) or _params_problem(op)


def _resize_problem(op: Operation) -> str:
    """A tileable operation must give each tile back at its size: one that
    declares ``resizes`` could only fail once an image is tiled."""
    if op.resizes is not None and op.capabilities.tileable:
        return (f"operation '{op.key}' is tileable but declares resizes (its output may not be the input's size): "
                "tiles could not be put back; set tileable=False")
    return ""


# Parameter names a stage or verb takes for itself, so a parameter of that name could never be set.
RESERVED_PARAMS = {
    "method": "the name is reserved: 'method=' in a pipeline and --method in the verb pick the method",
    "op": "the name is reserved: 'op' names the operation of a stage in a pipeline file",
}


def _params_problem(op: Operation) -> str:
    """Why the ``Param`` declarations of ``op`` cannot be used, or "": a
    default its own range or choices refuse would reach ``create`` unchecked."""
    seen: set[str] = set()
    for param in op.params:
        if not isinstance(param, Param):
            return f"operation '{op.key}': parameter {_shown(param)} is not a Param"
        if not isinstance(param.name, str) or not param.name.isidentifier():
            return (f"operation '{op.key}': parameter name {param.name!r} is not a Python identifier "
                    "(the verb's option and create's keyword argument need one)")
        if param.name in RESERVED_PARAMS:
            return f"operation '{op.key}': parameter '{param.name}': {RESERVED_PARAMS[param.name]}; give it another name"
        if param.name in seen:
            return f"operation '{op.key}': parameter '{param.name}' is declared twice"
        seen.add(param.name)
        problem = param.declaration_problem()
        if problem:
            return f"operation '{op.key}': parameter '{param.name}': {problem}"
    return ""


def _unregistered_weights(reg: Registry) -> None:
    """An operation naming a model no plugin registers still runs, but its
    resume key then lacks that model's hash (the journal says "missing"),
    so a retrained model would not redo its images: a problem of its plugin."""
    for op in reg.operations.values():
        for name in op.weights:
            if name not in reg.models:
                reg.problems.setdefault(op.plugin, []).append(
                    f"operation '{op.key}' uses model '{name}', which is not registered by any plugin "
                    "(register it with register_models)")


def _unlike_declarations(reg: Registry) -> None:
    """A method declaring a shared parameter with another type, "auto" or
    default than the declaration its verb's option shows (another plugin's:
    see :meth:`Registry.declaring_order`) still runs, checking values
    against its own declaration; a warning of its plugin says that the
    option's help, type and default are not its own."""
    for name in reg.operation_names():
        shown: dict[str, tuple[Operation, Param]] = {}
        for op in reg.declaring_order(name):
            for param in op.params:
                first, declared = shown.setdefault(param.name, (op, param))
                if first.plugin != op.plugin and not param.declared_alike(declared):
                    reg.warnings.setdefault(op.plugin, []).append(
                        f"operation '{op.key}': parameter '{param.name}' ({param.summary()}) is declared unlike "
                        f"{first.key}'s of {first.plugin} ({declared.summary()}), which the '{name}' verb's option "
                        f"shows; {op.key} checks the values it gets against its own (declare it alike, or name it "
                        "otherwise)")


def _from_user_file(spec: object) -> bool:
    """Whether a plugin registered ``spec`` from a file in the user weights folder."""
    return isinstance(spec, UserLatentModelSpec)


def _shown(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


_registry: Optional[Registry] = None
_registry_lock = threading.RLock()  # first calls from several threads: one builds, the others wait for it


def get_registry() -> Registry:
    """The process-wide registry, built from the plugins on first use."""
    global _registry
    if _registry is not None:
        return _registry
    with _registry_lock:
        if _registry is not None:
            return _registry
        from imgedit.models import user_models

        reg = Registry()
        call_each_register("register_operations", reg.add_operation)
        call_each_register("register_models", reg.add_model)
        call_each_register("register_latent_models", reg.add_latent_model)
        for spec in user_models():
            if spec.name not in reg.models:
                reg.models[spec.name] = spec
        _unregistered_weights(reg)
        _unlike_declarations(reg)
        _registry = reg
    return _registry


def reset() -> None:
    """Forget the registry (after plugins change) so it is rebuilt on next use."""
    global _registry
    _registry = None
