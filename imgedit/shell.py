"""Quoting for the command lines imgedit suggests in its messages."""

from __future__ import annotations

import os
import shlex
import subprocess

__all__ = ["quote_arg"]


def quote_arg(word: str) -> str:
    """``word`` as one argument of a command line a user pastes: quoted for
    a POSIX shell, or on Windows for cmd.exe, which keeps single quotes as
    part of the word (``'C:\\runs\\a b'`` would name no file)."""
    if os.name == "nt":
        return subprocess.list2cmdline([word])
    return shlex.quote(word)
