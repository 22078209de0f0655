"""The plugin host: one pluggy PluginManager, discovery and isolation.

Discovery order (after pytest and llm): built-in plugins through the
``imgedit`` entry-point group, which is also how third-party packages arrive;
then the built-in list as a fallback for a source checkout that was never
installed. ``IMGEDIT_LOAD_PLUGINS`` (comma-separated names) is an allow-list;
set it empty to load none. While imgedit's own test-suite runs, third-party
entry points are skipped so a developer's installed plugins cannot change
test results.

Hooks are called one plugin at a time, so a plugin that raises is recorded
(see ``imgedit plugins``) and never breaks the others.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import logging
import os
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pluggy

from imgedit import hookspecs

BUILTIN_PLUGINS: tuple[str, ...] = ("imgedit_classical", "imgedit_vae", "imgedit_gan", "imgedit_interp", "imgedit_style")
PLUGINS_DIR = Path(__file__).resolve().parent.parent / "plugins"

pm = pluggy.PluginManager("imgedit")
pm.add_hookspecs(hookspecs)
logger = logging.getLogger("imgedit")

# What a plugin's own code may raise without taking imgedit down: a module
# that calls sys.exit("needs a GPU") at import is a broken plugin like any
# other. KeyboardInterrupt is the user's, so it is never caught.
PLUGIN_FAILURES = (Exception, SystemExit)

_OFF = ("", "0", "false", "no", "off")


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` (IMGEDIT_DEBUG,
    IMGEDIT_VERBOSE) is on: unset, empty, 0, false, no and off are off."""
    return os.environ.get(name, "").strip().lower() not in _OFF


@dataclass
class PluginInfo:
    """What ``imgedit plugins`` shows for one plugin."""

    name: str
    module: str = ""
    version: Optional[str] = None
    source: str = ""  # "entry point", "built-in", "test"
    hooks: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "error" if self.errors else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "version": self.version,
            "source": self.source,
            "status": self.status,
            "hooks": self.hooks,
            "commands": self.commands,
            "errors": self.errors,
        }


_infos: dict[str, PluginInfo] = {}
_loaded = False
# Threads of a service may make their first calls at once: one loads, the
# others wait for it (a re-entrant lock: a plugin's import may call back in)
_load_lock = threading.RLock()
_loading = False
_left_out: set[str] = set()  # names of installed plugins IMGEDIT_LOAD_PLUGINS did not allow


def _wanted() -> Optional[set[str]]:
    """The names ``IMGEDIT_LOAD_PLUGINS`` allows, or None when it is not set (all are)."""
    allow = os.environ.get("IMGEDIT_LOAD_PLUGINS")
    return None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}


def _allowed(*names: str) -> bool:
    wanted = _wanted()
    return wanted is None or any(n in wanted for n in names)


def left_out_by_allow_list() -> list[str]:
    """Installed plugins that ``IMGEDIT_LOAD_PLUGINS`` left out, so that an
    empty listing can say why it is empty."""
    load_plugins()
    return sorted(_left_out)


def _warn_unknown_allowed() -> None:
    """A name in ``IMGEDIT_LOAD_PLUGINS`` that no plugin has would otherwise
    just load nothing, silently (a typo leaves imgedit without its verbs)."""
    wanted = _wanted()
    if not wanted:
        return
    shown = set(BUILTIN_PLUGINS)  # the names `imgedit plugins` lists: entry-point names
    accepted = set(shown)  # a module's name is taken too (``_allowed``), but not offered
    for ep in importlib.metadata.entry_points(group="imgedit"):
        shown.add(ep.name)
        accepted |= {ep.name, ep.value.split(":")[0]}
    for name in sorted(wanted - accepted):
        logger.warning("IMGEDIT_LOAD_PLUGINS: no plugin named %s is installed (known: %s)", name, ", ".join(sorted(shown)))


def error_text(exc: BaseException) -> str:
    if env_flag("IMGEDIT_DEBUG"):
        return "".join(traceback.format_exception(exc)).strip()
    # one line per error in `imgedit plugins` (pluggy's PluginValidationError spans three)
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__  # sys.exit() says nothing


def _register_module(name: str, module: Any, source: str, version: Optional[str]) -> None:
    pm.register(module, name=name)
    info = _infos.setdefault(name, PluginInfo(name=name))
    info.module, info.source, info.version = module.__name__, source, version
    callers = pm.get_hookcallers(module) or []
    info.hooks = sorted(caller.name for caller in callers)
    info.errors.extend(_unknown_hook_problems(module, callers))


def _unknown_hook_problems(module: Any, callers: list) -> list[str]:
    """A hook implementation whose name is no hook (``register_operation``)
    would be listed and never called. This is pluggy's ``check_pending``,
    per plugin, so that it names the plugin and spares the others."""
    known = sorted(name for name, caller in vars(pm.hook).items() if caller.has_spec())
    problems = []
    for caller in callers:
        if caller.has_spec() or all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is module):
            continue
        near = difflib.get_close_matches(caller.name, known, n=1)
        hint = f" (did you mean {near[0]}?)" if near else f" (hooks: {', '.join(known)})"
        problems.append(f"hook '{caller.name}' is not an imgedit hook and is never called{hint}")
    return problems


def _load_order(ep: Any) -> tuple:
    """Built-ins first, in their own order, then other plugins by name (and
    two of one name by distribution): a plugin's verb that clashes with a
    built-in's is the one left out and flagged, whatever order the
    environment lists the packages in."""
    module_name = ep.value.split(":")[0]
    if module_name in BUILTIN_PLUGINS:
        return (0, BUILTIN_PLUGINS.index(module_name), "", "")
    return (1, 0, ep.name, _distribution(ep))


def _load_entry_points() -> None:
    testing = getattr(sys, "_called_from_test", False)
    taken_by: dict[str, str] = {}  # entry-point name -> the distribution whose plugin holds it
    for ep in sorted(importlib.metadata.entry_points(group="imgedit"), key=_load_order):
        module_name = ep.value.split(":")[0]
        if testing and module_name not in BUILTIN_PLUGINS:
            continue
        if not _allowed(ep.name, module_name):
            _left_out.add(ep.name)  # as `imgedit plugins` would have listed it
            continue
        version = ep.dist.version if ep.dist is not None else None
        if ep.name in taken_by:  # pluggy holds one plugin per name: the first keeps it, this one is listed as an error
            row = f"{ep.name} ({_distribution(ep)})"  # its own row, so the first's stays ok
            _infos[row] = PluginInfo(row, module_name, version, "entry point", errors=[
                f"not loaded: {_distribution(ep)} and {taken_by[ep.name]} both declare the entry point '{ep.name}', "
                f"and {taken_by[ep.name]}'s is loaded; uninstall one, or rename the entry point"])
            continue
        taken_by[ep.name] = _distribution(ep)
        try:
            _register_module(ep.name, ep.load(), "entry point", version)
        except PLUGIN_FAILURES as exc:  # a broken plugin must not break the others
            _infos[ep.name] = PluginInfo(ep.name, module_name, version, "entry point", errors=[error_text(exc)])


def _distribution(ep: Any) -> str:
    """The distribution that declares ``ep``, as pip names it ("imgedit-foo")."""
    return ep.dist.name if ep.dist is not None else ep.value.split(":")[0]


def _load_builtin_fallbacks() -> None:
    loaded_modules = {info.module for info in _infos.values()}
    for module_name in BUILTIN_PLUGINS:
        if not _allowed(module_name):
            _left_out.add(module_name)
            continue
        if module_name in loaded_modules or pm.has_plugin(module_name):
            continue
        if PLUGINS_DIR.is_dir() and str(PLUGINS_DIR) not in sys.path:
            sys.path.append(str(PLUGINS_DIR))  # source checkout, never installed
        try:
            module = importlib.import_module(module_name)
            from imgedit import __version__

            _register_module(module_name, module, "built-in", __version__)
        except PLUGIN_FAILURES as exc:
            _infos[module_name] = PluginInfo(module_name, module_name, None, "built-in", errors=[error_text(exc)])


def load_plugins() -> None:
    """Discover and register plugins once (idempotent and cheap afterwards)."""
    global _loaded, _loading
    if _loaded:
        return
    with _load_lock:
        if _loaded or _loading:  # loaded while this thread waited; or a plugin's import calling back in
            return
        _loading = True
        try:
            _load_entry_points()
            _load_builtin_fallbacks()
            _warn_unknown_allowed()
        finally:
            _loading = False
            _loaded = True  # not retried on failure: what failed is each plugin's error row


def register_plugin(module: Any, name: str, source: str = "test") -> None:
    """Register a plugin object directly (tests, embedding applications)."""
    load_plugins()
    _register_module(name, module, source, None)
    from imgedit import registry

    registry.reset()


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin, name=name)
    _infos.pop(name, None)
    from imgedit import registry

    registry.reset()


def is_builtin(name: str) -> bool:
    """Whether the plugin ``name`` is one of imgedit's own (``plugins/``)."""
    info = _infos.get(name)  # None: registered with pm.register, not through this module
    return info is not None and info.module in BUILTIN_PLUGINS


def plugin_rank(name: str) -> int:
    """Whose declaration of a parameter several plugins' methods share
    counts first (see ``Registry.declaring_order``): 0 for imgedit's own
    plugins, as one (the shared verbs are the host's), then the others as
    they loaded, so a later plugin never re-declares an earlier one's."""
    if is_builtin(name):
        return 0
    order = list(_infos)
    return 1 + (order.index(name) if name in _infos else len(order))


def in_load_order(impls: list) -> list:
    """``impls`` by when their plugins loaded, built-ins first: pluggy puts a
    ``trylast`` implementation first, and built-ins found by the fallback
    load after entry points, yet the first one wins a clashing verb or
    operation, and that must be a built-in."""
    order = {name: index for index, name in enumerate(_infos)}

    def rank(impl: Any) -> tuple[bool, int]:
        return (not is_builtin(impl.plugin_name), order.get(impl.plugin_name, len(order)))

    return sorted(impls, key=rank)


def plugin_info(name: str) -> PluginInfo:
    return _infos.setdefault(name, PluginInfo(name=name))


def plugin_infos() -> list[PluginInfo]:
    """Every plugin seen, loaded or failed, in load order."""
    load_plugins()
    return list(_infos.values())


def call_each_register(hook_name: str, on_item: Callable[[str, Any], None]) -> None:
    """Call a ``register_*(register)`` hook plugin by plugin, telling
    ``on_item(plugin_name, item)`` who registered each item."""
    load_plugins()
    caller = getattr(pm.hook, hook_name)
    for impl in in_load_order(caller.get_hookimpls()):

        def register(item: Any, _plugin: str = impl.plugin_name) -> None:
            on_item(_plugin, item)

        try:
            impl.function(register=register) if "register" in impl.argnames else impl.function()
        except PLUGIN_FAILURES as exc:
            plugin_info(impl.plugin_name).errors.append(f"{hook_name}: {error_text(exc)}")
