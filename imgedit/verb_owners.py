"""Which plugin made each verb of the command line, and what happens when
two want one: :func:`register_commands` lets each plugin add its verbs in
turn and keeps the first of a clashing pair, recording the clash on the
later plugin (shown by ``imgedit plugins``); :func:`record_verb_clash` is
how the verb helpers (``add_operation_verb``, ``command_group``) say so."""

from __future__ import annotations

import weakref
from typing import Any

from imgedit.plugins import PLUGIN_FAILURES, error_text, in_load_order, load_plugins, plugin_info, pm

__all__ = ["command_owner", "record_verb_clash", "register_commands"]


def _command_paths(cli: Any) -> dict[str, Any]:
    """Every verb of ``cli`` by its command line: ``{"style": ..., "train style": ...}``.
    A group's sub-commands are listed instead of the group, since plugins
    share groups such as ``train`` and ``eval`` (an empty group is listed itself)."""
    paths: dict[str, Any] = {}
    for name, command in cli.commands.items():
        subcommands = getattr(command, "commands", None)
        if isinstance(subcommands, dict) and subcommands:
            paths.update({f"{name} {sub}": c for sub, c in subcommands.items()})
        else:
            paths[name] = command
    return paths


# cli -> {verb path: "imgedit" or the plugin that made it}, for messages naming a verb's owner
_owners: "weakref.WeakKeyDictionary[Any, dict[str, str]]" = weakref.WeakKeyDictionary()
# cli -> the plugin whose register_commands is running, for record_verb_clash
_adding: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def command_owner(cli: Any, path: str) -> str:
    """Who made the verb ``path`` ("info", "train denoise") of ``cli``:
    "imgedit", a plugin's name, or "" where :func:`register_commands` has
    not recorded it (yet)."""
    return _owners.get(cli, {}).get(path, "")


def register_commands(cli: Any) -> None:
    """Let every plugin add its verbs to ``cli``, one plugin at a time,
    recording which verbs each added (``train inpaint`` for a sub-command of
    a shared group) and any error it raised. A plugin may not replace a verb
    another one (or the host) made: the first is kept and the clash recorded.
    Re-adding the shared verb of an operation (``add_operation_verb``) is
    not a clash: the verb lists every plugin's methods."""
    load_plugins()
    owners = _owners[cli] = {path: "imgedit" for path in _command_paths(cli)}
    added: dict[str, set[str]] = {}  # plugin -> its verbs, over all its implementations of the hook
    for impl in in_load_order(pm.hook.register_commands.get_hookimpls()):
        before, top = _command_paths(cli), dict(cli.commands)
        info = plugin_info(impl.plugin_name)
        _adding[cli] = impl.plugin_name
        try:
            impl.function(cli=cli) if "cli" in impl.argnames else impl.function()
        except PLUGIN_FAILURES as exc:
            info.errors.append(f"register_commands: {error_text(exc)}")
        finally:
            _adding.pop(cli, None)
        after = _command_paths(cli)
        for path, old in before.items():
            new = after.get(path)
            if new is not old and not _same_operation_verb(old, new):
                _put_back(cli, top, path, old)
                info.errors.append(_taken_text(path, owners[path]))
        # the verbs it added: a shared operation verb it re-adds is not its own
        mine = {path for path in _command_paths(cli) if path not in before}
        added.setdefault(impl.plugin_name, set()).update(mine)
        info.commands = sorted(added[impl.plugin_name])
        for path in mine:
            owners[path] = impl.plugin_name


def record_verb_clash(cli: Any, path: str) -> bool:
    """Leave out the verb ``path`` of ``cli`` that the plugin now adding its
    verbs asked for (``add_operation_verb``, ``command_group``) and another
    command holds, as :func:`register_commands` undoes a replaced verb: the
    first is kept, the clash is recorded against the later plugin, naming
    the first, and the later plugin's other verbs still register. False
    outside :func:`register_commands` (a test, an embedding application),
    where no plugin's row can say it: the caller raises. ``cli`` may be a
    group of the one being added to (``train``), as ``command_group`` gives."""
    root, prefix = _adding_root(cli)
    plugin = _adding.get(root)
    if plugin is not None:
        path = prefix + path
        owner = command_owner(root, path)  # "": made by this plugin's hook itself, earlier in this call
        plugin_info(plugin).errors.append(_taken_text(path, owner) if owner else
                                          f"register_commands: verb '{path}' is added twice; kept the first")
    return plugin is not None


def _adding_root(group: Any) -> tuple[Any, str]:
    """The command line :func:`register_commands` is adding to that holds
    ``group``, and ``group``'s path in it ("train "); ``group`` itself and
    "" where none holds it."""
    for root in list(_adding):
        if root is group:
            return root, ""
        for name, command in root.commands.items():
            if command is group:
                return root, f"{name} "
    return group, ""


def _taken_text(path: str, owner: str) -> str:
    return f"register_commands: verb '{path}' belongs to {owner}; kept theirs"


def _same_operation_verb(old: Any, new: Any) -> bool:
    name = getattr(old, "imgedit_operation", None)
    return name is not None and getattr(new, "imgedit_operation", None) == name


def _put_back(cli: Any, top: dict, path: str, command: Any) -> None:
    """Restore ``command`` at ``path`` ("info" or "train inpaint"); ``top``
    is the top level as it was (a plugin may have replaced a whole group)."""
    group, _, sub = path.partition(" ")
    cli.commands[group] = top[group]
    if sub:
        top[group].commands[sub] = command
