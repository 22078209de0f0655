"""The resume journal: an append-only JSON-lines file in the output folder.

One line per event, keyed by the output path:

    {"dst": "sub/a.png", "key": "<hash>", "status": "start" | "done" | "failed" | "withdrawn", ...}

``key`` hashes the input's content (and its mask files', see
:class:`imgedit.journal_keys.JournalKeys`), the pipeline with its parameters, the
weights' hashes and the output options, so a re-run skips exactly what is
done and redoes what changed. Each line is flushed before the output file is
renamed into place ("start" once the result is complete in its temporary
file, see :func:`imgedit.atomic.before_rename`); since writes are atomic, an output that exists with a
"start" line of the same key is complete (the process died between the rename
and the "done" line) and is not redone. A torn last line (SIGKILL mid-write)
is ignored. "done" lines carry the output's size, checked on resume: after a
power cut an output may exist with its data never written (outputs are not
fsynced one by one unless asked), and such a file is redone. An ``--in-place``
run's "start" line also carries ``result_key``, the key of the file about to
be renamed over the input: a rerun after a kill between the rename and the
"done" line finds the photo already edited, and does not edit it twice.
It carries ``result_sha256`` too, the digest of that file's content, which a
rerun with other settings recognises: it skips the photo, which holds the
earlier edit, rather than edit it a second time.

A "start" whose rename was refused, since another run's output of that
name got there first (a run that may not replace it: see
:func:`imgedit.atomic.atomic_file`), is taken back by a "withdrawn" line of
the same key, its time (``start_time``) and its run (``start_run``, since two
runs may start in one millisecond): the output's record is again what
it was before that "start" (see :func:`_fold`). "start" lines carry the size
of the file about to be renamed, so that one left by a run killed before its
"withdrawn" line does not pass another run's file for its own.

"start" and "done" lines name the input the output was made from (``src``,
its path as resolved, and ``src_sha256``, its content's digest): a result of
another photo with the same name (a second input folder, one ``-o``) is not
a rerun's to replace.

Several processes (the Ray engine's actors, on several machines) write one
shard each, ``.imgedit-journal.d/<shard>.jsonl``, never a shared file: one
writer per file is safe on any shared storage. Reading takes the main file
and every shard, in order of the lines' "time"; the driver folds the shards
into the main file with :meth:`Journal.compact`, which also rewrites the main
file with one line per output once most of its lines are superseded (every
``--force`` rerun would otherwise add two lines per image for good).

Several runs may write into one output folder at once (two input folders,
one ``-o``): appending is safe, but folding shards or rewriting the file
under another run would lose its records. Each run holds a shared lock on
``.imgedit-journal.lock`` (:meth:`Journal.hold`); only a run that finds
itself alone, holding it exclusively, compacts.

The folder may hold a stranger's files (a service editing uploads in place):
every journal path is opened without following a link, and anything there
but a regular file (a folder for the shards) stops the run, so that a
planted link, FIFO or device cannot make imgedit write, create or delete a
file elsewhere, hang, or run out of memory.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import json
import os
import stat
import sys
import threading
import time
import unicodedata
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from imgedit.atomic import NO_FOLLOW, flush_to_disk
from imgedit.errors import JournalError
from imgedit.models import sha256_file

JOURNAL_NAME = ".imgedit-journal.jsonl"
SHARDS_NAME = ".imgedit-journal.d"
LOCK_NAME = ".imgedit-journal.lock"
# rewrite the main file when it holds this many times more lines than outputs
# (and at least MIN_REWRITE_LINES): rare enough to cost nothing per run
STALE_FACTOR = 4
MIN_REWRITE_LINES = 1000
# a line longer than this is skipped unread, like a torn one: records are
# under 2 KB, and a planted 1 GB line must not be held in memory
MAX_LINE = 1 << 20
# an input's mtime this close to its record's time (or after it) is not
# trusted to tell it unchanged: file-system clocks tick in up to 2 s (FAT)
RACY_SECONDS = 2.0

file_digest = sha256_file  # the input part of a journal key


def bytes_digest(data: bytes) -> str:
    """:func:`file_digest` of a file already read into memory."""
    return hashlib.sha256(data).hexdigest()


def make_key(content_digest: str, recipe: str) -> str:
    """Journal key from the input's digest and the run's recipe string."""
    return hashlib.sha256(f"{content_digest}\n{recipe}".encode()).hexdigest()[:32]


@dataclass
class Entry:
    status: str
    key: str
    error: Optional[str] = None
    replacing: bool = False  # "start" over a file that existed before
    size: Optional[int] = None  # of the output, on "done"; on "start", of the file about to be renamed there
    result_key: Optional[str] = None  # on "start" and "done" of an --in-place run: the key of the output's own content
    result_sha256: Optional[str] = None  # and the digest of that content: what any later recipe can recognise
    bad_file: bool = False  # on "failed": for the input's own content (corrupt, not an image), not this machine


@dataclass(frozen=True)
class Source:
    """The input an output is made from: its path, as resolved, and the
    digest of its content; and, where known, the file's (size, mtime_ns,
    inode) as it was read, and (from a record) when that was recorded."""

    path: str
    digest: str
    stat: Optional[tuple[int, int, int]] = field(default=None, compare=False)
    recorded: Optional[float] = field(default=None, compare=False)

    @classmethod
    def of_file(cls, path: str, digest: str, stat: Optional[tuple[int, int, int]] = None) -> "Source":
        """The source of a file read now: its path as the journal names it in any locale (see :func:`_as_utf8`)."""
        return cls(_as_utf8(path), digest, stat)

    def fields(self) -> dict[str, Any]:
        """As a record's fields."""
        return {"src": self.path, "src_sha256": self.digest, **({"src_stat": list(self.stat)} if self.stat else {})}

    def same_input(self, other: "Source") -> bool:
        """Whether ``other`` is this input, as a user means it: the same file
        (edited since: its result is redone, as any changed input's is) or
        the same content (its folder moved or renamed since: the content is
        what the result was made from). Another file with other content is
        another photo, though it has the same name."""
        return self.path == other.path or self.digest == other.digest


class Journal:
    """Read the previous state of an output folder and append new events,
    to the main file or, given ``shard``, to that shard alone."""

    def __init__(self, folder: Path, shard: Optional[str] = None):
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL_NAME
        self.shards = self.folder / SHARDS_NAME
        self._write_path = self.path if shard is None else self.shards / f"{shard}.jsonl"
        self._root = os.path.abspath(self.folder)
        self._inside = os.path.join(self._root, "")  # the root with one separator after it
        self._fh: Any = None
        self._lock = threading.Lock()  # encoder threads record concurrently
        # Rereads run one at a time, so a slower, older read never lands after
        # a newer one; and from where the last read of the main file ended
        # (its inode and byte offset), so each reads only what was appended.
        self._reread_lock = threading.Lock()
        self._read_up_to: Optional[tuple[int, int]] = None
        self.entries: dict[str, Entry] = {}
        self.owners: dict[str, str] = {}  # who wrote each output: a failed attempt does not own the file
        self.sources: dict[str, Optional[Source]] = {}
        # each output's "start" lines not yet followed by another status, with what they cover (see _fold)
        self._open_starts: dict[str, list] = {}
        self._lines = self._lines_read = 0  # lines in the files: as last read, and with this run's since
        # on this run's "start" lines, and named by its "withdrawn" ones: two runs of one command on one
        # photo give one key, and may record their starts in one millisecond
        self._run = os.urandom(4).hex()
        self.reread()
        self._run_lock: Optional[int] = None  # the file descriptor of the held LOCK_NAME

    def reread(self) -> None:
        """Read the state from the files again: another run writing into the
        same folder may have finished outputs since. Only the lines appended
        since the last read are read, unless the main file was replaced (a
        compaction) or shards are there; then all of it."""
        with self._reread_lock:
            read_at = time.time()
            if self._read_up_to is not None and not self._shard_paths():
                records, up_to = _read_records(self.path, *self._read_up_to)
                if up_to is not None:  # the same file, grown (or not): apply what is new on top
                    with self._lock:
                        self._apply(records)
                        self._lines = self._lines_read = self._lines_read + len(records)  # this run's lines among them
                    self._read_up_to, self.read_at = up_to, read_at
                    return
            records, up_to = self._records()
            with self._lock:
                self.entries, self.owners, self.sources, self._open_starts = {}, {}, {}, {}
                self._apply(records)
                self._lines = self._lines_read = len(records)
            self._read_up_to, self.read_at = up_to, read_at

    def _apply(self, records: list[dict[str, Any]]) -> None:
        """Records in file order onto the state: each output's last record
        wins, bar a "withdrawn" one (see :meth:`_apply_one`)."""
        for rec in records:
            self._apply_one(_portable(rec["dst"]), rec)

    def _apply_one(self, name: str, rec: dict[str, Any]) -> None:
        """One record onto the state of output ``name``: its entry, and its
        owner and source, which a "failed" line leaves as they were (see :func:`_fold`)."""
        below = (self.entries.get(name), self.owners.get(name), self.sources.get(name))
        wrote = rec["status"] in WROTE
        after = (_entry(rec), _ops(rec) if wrote else below[1], _source(rec) if wrote else below[2])
        state = _fold(self._open_starts, name, rec, below, after)
        if state is _UNCHANGED:
            return
        for table, value in zip((self.entries, self.owners, self.sources), state or (None, None, None)):
            if value is None:
                table.pop(name, None)
            else:
                table[name] = value

    def unread_digest(self, dst: Path, path: str, info: os.stat_result) -> Optional[str]:
        """The digest ``dst``'s record gives its input, where the input
        ``path`` is that file and, by its size, mtime and inode, unchanged
        since it was read: a rerun over thousands of done photos need not
        read them all again. None (read it) where the record says less, or
        where the file's mtime lies within :data:`RACY_SECONDS` of the record,
        so that an edit in the same tick of a coarse clock is not missed."""
        source = self.sources.get(self._name(dst))
        if source is None or source.stat is None or source.recorded is None or source.path != _as_utf8(path):
            return None
        if source.stat != stat_key(info) or info.st_mtime_ns / 1e9 > source.recorded - RACY_SECONDS:
            return None
        return source.digest

    def written_since_read(self, dst: Path) -> bool:
        """Whether ``dst`` changed after the journal was last read, so that
        another run's record of it may be missing: only then is rereading
        worth it (a folder of a user's own files would reread it per file)."""
        try:
            return os.stat(dst).st_mtime >= self.read_at - 1  # a second's slack for coarse file-system clocks
        except OSError:
            return False

    def _shard_paths(self) -> list[Path]:
        """The regular files in the shards folder, a folder of its own: not a
        link to one elsewhere, whose files would be read and deleted."""
        try:
            mode = os.lstat(self.shards).st_mode
        except OSError:
            return []
        if not stat.S_ISDIR(mode):
            raise JournalError(_refusal(self.shards, mode, "a folder"))
        try:
            with os.scandir(self.shards) as entries:
                return sorted(Path(e.path) for e in entries
                              if Path(e.name).suffix == ".jsonl" and e.is_file(follow_symlinks=False))
        except OSError:
            return []

    def _records(self) -> tuple[list[dict[str, Any]], Optional[tuple[int, int]]]:
        """The main file's records in file order, then the shards', all
        stably sorted by time when there are shards (one file is in order);
        and, without shards, where the main file's next read may start."""
        shards = self._shard_paths()
        records, up_to = _read_records(self.path)
        if shards:
            records = sorted(records + [rec for path in shards for rec in _read_lines(path)], key=_time)
        return records, None if shards else up_to

    def _name(self, dst: Path) -> str:
        # abspath, not resolve(): no symlink walk (a dozen syscalls) per image
        absolute = os.path.abspath(dst)
        if absolute.startswith(self._inside):  # the usual case, without relpath's splitting of both paths
            return _portable(_as_utf8(absolute[len(self._inside):]))
        try:
            inside = os.path.relpath(absolute, self._root)
        except ValueError:  # another drive on Windows: named as any output outside the folder is
            return _portable(absolute)
        return _portable(_as_utf8(absolute if inside.startswith("..") else inside))

    def get(self, dst: Path) -> Optional[Entry]:
        return self.entries.get(self._name(dst))

    def owns(self, dst: Path, ops: str, source: Optional[Source] = None) -> bool:
        """Whether a previous run of imgedit wrote ``dst`` with the same
        operations (``ops``; any parameters or weights) from the same input
        (``source``; see :meth:`Source.same_input`): a rerun redoes what
        changed, but the result of another pipeline (a denoised photo where
        an inpainted one goes) or of another photo (``d01/a.png``'s where
        ``d00/a.png``'s went) is not this run's to replace, nor is a file a
        run only failed to write over. Records that do not name their input
        (older journals) are taken as this input's, as they were before."""
        if self.owner(dst) not in ("", ops):
            return False
        made_from = self.source_of(dst)
        return source is None or made_from is None or made_from.same_input(source)

    def source_of(self, dst: Path) -> Optional[Source]:
        """The input the run that wrote ``dst`` made it from, if its record says."""
        return self._landed(dst)[2]

    def result_source(self, path: Path) -> Optional[Source]:
        """The input a run made ``path`` from, where the journal records
        ``path`` as that run's output and it still is (its recorded size);
        None where it records no such thing, names no input (older
        journals), or the run only failed to write there."""
        entry, _, source = self._landed(path)  # a stat only where a start is open: a scan asks this of every file
        if entry is None or entry.status not in WROTE or source is None:
            return None
        return source if _still_there(path, entry) else None

    def owner(self, dst: Path) -> Optional[str]:
        """The operations of the run that wrote ``dst`` ("" if its journal
        did not keep them), or None if no run of imgedit wrote it."""
        return self._landed(dst)[1]

    def _landed(self, dst: Path) -> tuple[Optional[Entry], Optional[str], Optional[Source]]:
        """``dst``'s entry, owner and source, passing over the open "start"
        lines whose file is not there (not the size they recorded): a run
        killed between a refused rename and its "withdrawn" line did not
        write what is there, and its rerun must not take it for its own."""
        name = self._name(dst)
        state = (self.entries.get(name), self.owners.get(name), self.sources.get(name))
        stack = list(self._open_starts.get(name) or ())  # a copy: encoder threads record meanwhile
        if not stack:  # the usual case: no stat
            return state
        try:
            size: Optional[int] = os.stat(dst).st_size
        except OSError:
            size = None
        for _, below in reversed(stack):
            entry = below and below[0]
            if entry is None or entry.status != "start" or entry.size in (None, size):
                return below or (None, None, None)
        return None, None, None

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
        # or is not the size of ours (another run's, which won the rename)
        return entry.status == "start" and not entry.replacing and size > 0 and entry.size in (None, size)

    def holds_earlier_edit(self, dst: Path, digest: str) -> Optional[str]:
        """The operations of the ``--in-place`` run whose result ``dst``
        holds now (``digest``: its content's), whatever recipe that run had
        ("" if its journal did not keep them); None: not such a result."""
        entry = self.get(dst)
        if entry is None or entry.status not in WROTE or entry.result_sha256 != digest:
            return None
        return self.owner(dst) or ""

    def holds_result(self, dst: Path, key: str) -> bool:
        """``dst``, written over its input (``--in-place``), already holds
        this recipe's result: ``key`` is of the file as it is now, and a run
        recorded its output's key, on "done" or, killed before that, on the
        "start" it wrote before the rename. A rerun after Ctrl-C or SIGKILL
        must not edit the edited photos a second time."""
        entry = self.get(dst)
        return entry is not None and entry.status in WROTE and entry.result_key == key and _still_there(dst, entry)

    def record(self, dst: Path, key: str, status: str, **extra: Any) -> float:
        """Append a line for ``dst``, and take it into the state; its "time",
        which a "withdrawn" line names its "start" by (``start_time``, with
        ``start_run``: this run's token, which "start" lines carry as ``run``)."""
        name = self._name(dst)
        line = {"dst": name, "key": key, "status": status, "time": round(time.time(), 3), **extra}
        if status in ("start", WITHDRAWN):
            line["run" if status == "start" else "start_run"] = self._run
        with self._lock:
            self._apply_one(name, line)
            try:
                if self._fh is not None and os.fstat(self._fh.fileno()).st_nlink == 0:
                    self._drop_handle()  # the file was deleted (the output folder removed mid-run): start it again
                    self._fh = _open_append(self._write_path)
                    self._fh.writelines(json.dumps(rec) + "\n" for rec in self._snapshot())
                if self._fh is None:
                    self._fh = _open_append(self._write_path)
                self._fh.write(json.dumps(line) + "\n")
                self._fh.flush()  # survives SIGKILL of this process (the OS has it)
            except OSError as exc:
                self._drop_handle()
                raise JournalError(f"cannot write the resume journal {self._write_path} ({exc.strerror or exc}); "
                                   "stopped, so that a rerun knows what was done") from None
            self._lines += 1
        return line["time"]

    def _snapshot(self) -> list[dict[str, Any]]:
        """The state as records, one per output: what a journal deleted under
        a run is started again with, so the outputs written are not lost to
        the next run."""
        now = round(time.time(), 3)
        records = []
        for name, entry in self.entries.items():
            rec = {"dst": name, "key": entry.key, "status": entry.status, "time": now, "error": entry.error,
                   "replacing": entry.replacing, "size": entry.size, "result_key": entry.result_key,
                   "result_sha256": entry.result_sha256, "bad_file": entry.bad_file or None}
            if entry.status in WROTE and name in self.owners:
                rec["ops"] = self.owners[name]
            if entry.status in WROTE and self.sources.get(name) is not None:
                rec.update(self.sources[name].fields())
            records.append({k: v for k, v in rec.items() if v is not None})
        return records

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.flush()
                flush_to_disk(self._fh.fileno())  # and a power cut, once per run
            except OSError as exc:
                raise JournalError(f"cannot write the resume journal {self._write_path} ({exc.strerror or exc})") from None
            finally:
                self._drop_handle()

    def _drop_handle(self) -> None:
        """Close the file without writing what is buffered: after a failed
        write, closing would only fail again with the same error."""
        fh, self._fh = self._fh, None
        if fh is not None:
            with suppress(OSError):
                fh.close()

    def hold(self) -> bool:
        """Hold the folder's run lock (shared) until :meth:`release`,
        folding in shards and rewriting first if no other run holds it;
        whether it was alone (False: another run writes here too)."""
        if self._run_lock is None:
            self._run_lock = _open_lock(self.folder)
            return self.compact_if_alone()
        return True

    def compact_if_alone(self) -> bool:
        """:meth:`compact` if no other run holds the folder's lock; then
        (back to) holding it shared. Whether it was alone."""
        if self._run_lock is None:
            self.compact()
            return True
        alone = _try_lock(self._run_lock, exclusive=True)
        if alone:
            self.compact()
        _try_lock(self._run_lock, exclusive=False, wait=True)
        return alone

    def release(self) -> None:
        """Close the journal and let go of the run lock."""
        self.close()
        if self._run_lock is not None:
            os.close(self._run_lock)  # closing the descriptor drops the lock, as a killed process's does
            self._run_lock = None

    def compact(self) -> None:
        """Append the shards' records to the main file and remove the shards;
        then, if most of the main file's lines are superseded, rewrite it
        with each output's last record alone.

        Only the process that owns the run calls this, when no one else is
        writing: before a run's workers start and after they have all
        returned. Shards then hold only records newer than the main file's.
        A crash before the shards are removed leaves records in both places;
        read twice, they give the same state. The rewrite is atomic: a crash
        leaves the old file or the new one.
        """
        shards = self._shard_paths()
        if shards:
            records = sorted((rec for path in shards for rec in _read_lines(path)), key=_time)
            with self._lock:
                self._close()
                with _open_append(self.path) as fh:
                    fh.writelines(json.dumps(rec) + "\n" for rec in records)
                    fh.flush()
                    flush_to_disk(fh.fileno())
            for path in shards:
                path.unlink()
            with suppress(OSError):
                self.shards.rmdir()
        if self._lines >= max(MIN_REWRITE_LINES, STALE_FACTOR * len(self.entries)):
            self._rewrite()

    def _rewrite(self) -> None:
        """The main file with the lines each output's state rests on
        (:func:`_tails`): mostly one, its last record."""
        from imgedit.atomic import write_bytes_atomic

        kept = _tails(self._records()[0])  # only the main file is left now
        text = "".join(json.dumps(rec) + "\n" for rec in kept)
        with self._lock:
            self._close()
            write_bytes_atomic(self.path, text.encode("utf-8"))
            self._lines = self._lines_read = len(kept)


@contextmanager
def alone_in(folder: Optional[Path]) -> Iterator[bool]:
    """Whether no run holds ``folder``'s run lock (see :meth:`Journal.hold`);
    if none does, it is held exclusively until the block ends, so that no
    run starts writing there meanwhile. True where no run could hold it
    (``folder`` None or missing); False where the lock cannot be opened:
    what is done only when alone (clearing temporaries) can wait.

    Raises:
        JournalError: the lock file is a link, FIFO, device or folder.
    """
    if folder is None or not os.path.isdir(folder):
        yield True
        return
    try:
        fd = _open_lock(Path(folder))
    except OSError:
        yield False
        return
    try:
        yield _try_lock(fd, exclusive=True)
    finally:
        os.close(fd)  # drops the lock


def _open_lock(folder: Path) -> int:
    """The folder's lock file, opened (and created, with the umask's
    permissions as the journal's: a folder a group shares is the group's to
    run in). Another user's, which this one cannot write, is opened to read:
    a lock needs no more."""
    path = folder / LOCK_NAME
    try:
        return _open_regular(path, os.O_RDWR | os.O_CREAT)
    except PermissionError:
        if not os.path.lexists(path):
            raise
        return _open_regular(path, os.O_RDONLY)


def _try_lock(fd: int, exclusive: bool, wait: bool = False) -> bool:
    """Take (or convert to) a shared or exclusive ``flock`` on ``fd``;
    whether it was taken. Where the OS or the file system has no such
    locks (Windows, some network mounts), every run counts as alone."""
    try:
        import fcntl
    except ImportError:
        return True
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(fd, mode)
    except BlockingIOError:
        return False  # another run holds it
    except OSError as exc:
        # NFS emulates flock with byte-range locks, and an exclusive one needs the file open to write:
        # another user's lock, opened to read (_open_lock), cannot tell, so count another run as there
        if exclusive and exc.errno in (errno.EBADF, errno.EACCES):
            return False
        return True  # no locks on this file system (ENOLCK): as before there were locks
    return True


# A journal on a disk that Windows and macOS or Linux share names its outputs
# alike on each: "/" between folders (Windows' "\\" read as "/": no Windows
# name holds one), and on macOS in NFC, as typed, whatever form Finder stored.
_SEP = os.sep
_TO_NFC = sys.platform == "darwin"
# Paths are decoded otherwise where the locale is not UTF-8 (see _as_utf8)
_BYTES_NAMES = os.name == "posix" and codecs.lookup(sys.getfilesystemencoding()).name != "utf-8"


def _as_utf8(path: str) -> str:
    """A path as Python names it in a UTF-8 locale: its bytes read as UTF-8,
    whatever this locale decoded them as (a cron job's C locale with
    PYTHONUTF8=0), so that the journal's names are the same in every locale."""
    return os.fsencode(path).decode("utf-8", "surrogateescape") if _BYTES_NAMES else path


def _portable(name: str) -> str:
    """An output's name as the journal keys it (see :data:`_SEP`)."""
    name = _escapes_as_utf8(name)  # first: what the escapes spell may need NFC too
    if _SEP != "/":
        name = name.replace(_SEP, "/")
    if _TO_NFC:
        name = unicodedata.normalize("NFC", name)
    return name


def _escapes_as_utf8(name: str) -> str:
    """``name`` with the lone surrogates of UTF-8 bytes read as what they
    spell: imgedit before 2026-12-07 journaled names as a non-UTF-8 locale
    (a cron job's C locale) decoded them, 'été.png' as '\\udcc3\\udca9t...',
    and its journals must still name those files (see :func:`_as_utf8`)."""
    if name.isascii():  # nearly every name: no work
        return name
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no decoding makes: kept as it is
        return name


def _still_there(path: Path, entry: Entry) -> bool:
    """Whether the file ``entry`` records is at ``path``, of the size it
    recorded where it recorded one (older "start" lines do not): gone or cut since, it is not."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return False
    return entry.size is None or size == entry.size


def _entry(rec: dict[str, Any]) -> Entry:
    return Entry(rec["status"], rec["key"], rec.get("error"), rec.get("replacing", False), rec.get("size"),
                 rec.get("result_key"), rec.get("result_sha256"), rec.get("bad_file") is True)


WROTE = ("start", "done")  # the statuses of a run that wrote (or was writing) the output
WITHDRAWN = "withdrawn"  # of a "start" whose rename was refused: another run's output got there first


_UNCHANGED = object()  # what _fold returns for a line that changes nothing


def _fold(open_starts: dict[str, list], name: str, rec: dict[str, Any], below: Any, after: Any) -> Any:
    """One record onto the open "start" lines of output ``name``, as the
    journal's state and its rewrite both read them: ``below`` is the
    output's state before ``rec`` (None: no record), ``after`` its state if
    ``rec`` is the last record. Returns the state to take, or _UNCHANGED.

    A "start" stays open until another status of its output comes, kept with
    the state under it. A "withdrawn" line (its start's key, ``start_time``
    and ``start_run``) takes its start out wherever it lies among the open ones
    (three runs withdraw in any order), and the output's state is the last
    open start's again, or, none left, what the first covered. A line met
    twice (a reread takes up this run's own lines) changes nothing the second time."""
    stack = open_starts.get(name)
    status = rec["status"]
    if status == WITHDRAWN:
        tag = (rec["key"], rec.get("start_time"), rec.get("start_run"))
        at = next((i for i in range(len(stack) - 1, 0, -1) if _names_start(tag, stack[i][0])), None) if stack else None
        if at is None:
            return _UNCHANGED
        del stack[at]
        if len(stack) == 1:
            del open_starts[name]
        return stack[-1][1]
    if status == "start":
        tag = (rec["key"], _time(rec), rec.get("run"))
        if stack is None:
            stack = open_starts[name] = [(None, below)]
        elif any(open_tag == tag for open_tag, _ in stack):
            return _UNCHANGED
        stack.append((tag, after))
        return after
    open_starts.pop(name, None)
    return after


def _names_start(withdrawn: tuple, start: tuple) -> bool:
    """Whether a "withdrawn" line's (key, start time, run) names an open
    start's (key, time, run); where either names no run (written before
    runs were named), the key and time decide."""
    return withdrawn[:2] == start[:2] and (withdrawn[2] == start[2] or None in (withdrawn[2], start[2]))


def _tails(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records each output's state rests on, as :meth:`Journal._apply_one`
    reads them, in file order (read in another, one output's lines could
    change places: a clock set back between them): its last record (and
    under a last "failed", the last record that wrote it, which names its
    owner and source), and under its open "start" lines what they cover. A
    "start" and its "withdrawn" leave neither. Each is given with its
    ``dst`` as :func:`_portable` names it."""
    open_starts: dict[str, list] = {}
    state: dict[str, tuple] = {}  # name -> (last record, last record that wrote the output)
    for rec in records:
        name = _portable(rec["dst"])
        below = state.get(name)
        after = (rec, rec if rec["status"] in WROTE else below and below[1])
        now = _fold(open_starts, name, rec, below, after)
        if now is _UNCHANGED:
            continue
        if now is None:
            state.pop(name, None)
        else:
            state[name] = now
    kept: list[dict[str, Any]] = []
    for name in {*state, *open_starts}:
        stack = open_starts.get(name, [(None, state.get(name))])
        base = stack[0][1]
        kept += ([] if base is None else _unique(base[1], base[0])) + [frame[1][0] for frame in stack[1:]]
    line_of = {id(rec): at for at, rec in enumerate(records)}  # every record is alive in ``records``: ids are unique
    return [{**rec, "dst": _portable(rec["dst"])} for rec in sorted(kept, key=lambda rec: line_of[id(rec)])]


def _unique(*records: Optional[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` without None and without the same record twice, in order."""
    kept: list[dict[str, Any]] = []
    for rec in records:
        if rec is not None and not any(rec is other for other in kept):
            kept.append(rec)
    return kept


def _source(rec: dict[str, Any]) -> Optional[Source]:
    """The input a record's output was made from; None where it does not say."""
    path, digest, stat_ = rec.get("src"), rec.get("src_sha256"), rec.get("src_stat")
    if not (isinstance(path, str) and isinstance(digest, str)):
        return None
    path = _escapes_as_utf8(path)
    known = isinstance(stat_, list) and len(stat_) == 3 and all(type(n) is int for n in stat_)
    return Source(path, digest, tuple(stat_) if known else None, _time(rec))


def stat_key(info: os.stat_result) -> tuple[int, int, int]:
    """What tells a file unchanged without reading it: (size, mtime_ns, inode)."""
    return info.st_size, info.st_mtime_ns, info.st_ino


def _ops(rec: dict[str, Any]) -> str:
    """The operations a record's run wrote with; "" where journals did not keep them."""
    ops = rec.get("ops")
    return ops if isinstance(ops, str) else ""


def _time(rec: dict[str, Any]) -> float:
    return rec.get("time", 0.0)


def _is_record(rec: Any) -> bool:
    """A line this module could have written; anything else (hand-edited,
    another program's) is skipped like a torn line."""
    return (isinstance(rec, dict) and all(isinstance(rec.get(name), str) for name in ("dst", "key", "status"))
            and isinstance(_time(rec), (int, float)) and not isinstance(_time(rec), bool))


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The well-formed records of one journal file; torn or undecodable lines are skipped."""
    return _read_records(path)[0]


def _read_records(path: Path, inode: Optional[int] = None,
                  offset: int = 0) -> tuple[list[dict[str, Any]], Optional[tuple[int, int]]]:
    """The well-formed records of a journal file from byte ``offset`` on,
    and (inode, offset) just past its last complete line, where the next
    read may start: a line still being written is left for it. Given the
    ``inode`` of an earlier read, a replaced or shortened file gives
    ``([], None)`` (read it whole again); a missing file gives no records.

    Raises:
        JournalError: ``path`` is a link, FIFO, device or folder.
    """
    records: list[dict[str, Any]] = []
    try:
        fd = _open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return records, None
    with open(fd, "rb") as fh:  # decoded line by line: one bad byte must not hide the other lines
        info = os.fstat(fh.fileno())
        if inode is not None and (info.st_ino != inode or info.st_size < offset):
            return [], None
        fh.seek(offset)
        end = offset
        for line, size in _lines(fh):
            if line is None:
                end += size  # not a record, even unfinished: a writer ends it with a newline before appending
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError is one too
                if not line.endswith(b"\n"):
                    break  # still being written: the next read takes it whole
                end += len(line)
                continue  # a torn line from a killed run, or bytes that are not UTF-8
            end += len(line)  # whole, with or without its newline (a writer killed just before it)
            if _is_record(rec):
                records.append(rec)
        return records, (info.st_ino, end)


def _lines(fh: Any) -> Iterator[tuple[Optional[bytes], int]]:
    """The lines of ``fh`` from where it stands, each with its size in bytes;
    a line longer than :data:`MAX_LINE` comes as None, read and dropped in
    pieces, so that a huge one costs no more memory than a piece."""
    while True:
        line = fh.readline(MAX_LINE + 1)
        if len(line) <= MAX_LINE:
            if not line:
                return
            yield line, len(line)
            continue
        size = len(line)
        while not line.endswith(b"\n"):
            line = fh.readline(1 << 16)  # the rest is dropped: small pieces
            if not line:
                break
            size += len(line)
        yield None, size


def _open_regular(path: Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` of a journal or lock file that refuses anything but a
    regular file. The lstat first says what is there; a link put there
    after it fails the open (O_NOFOLLOW), a FIFO or device the fstat.

    Raises:
        JournalError: ``path`` is a link, FIFO, device or folder.
    """
    _refuse_unless_regular(path)
    # a FIFO opens at once, then is refused; Windows has neither flag: the lstat before the open stands alone
    fd = os.open(path, flags | NO_FOLLOW, mode)  # O_NONBLOCK is no matter to a regular file
    try:
        _refuse_unless_regular(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refuse_unless_regular(path: Path, info: Optional[os.stat_result] = None) -> None:
    """Raise JournalError where ``path`` (as ``info`` says, else as its lstat
    does) is there and is not a regular file."""
    if info is None:
        try:
            info = os.lstat(path)
        except OSError:
            return  # missing (it is created) or unreachable: the open says why
    if not stat.S_ISREG(info.st_mode):
        raise JournalError(_refusal(path, info.st_mode, "a regular file"))


def _refusal(path: Path, mode: int, wanted: str) -> str:
    """One line for a journal path that is not ``wanted``: what it is instead, and what to do."""
    if stat.S_ISLNK(mode):
        return f"{path} is a symbolic link: imgedit does not follow links for its journal; remove it"
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a file"))
    what = next((name for test, name in kinds if test(mode)), "not a file")
    return f"{path} is {what}: imgedit keeps its journal there in {wanted}; remove it"


def _open_append(path: Path) -> Any:
    """Open a journal file for appending, first ending a line torn by a
    killed writer so the next record is not glued onto it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size > 0:
            os.lseek(fd, size - 1, os.SEEK_SET)
            if os.read(fd, 1) != b"\n":
                os.write(fd, b"\n")  # O_APPEND: at the end, wherever the offset is
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "a", encoding="utf-8")
