"""The ``imgedit`` command. The host adds only ``plugins``, ``models``,
``info`` and ``run`` (pipelines of any plugin's operations); every editing
verb comes from a plugin's ``register_commands``."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import sys
import traceback
import warnings
from typing import Any, Iterator, NoReturn, Optional

import click

from imgedit import __version__, distributed
from imgedit.errors import ImgeditError
from imgedit.helptext import HelpContext, use_help_context
from imgedit.plugins import env_flag, left_out_by_allow_list, plugin_infos
from imgedit.verb_owners import command_owner, register_commands


def _open_closed_standard_streams() -> None:
    """Give a closed stdin, stdout or stderr (``imgedit ... 2>&-``) /dev/null:
    otherwise the next file opened takes its number, and whatever a library
    prints to stderr lands in that file (it was the journal's lock)."""
    closed = []
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(name)
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:  # Python found it closed at start
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))
    from imgedit import stdio  # only now: importing opens its file

    stdio.CLOSED_AT_START.update(closed)  # "-" must not read nothing, or send an image nowhere, and say done


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(_printable(f"{record.levelname.capitalize()}: {record.getMessage()}"), err=True)


def _printable(text: str) -> str:
    """Control characters escaped: messages name files, and a file's name may hold any."""
    from imgedit.progress import printable  # not at the top: importing opens files (see _open_closed_standard_streams)

    return printable(text)


def _setup_logging(debug: bool) -> None:
    log = logging.getLogger("imgedit")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        log.addHandler(_StderrHandler())
    log.setLevel(logging.DEBUG if debug else logging.INFO if env_flag("IMGEDIT_VERBOSE") else logging.WARNING)
    log.propagate = False
    if not getattr(warnings.showwarning, "imgedit_decoding", False):
        warnings.showwarning = _decoding_warnings_logged(warnings.showwarning)


def _decoding_warnings_logged(show: Any) -> Any:
    """``warnings.showwarning`` for the command: a warning Pillow raises
    while a thread decodes a file ("Corrupt EXIF data", "Tag data larger
    than file") is logged at debug level with the file named, not printed
    raw with Pillow's paths; any other is shown by ``show``, as before."""

    def showwarning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        source = sys.modules.get("imgedit.imageio.source")  # not loaded: nothing is decoding
        path = source.decoding_path() if source is not None else None
        if path is None:
            show(message, category, filename, lineno, file, line)
        else:
            logging.getLogger("imgedit").debug("%s: %s while decoding: %s", path, category.__name__,
                                               " ".join(str(message).split()))

    showwarning.imgedit_decoding = True  # type: ignore[attr-defined]
    return showwarning


class OneLineUsageError(click.UsageError):
    """click's usage error in one line, as imgedit's own errors are, the
    pointer to the help at its end: not the usage and a blank line first,
    which a screen reader reads before the error."""

    def show(self, file: Any = None) -> None:
        message = " ".join(self.format_message().split())  # "Choose from:\n\ta,\n\tb." as one line
        helps = self.ctx.command.get_help_option_names(self.ctx) if self.ctx is not None else ()
        if helps:
            message += ("" if message.endswith((".", "?", "!")) else ".")
            message += f" See '{self.ctx.command_path} {max(helps, key=len)}'."
        click.echo(_printable(f"Error: {message}"), file=file, err=file is None)


def _one_line(exc: click.UsageError) -> click.UsageError:
    """``exc`` said in one line, unless it shows itself its own way (the
    help shown for a group given no command, a plugin's own error class)."""
    if type(exc).show is not click.UsageError.show:
        return exc
    one = OneLineUsageError(exc.format_message(), exc.ctx)
    one.exit_code = exc.exit_code
    return one


class ImgeditGroup(click.Group):
    """Turns typed errors into one-line messages and exit codes (2 usage,
    1 failure); a traceback only with ``--debug``."""

    context_class = HelpContext

    def make_context(self, info_name: Optional[str], args: list[str], parent: Optional[click.Context] = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # imgedit's own options: "imgedit --bogus"
            raise _one_line(exc) from None

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        ctx.meta["imgedit.verb_words"] = args[:2]  # "train denoise": whose verb failed, if it fails unexpectedly
        try:
            name, command, rest = super().resolve_command(ctx, args)
        except click.UsageError as exc:  # "No such command": say so where IMGEDIT_LOAD_PLUGINS left its plugin out
            left_out = left_out_by_allow_list()
            if left_out and "Did you mean" not in exc.message:  # a typo of a verb that is there is just that
                exc.message += (f" IMGEDIT_LOAD_PLUGINS={os.environ.get('IMGEDIT_LOAD_PLUGINS', '')!r} left out "
                                f"{', '.join(left_out)}.")
            raise
        if command is not None:
            use_help_context(command)
            if _runs_plugin_verb(self, args, command):  # torch, with Ctrl-C held through its import (devices._ctrl_c_held)
                importlib.import_module("imgedit.devices")
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a verb's: a bad option, a missing argument, no such verb
            raise _one_line(exc) from None
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except distributed.WorkerDone:
            end_finished_worker()
        except ImgeditError as exc:
            if _debug():
                traceback.print_exc()
            if distributed.is_main():
                click.echo(_printable(f"Error: {exc}"), err=True)
            elif not exc.same_in_every_process:  # a usage error, say: rank 0 says it for all
                click.echo(_printable(f"Error (process {distributed.rank()}): {exc}"), err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if distributed.is_main():
                click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except Exception as exc:
            # Windows says EINVAL of a pipe without a reader (CPython issue 79935), and of many other
            # failures (a network share gone): taken for the pipe, those would end a run silently
            if isinstance(exc, BrokenPipeError) and _stdout_gone():
                _quiet_exit_for_closed_stdout(ctx)
            if _debug():
                raise
            click.echo(f"Error: unexpected {type(exc).__name__}{_in_plugin_verb(ctx)}: {exc} "
                       "(run with --debug for details)", err=True)
            ctx.exit(1)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from imgedit.verbs import format_commands  # not at the top: see _printable

        format_commands(self, ctx, formatter)


def _runs_plugin_verb(cli: click.Group, args: list[str], command: Any) -> bool:
    """Whether ``args`` run a plugin's own verb (``train style``), not ask for its help: such a
    verb imports torch itself, where a Ctrl-C in the import's second was lost or broke numpy's.
    An operation's verb (``denoise``) is the host's runner, which imports torch only where an
    image needs computing (a rerun with all done imports none), under the same hold."""
    from imgedit.verb_owners import command_owner

    if getattr(command, "imgedit_operation", None) is not None:
        return False
    owners = {command_owner(cli, " ".join(args[:depth])) for depth in (1, 2)}
    return bool(owners - {"", "imgedit"}) and not {"--help", "-h"} & set(args)


def _in_plugin_verb(ctx: click.Context) -> str:
    """The words " in plugin P's command 'V'" for the verb that ran, where a
    plugin made it; "" for imgedit's own (its bugs are imgedit's to report)."""
    words = ctx.meta.get("imgedit.verb_words", [])
    for path in (" ".join(words[:2]), " ".join(words[:1])):  # a shared group's sub-command, else the verb
        owner = command_owner(ctx.command, path)
        if owner and owner != "imgedit":
            return f" in plugin {owner}'s command '{path}'"
    return ""


def _stdout_gone() -> bool:
    """Whether stdout's reader has gone (``imgedit info ... | head -1``), so
    that another pipe breaking (a worker process) is still reported. The
    kernel flags a pipe without a reader as an error to poll; where poll
    cannot tell, assume stdout, as Python's docs do."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or no descriptor
        return True


def _quiet_exit_for_closed_stdout(ctx: click.Context) -> NoReturn:
    """Exit without a message, as ``cat`` or ``git log`` do when the reader
    stops early. As Python's docs advise, stdout is pointed at devnull so the
    interpreter's last flush cannot fail again; 141 (128 + SIGPIPE) is what
    those tools report to ``set -o pipefail``."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (an in-process test runner)
        pass
    ctx.exit(141)


def end_finished_worker() -> NoReturn:
    """End a training process other than rank 0 with status 0, skipping the
    interpreter's shutdown. Gloo's worker threads outlive
    ``destroy_process_group`` (DistributedDataParallel keeps the group
    alive), and one still releasing the last collective's tensors while the
    interpreter is torn down needs the GIL it can no longer get: the process
    aborts with "terminate called without an active exception" (about 1 run
    in 40 on a busy 2-core machine). Such a process has nothing left to write."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _debug() -> bool:
    return env_flag("IMGEDIT_DEBUG")


@click.group(cls=ImgeditGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imgedit")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
def cli(debug: bool) -> None:
    """imgedit: edit images with pluggable classical and learned operations.

    \b
    Examples:
      imgedit inpaint photo.jpg      # the hole: transparency or photo.mask.png
      imgedit denoise scans/ -o clean/ --sigma auto
      imgedit plugins                # what is installed
    """
    if debug:
        os.environ["IMGEDIT_DEBUG"] = "1"
    _setup_logging(debug)


@cli.command(name="plugins", short_help="List plugins: name, version, hooks, what they add, status.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-v", "--verbose", is_flag=True,
              help="Each operation with its description, parameters and verb (an operation without a verb of its "
                   "own runs in 'imgedit run -p').")
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool, verbose: bool) -> None:
    """List plugins: name, version, hooks, operations, models, latent models, status.

    Exits 1 when a plugin has an error (it failed to load, a hook raised, or
    something it registers was left out), so that it serves as a smoke test
    of an installation; a warning does not fail it.
    """
    from imgedit.registry import get_registry

    registry = get_registry()
    rows = []
    for info in plugin_infos():
        row = info.as_dict()
        operations = sorted((op for op in registry.operations.values() if op.plugin == info.name), key=lambda op: op.key)
        row["operations"] = [op.key for op in operations]
        row["models"] = sorted(m.name for m in registry.models.values() if m.plugin == info.name)
        row["latent_models"] = sorted(m.name for m in registry.latent_models.values() if m.plugin == info.name)
        row["errors"] = row["errors"] + registry.problems.get(info.name, [])
        row["warnings"] = registry.warnings.get(info.name, [])
        row["status"] = "error" if row["errors"] else "ok"
        if verbose:
            row["operation_details"] = [_operation_detail(op, ctx.find_root().command) for op in operations]
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            _print_plugin(row)
        _say_left_out()
    failed = [row["name"] for row in rows if row["errors"]]
    if failed:  # a broken install must fail a packager's smoke test, as `imgedit models` does
        click.echo(f"Error: {len(failed)} of {len(rows)} plugins {'has an error' if len(failed) == 1 else 'have errors'}: "
                   f"{', '.join(failed)}", err=True)
        raise SystemExit(1)


def _print_plugin(row: dict) -> None:
    click.echo(f"{row['name']} {row['version'] or ''} [{row['status']}] ({row['source']})")
    for key in ("hooks", "commands", "operations", "models", "latent_models"):
        if key == "operations" and "operation_details" in row:
            _print_operations(row["operation_details"])
        elif row[key]:
            click.echo(f"  {key}: {', '.join(row[key])}")
    for error in row["errors"]:
        click.echo(f"  error: {error}")
    for warning in row["warnings"]:
        click.echo(f"  warning: {warning}")


def _operation_detail(op: Any, root: click.Group) -> dict:
    """What ``plugins -v`` says of one operation: its description, its
    parameters in brief, and the verb that runs it ("" where only a pipeline does)."""
    verb = root.commands.get(op.name)
    return {"operation": op.key, "description": op.description, "priority": op.priority,
            "params": {p.name: p.summary() for p in op.params},
            "verb": op.name if getattr(verb, "imgedit_operation", None) == op.name else ""}


def _print_operations(details: list[dict]) -> None:
    if details:
        click.echo("  operations:")
    for op in details:
        how = f"imgedit {op['verb']} --method {op['operation'].split('.', 1)[1]}" if op["verb"] \
            else f"no verb: imgedit run -p \"{op['operation']}\""
        click.echo(f"    {op['operation']}: {op['description'] or '(no description)'} ({how})")
        for name, summary in op["params"].items():
            click.echo(f"      {name}: {summary}")


def _say_left_out() -> None:
    """An allow-list that leaves plugins out says so, or an empty
    ``IMGEDIT_LOAD_PLUGINS`` would list nothing and explain nothing."""
    left_out = left_out_by_allow_list()
    if left_out:
        click.echo(f"{len(left_out)} installed plugin{'s' if len(left_out) != 1 else ''} left out by "
                   f"IMGEDIT_LOAD_PLUGINS: {', '.join(left_out)}")


@cli.group(name="models", invoke_without_command=True,
           short_help="List models: weights file, size, sha256, whether it verifies.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def models_command(ctx: click.Context, as_json: bool) -> None:
    """List models: weights file, size, sha256 and whether it verifies.

    \b
    imgedit models remove NAME   # delete a model you trained
    """
    if ctx.invoked_subcommand is not None:
        return
    from imgedit.models import describe, user_models
    from imgedit.registry import get_registry

    specs = list(get_registry().models.values())
    listed = {spec.weights.resolve() for spec in specs}
    # a model you trained under a shipped model's name (the default export) is not the default, but it is yours
    shadowed = [spec for spec in user_models() if spec.weights.resolve() not in listed]
    shipped = get_registry().models
    rows = [describe(spec) for spec in specs] + [
        {**describe(spec), "shadowed_by_shipped": True,
         "option": shipped[spec.name].extra.get("option", "--weights/--model") if spec.name in shipped else "--weights/--model"}
        for spec in shadowed]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_models(rows)
    # An install without its weights (or a tampered file) must fail a packager's smoke test, not pass it.
    failed = [row["name"] for row in rows if not row["verified"]]
    if failed:
        click.echo(f"Error: {len(failed)} of {len(rows)} models do not verify: {', '.join(failed)}", err=True)
        raise SystemExit(1)


@models_command.command(name="remove")
@click.argument("names", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Remove without asking.")
def models_remove_command(names: tuple[str, ...], yes: bool) -> None:
    """Delete models you trained: each one's weights and model card, from
    your weights folder. NAMES are models' names, or their .safetensors
    files where two plugins' models share a name. Shipped models cannot be
    removed, and training runs (their checkpoints) are left alone.
    """
    from imgedit.models import user_models_to_remove

    doomed = user_models_to_remove(names)  # every name checked before anything is deleted
    listing = "\n".join(f"  {spec.name} ({spec.weights})" for spec in doomed)
    if not yes:
        click.confirm(f"Remove {len(doomed)} model{'s' if len(doomed) != 1 else ''}?\n{listing}\n", abort=True, err=True)
    for spec in doomed:
        spec.weights.unlink(missing_ok=True)  # a run beside this one may have removed it first
        spec.card_path.unlink(missing_ok=True)
        click.echo(f"removed {spec.name} ({spec.weights})")


def _print_models(rows: list[dict]) -> None:
    if not rows:
        click.echo("no models registered")
    for row in rows:
        size = f"{row['size_bytes'] / 1e6:.2f} MB" if row["size_bytes"] else "-"
        mark = "verified" if row["verified"] else f"NOT VERIFIED: {row['status']}"
        yours = f" (yours; the shipped model of this name is the default: pass this file to {row['option']})" \
            if row.get("shadowed_by_shipped") else ""
        click.echo(f"{row['name']} ({row['plugin']}) {row['weights']} {size} sha256 {(row['sha256'] or '-')[:16]} {mark}{yours}")


@cli.command(name="info")
@click.argument("images", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Recurse into sub-folders.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_command(images: tuple[str, ...], recursive: bool, as_json: bool) -> None:
    """Show format, size, mode, bit depth and metadata of images.

    IMAGES are files, folders or globs (quoted) as every image verb takes
    them (a folder's images, with -r its sub-folders' too; - for one on stdin). A
    file that cannot be read gets a one-line error on stderr (and, with
    --json, an entry with "path" and "error"); the others are still shown.
    The exit code is 2 where an input does not exist or holds no images (as for every verb),
    else 1 where one could not be read.
    """
    from contextlib import ExitStack

    from imgedit.stdio import STDIO, stdin_image

    with ExitStack() as stack:
        if STDIO in images:  # read once, however often it is named
            stdin = str(stack.enter_context(stdin_image()))
            images = tuple(stdin if image == STDIO else image for image in images)
        _print_info(images, recursive, as_json)


def _print_info(images: tuple[str, ...], recursive: bool, as_json: bool) -> None:
    from imgedit.imageio import describe_image

    rows, exit_code = [], 0
    for path, problem in _info_paths(images, recursive):
        try:
            if problem is not None:
                raise problem
            row = describe_image(path)
        except ImgeditError as exc:  # one bad file must not hide the others
            click.echo(_printable(f"Error: {exc}"), err=True)
            row, exit_code = {"path": path, "error": str(exc)}, max(exit_code, exc.exit_code)
        if as_json:
            rows.append(row)
        elif "error" not in row:  # as it comes: a long listing starts at once
            click.echo(_printable(str(row.get("path"))))
            for key, value in row.items():
                if key != "path":
                    click.echo(_printable(f"  {key}: {value}"))  # text keys and ICC descriptions come from the file
    if as_json:
        from imgedit.progress import json_text  # not at the top: see _printable
        from imgedit.stdio import shown

        for row in rows:  # a name that is not UTF-8 as \xff escapes, not lone surrogates strict readers refuse
            row.update({key: shown(json_text(str(row[key]))) for key in ("path", "error") if key in row})
        click.echo(json.dumps(rows, indent=2, default=str))
    if exit_code:
        raise click.exceptions.Exit(exit_code)


def _info_paths(images: tuple[str, ...], recursive: bool = False) -> Iterator[tuple[str, Optional[ImgeditError]]]:
    """``(path, None)`` for each file to describe, or ``(argument, error)``
    for an argument that names nothing: the error every image verb gives for
    it (imgedit.inputs: "no such file or folder: X", or a glob that matches
    nothing), which is a usage error (exit 2). A folder and a quoted glob
    give their images, as an image verb finds them."""
    from imgedit.inputs import expand_inputs

    seen: set[str] = set()
    for item in images:
        if os.path.lexists(item) and not os.path.isdir(item):  # a file as given (a dangling link: describe_image says)
            if item not in seen:
                seen.add(item)
                yield item, None
            continue
        try:
            found = expand_inputs([item], recursive=recursive)
        except ImgeditError as exc:
            yield item, exc
            continue
        for match in found:
            if str(match.path) not in seen:  # a folder and one of its files, named both: listed once, as verbs take them
                seen.add(str(match.path))
                yield str(match.path), None


def _add_host_commands() -> None:
    from imgedit.verbs import run_command

    cli.add_command(run_command)


# a Ctrl-C from here until the command runs is imgedit.entry's to say
_open_closed_standard_streams()  # before any file is opened
_add_host_commands()
_setup_logging(_debug())  # before the plugins load: their warnings read like every other
register_commands(cli)


def main() -> None:
    """Console-script entry point."""
    _escape_what_stdout_cannot_encode()
    _note_help_stripped(sys.argv[1:])
    cli(prog_name="imgedit")


def _note_help_stripped(args: list[str]) -> None:
    """Under ``python -OO`` (or PYTHONOPTIMIZE=2) the verbs whose help is
    their docstring have none: say why before a help page shows it blank."""
    if sys.flags.optimize >= 2 and (not args or {"-h", "--help"} & set(args)):
        click.echo("note: python -OO (PYTHONOPTIMIZE=2) strips the help texts of the commands that keep theirs "
                   "in docstrings, which then show none: run imgedit without it to read them", err=True)


def _escape_what_stdout_cannot_encode() -> None:
    """A file's name that stdout's encoding cannot hold (``写真.jpg`` into a
    file on a cp1252 Windows console) is written with backslash escapes, as
    stderr's already are, instead of failing the command."""
    with contextlib.suppress(AttributeError, ValueError, OSError):  # not a TextIOWrapper, or closed
        sys.stdout.reconfigure(errors="backslashreplace")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
