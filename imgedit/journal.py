"""The resume journal: an append-only JSON-lines file in the output folder.

One line per event, keyed by the output path:

    {"dst": "sub/a.png", "key": "<hash>", "status": "start" | "done" | "failed", ...}

``key`` hashes the input's content, the pipeline with its parameters, the
weights' hashes and the output options, so a re-run skips exactly what is
done and redoes what changed. Each line is flushed before the output file is
renamed into place; since writes are atomic, an output that exists with a
"start" line of the same key is complete (the process died between the rename
and the "done" line) and is not redone. A torn last line (SIGKILL mid-write)
is ignored. "done" lines carry the output's size, checked on resume: after a
power cut an output may exist with its data never written (outputs are not
fsynced one by one unless asked), and such a file is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from imgedit.models import sha256_file

JOURNAL_NAME = ".imgedit-journal.jsonl"

file_digest = sha256_file  # the input part of a journal key


def make_key(content_digest: str, recipe: str) -> str:
    """Journal key from the input's digest and the run's recipe string."""
    return hashlib.sha256(f"{content_digest}\n{recipe}".encode()).hexdigest()[:32]


@dataclass
class Entry:
    status: str
    key: str
    error: Optional[str] = None
    replacing: bool = False  # "start" over a file that existed before
    size: Optional[int] = None  # of the output, on "done"


class Journal:
    """Read the previous state of an output folder and append new events."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL_NAME
        self._root = os.path.abspath(self.folder)
        self.entries: dict[str, Entry] = self._read()
        self._fh: Any = None
        self._lock = threading.Lock()  # encoder threads record concurrently

    def _read(self) -> dict[str, Entry]:
        entries: dict[str, Entry] = {}
        if not self.path.is_file():
            return entries
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                    entries[rec["dst"]] = Entry(
                        rec["status"], rec["key"], rec.get("error"), rec.get("replacing", False), rec.get("size")
                    )
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line from a killed run
        return entries

    def _name(self, dst: Path) -> str:
        # abspath, not resolve(): no symlink walk (a dozen syscalls) per image
        absolute = os.path.abspath(dst)
        inside = os.path.relpath(absolute, self._root)
        return absolute if inside.startswith("..") else inside

    def get(self, dst: Path) -> Optional[Entry]:
        return self.entries.get(self._name(dst))

    def owns(self, dst: Path) -> bool:
        """Whether a previous run of imgedit wrote ``dst`` (any key)."""
        return self._name(dst) in self.entries

    def is_done(self, dst: Path, key: str) -> bool:
        """``dst`` holds a complete result for ``key``."""
        entry = self.get(dst)
        if entry is None or entry.key != key:
            return False
        try:
            size = os.stat(dst).st_size
        except OSError:
            return False
        if entry.status == "done":
            return entry.size is None or entry.size == size
        # a "start" without "done" means the rename happened (or not at all):
        # the file is ours and complete, unless it was there before we started
        return entry.status == "start" and not entry.replacing and size > 0

    def record(self, dst: Path, key: str, status: str, **extra: Any) -> None:
        name = self._name(dst)
        line = {"dst": name, "key": key, "status": status, "time": round(time.time(), 3), **extra}
        with self._lock:
            self.entries[name] = Entry(status, key, extra.get("error"), extra.get("replacing", False), extra.get("size"))
            if self._fh is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(json.dumps(line) + "\n")
            self._fh.flush()  # survives SIGKILL of this process (the OS has it)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())  # and a power cut, once per run
            self._fh.close()
            self._fh = None
