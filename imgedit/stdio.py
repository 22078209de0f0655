"""``-`` for an image verb's input (one image read from stdin) and for its
output (``-o -``: the result written to stdout), so that imgedit can stand in
a shell pipeline (``curl ... | imgedit denoise - | convert - ...``).

A batch works on files (journal, atomic writes, output names), so the image
passes through a private temporary folder, removed when the verb ends; what
the run says names it as ``stdin`` and ``stdout`` (:func:`shown`).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from imgedit.errors import UsageError

STDIO = "-"

#: The standard streams that were closed when the command started (``>&-``):
#: they read and write /dev/null since, which "-" must not take for a pipe.
CLOSED_AT_START: set[str] = set()

_SHOWN: list[tuple[re.Pattern, str]] = []  # a temporary path, and the stream it stands for in messages


def pipes(kwargs: dict[str, Any]) -> tuple[bool, bool]:
    """Whether the verb reads its image from stdin, and writes it to stdout
    (``-o -``, or ``-`` in with no ``-o``: a filter)."""
    from_stdin = STDIO in kwargs["inputs"]
    output = kwargs.get("output")
    return from_stdin, (str(output) == STDIO if output is not None else from_stdin)


def after_interrupt(kwargs: dict[str, Any]) -> Optional[str]:
    """What an interrupted piped run tells the user to do (it keeps no
    journal, and stdin cannot be read again); None where nothing is piped."""
    from_stdin, to_stdout = pipes(kwargs)
    if not (from_stdin or to_stdout):
        return None
    unsent = "nothing was written to stdout; " if to_stdout else ""
    return unsent + ("pipe the image in again" if from_stdin else "run the same command again")


def shown(text: str) -> str:
    """``text`` with the temporary files of a piped run named as the streams they stand for."""
    for pattern, stream in _SHOWN:
        text = pattern.sub(stream, text)
    return text


@contextmanager
def piped(kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``kwargs`` with ``-`` put in files: the image on stdin saved to a
    temporary file as the input, a temporary folder as the output, whose one
    image goes to stdout once the run succeeds. The same ``kwargs`` where
    neither is ``-``.

    Raises:
        UsageError: ``-`` with other inputs, a closed stream or a terminal for
            stdin or stdout, an empty stdin, more than one image to stdout, or
            an option that writes elsewhere (--in-place, --json on stdout).
    """
    from_stdin, to_stdout = pipes(kwargs)
    if not (from_stdin or to_stdout):
        yield kwargs
        return
    _check(kwargs, from_stdin, to_stdout)
    _SHOWN.clear()  # an earlier run's, in the same process
    with ExitStack() as stack:
        changed = dict(kwargs)
        if from_stdin:
            changed["inputs"] = (str(stack.enter_context(stdin_image())),)
        if to_stdout:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="imgedit-stdio-"))
            changed["output"], changed["to_stdout"] = Path(folder) / "out", True
            os.mkdir(changed["output"])  # a folder, not a file named "out"
            out = re.escape(str(changed["output"]))
            _SHOWN.append((re.compile(out + re.escape(os.sep) + r"\.imgedit-journal\.jsonl"), "none (a piped run keeps none)"))
            _SHOWN.append((re.compile(out + r"[^\s'\"]*"), "stdout"))
        yield changed  # the names stay shown so after an error too: the command prints it once this has ended
        if to_stdout and not kwargs.get("dry_run"):
            _send(changed["output"])


@contextmanager
def stdin_image() -> Iterator[Path]:
    """The image on stdin, saved in a private temporary folder for as long as
    the block runs; messages name it ``stdin``.

    Raises:
        UsageError: stdin is closed, a terminal, or empty.
    """
    if "stdin" in CLOSED_AT_START:
        raise UsageError("- reads an image from stdin, which is closed: pipe one in (cat photo.jpg | imgedit ...)")
    if sys.stdin.isatty():
        raise UsageError("- reads an image from stdin, which is a terminal: pipe one in (cat photo.jpg | imgedit ...)")
    with tempfile.TemporaryDirectory(prefix="imgedit-stdio-") as folder:
        source = _save_stdin(Path(folder))
        _SHOWN.append((re.compile(re.escape(str(source))), "stdin"))
        yield source


def _check(kwargs: dict[str, Any], from_stdin: bool, to_stdout: bool) -> None:
    where = "-o - writes the image to stdout" if kwargs.get("output") is not None else "the image goes to stdout"
    if from_stdin and len(kwargs["inputs"]) > 1:
        raise UsageError("- (the image on stdin) must be the only input")
    if from_stdin and kwargs.get("in_place"):
        raise UsageError("--in-place writes over the input file, and stdin has none: give -o FILE")
    if to_stdout and kwargs.get("in_place"):
        raise UsageError("--in-place writes over the input file, -o - to stdout: pick one")
    if to_stdout and kwargs.get("as_json") and not kwargs.get("dry_run"):  # a dry run writes no image: stdout is free
        raise UsageError(f"{where}, where --json would print its summary: pick one, or give -o FILE")
    if to_stdout and not from_stdin:
        from imgedit.inputs import expand_inputs

        found = expand_inputs(kwargs["inputs"], recursive=kwargs.get("recursive", False))
        if len(found) != 1:  # before any work: a folder or a glob of several would be done, then refused
            raise UsageError(f"-o - writes one image to stdout, and the inputs hold {len(found)}: give one file")
    if to_stdout and not kwargs.get("dry_run"):
        if "stdout" in CLOSED_AT_START:
            raise UsageError(f"{where}, which is closed: redirect it (> out.jpg), or give -o FILE")
        if sys.stdout.isatty():
            raise UsageError(f"{where}, which is a terminal: redirect it (> out.jpg) or pipe it, or give -o FILE")


def _save_stdin(folder: Path) -> Path:
    """The image on stdin, streamed to ``folder/stdin.EXT``: EXT as its first
    bytes tell (a transparent PNG is one, so it gives inpaint its hole)."""
    from imgedit.output_plan import ext_of_bytes

    stream = sys.stdin.buffer
    head = stream.read(16)
    if not head:
        raise UsageError("stdin is empty: pipe an image in (cat photo.jpg | imgedit ...)")
    source = folder / f"stdin.{ext_of_bytes(head)}"
    with open(source, "wb") as fh:
        fh.write(head)
        shutil.copyfileobj(stream, fh)
    return source


def _send(folder: Path) -> None:
    """The run's one image, from ``folder`` to stdout."""
    written = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
    if len(written) != 1:  # --samples K as separate files, say
        raise UsageError(f"-o - writes one image to stdout, and this run made {len(written)}: give -o FOLDER")
    with open(written[0], "rb") as fh:
        shutil.copyfileobj(fh, sys.stdout.buffer)
    sys.stdout.buffer.flush()
