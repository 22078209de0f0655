"""``-`` for an image verb's input (one image read from stdin) and for its
output (``-o -``: the result written to stdout), so that imgedit can stand in
a shell pipeline (``curl ... | imgedit denoise - | convert - ...``).

A batch works on files (journal, atomic writes, output names), so the image
passes through a private temporary folder, removed when the verb ends.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from imgedit.errors import UsageError

STDIO = "-"


def pipes(kwargs: dict[str, Any]) -> tuple[bool, bool]:
    """Whether the verb reads its image from stdin, and writes it to stdout
    (``-o -``, or ``-`` in with no ``-o``: a filter)."""
    from_stdin = STDIO in kwargs["inputs"]
    output = kwargs.get("output")
    return from_stdin, (str(output) == STDIO if output is not None else from_stdin)


@contextmanager
def piped(kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``kwargs`` with ``-`` put in files: the image on stdin saved to a
    temporary file as the input, a temporary folder as the output, whose one
    image goes to stdout once the run succeeds. The same ``kwargs`` where
    neither is ``-``.

    Raises:
        UsageError: ``-`` with other inputs, a terminal for stdin or stdout,
            an empty stdin, or an option that writes elsewhere (--in-place,
            --json on stdout).
    """
    from_stdin, to_stdout = pipes(kwargs)
    if not (from_stdin or to_stdout):
        yield kwargs
        return
    _check(kwargs, from_stdin, to_stdout)
    with tempfile.TemporaryDirectory(prefix="imgedit-stdio-") as folder:
        changed = dict(kwargs)
        if from_stdin:
            data = sys.stdin.buffer.read()
            if not data:
                raise UsageError("stdin is empty: pipe an image in (cat photo.jpg | imgedit ...)")
            source = Path(folder) / "stdin"  # no suffix: its format is read from its bytes, as for any such file
            source.write_bytes(data)
            changed["inputs"] = (str(source),)
        if to_stdout:
            changed["output"], changed["to_stdout"] = Path(folder) / "out", True
            os.mkdir(changed["output"])  # a folder, not a file named "out"
        yield changed
        if to_stdout and not kwargs.get("dry_run"):
            _send(changed["output"])


def _check(kwargs: dict[str, Any], from_stdin: bool, to_stdout: bool) -> None:
    if from_stdin and len(kwargs["inputs"]) > 1:
        raise UsageError("- (the image on stdin) must be the only input")
    if from_stdin and sys.stdin.isatty():
        raise UsageError("- reads an image from stdin, which is a terminal: pipe one in (cat photo.jpg | imgedit ...)")
    if to_stdout and kwargs.get("in_place"):
        raise UsageError("--in-place writes over the input file, -o - to stdout: pick one")
    if to_stdout and kwargs.get("as_json"):
        raise UsageError("-o - writes the image to stdout, where --json would print its summary: pick one")
    if to_stdout and not from_stdin:
        item = kwargs["inputs"][0] if len(kwargs["inputs"]) == 1 else None
        if item is None or os.path.isdir(item):
            raise UsageError("-o - writes one image to stdout: give one input file")
    if to_stdout and sys.stdout.isatty() and not kwargs.get("dry_run"):
        raise UsageError("-o - writes the image to stdout, which is a terminal: redirect it (> out.jpg) or pipe it")


def _send(folder: Path) -> None:
    """The run's one image, from ``folder`` to stdout."""
    written = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
    if len(written) != 1:  # --samples K as separate files, say
        raise UsageError(f"-o - writes one image to stdout, and this run made {len(written)}: give -o FOLDER")
    with open(written[0], "rb") as fh:
        shutil.copyfileobj(fh, sys.stdout.buffer)
    sys.stdout.buffer.flush()
