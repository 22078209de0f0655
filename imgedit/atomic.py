"""Atomic file writes: a temporary file in the destination's folder, fsynced,
then renamed into place. An interrupted process (even SIGKILL) leaves either
the complete file or nothing at the destination; at worst a hidden
``.NAME.*.tmp`` that :func:`remove_stale_temps_of` clears on the next run
(for a NAME too long for that, ``.START~HASH.*.tmp``: see :func:`temp_stem`)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
import tempfile
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional

from imgedit.errors import UsageError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DestinationExists",
    "NAME_MAX",
    "NO_FOLLOW",
    "flush_to_disk",
    "NO_SPACE",
    "WINDOWS_BAD_CHARS",
    "atomic_file",
    "before_rename",
    "check_name_lengths",
    "check_writable_folder",
    "name_length",
    "name_max",
    "name_too_long",
    "name_windows_refuses",
    "new_file_mode",
    "remove_stale_temps_of",
    "temp_stem",
    "write_bytes_atomic",
]

_umask_cache: list[int] = []

# mkstemp's temporary is ".{stem}.XXXXXXXX{suffix}": the stem, the suffix and these 10 bytes
_TEMP_EXTRA = len(".") + len(".") + 8
_HASH_CHARS = 16  # of sha256: two long names that begin alike never share temporaries
NAME_MAX = 255  # bytes in one file name on the usual file systems
# What no Windows file name holds besides / \ and control characters: ':' names
# a drive or a file's hidden stream, the others are wildcards and redirections
WINDOWS_BAD_CHARS = frozenset('<>:"|?*')
# DOS devices: such a name is the device whatever its extension (con.json is the console)
_WINDOWS_DEVICES = frozenset(["CON", "PRN", "AUX", "NUL"] + [f"{port}{n}" for port in ("COM", "LPT")
                                                              for n in "123456789¹²³"])
# A whole path's limit on Windows where long paths are off (MAX_PATH, its final NUL included)
_WINDOWS_MAX_PATH = 260
# The errnos of a write that failed for want of room: no space left, or the
# user's quota spent (EDQUOT, not on every platform). Freeing some is the fix.
NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
# os.open flags for a file that must be the file itself, opened in place (a
# journal, a training log): a link there fails the open (ELOOP), not followed;
# a FIFO opens at once, not waiting for its other end.
NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


# per thread (each thread has its own context): the writer threads of a batch each set their own
_before_rename: ContextVar[Optional[Callable[[Path], None]]] = ContextVar("imgedit_before_rename", default=None)


class DestinationExists(FileExistsError):
    """The destination exists and overwriting was not allowed."""


def _current_umask() -> int:
    """The process umask, read from /proc at each call where it can be (a
    host application may change it between writes); elsewhere once per
    process, since os.umask can only read it by setting it, which would race
    with other threads creating files."""
    with suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    if not _umask_cache:
        current = os.umask(0o022)
        os.umask(current)
        _umask_cache.append(current)
    return _umask_cache[0]


def new_file_mode(source_mode: Optional[int] = None) -> int:
    """Permission bits a plain ``open(..., "w")`` would give now (mkstemp
    uses 0600), less what ``source_mode`` (the ``st_mode`` of the file, or
    the files, it is made from) withholds from the group and others: a
    private photo's edit is private too, as ``cp`` makes it."""
    mode = 0o666 & ~_current_umask()
    return mode if source_mode is None else mode & (0o600 | source_mode)


def _regular_file(dest: Path) -> Optional[os.stat_result]:
    """``dest``'s lstat where it is a regular file, the file a write replaces
    and takes after; None where there is none (lstat: a link's target may be
    anyone's file, a setuid program)."""
    try:
        info = os.lstat(dest)
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def _replaced_mode(replaced: Optional[os.stat_result], source_mode: Optional[int] = None) -> int:
    """The permission bits for the file that replaces ``replaced`` (see
    :func:`_regular_file`): its own, bar setuid, setgid and sticky (an image
    is no program); else those of a new file, less what ``source_mode`` (the
    file it was made from) withholds from the group and others: a private
    photo's edit is private too, as ``cp`` makes it."""
    if replaced is not None:
        return replaced.st_mode & 0o777
    return new_file_mode(source_mode)


#: macOS copyfile(3)'s flag for extended attributes (Finder tags and comments, "Where from").
_COPYFILE_XATTR = 1 << 2


def _copy_extended_attributes(dest: Path, tmp: str) -> None:
    """Give the file that replaces ``dest``, a regular file, its extended
    attributes: the new file is another inode, and a photo's Finder tags,
    colour label and comment (macOS), or its ``user.*`` attributes (Linux:
    where it was downloaded from), went with the old one. Best effort: a
    file system without them loses nothing it had."""
    if sys.platform == "darwin":
        copyfile = _macos_copyfile()
        if copyfile is not None:
            copyfile(os.fsencode(dest), os.fsencode(tmp), None, _COPYFILE_XATTR)  # best effort: its status unread
        return
    if not hasattr(os, "listxattr"):  # Windows: none to copy this way
        return
    with suppress(OSError):
        for name in os.listxattr(dest, follow_symlinks=False):
            if name.startswith("user."):  # the user's own; security.* and system.* are the system's to set
                with suppress(OSError):
                    os.setxattr(tmp, name, os.getxattr(dest, name, follow_symlinks=False))


@lru_cache(maxsize=1)
def _macos_copyfile() -> Any:
    """macOS's copyfile(3), loaded once; None where it cannot be."""
    import ctypes

    try:
        return ctypes.CDLL("libSystem.B.dylib", use_errno=True).copyfile
    except (OSError, AttributeError):
        return None


def _commit(tmp: str, dest: Path, overwrite: bool) -> None:
    """Moves the finished temporary file into place, never clobbering unless asked."""
    if overwrite:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)  # atomic "create only if absent"
    except FileExistsError:
        if not _same_file(tmp, dest):  # on NFS a link() sent again reports EEXIST for the link its first send made
            raise DestinationExists(str(dest)) from None
    except OSError:  # no hard links on this filesystem: check, then rename
        if os.path.lexists(dest):  # a dangling link too: it names a file the user may yet restore
            raise DestinationExists(str(dest)) from None
        os.replace(tmp, dest)
        return
    os.unlink(tmp)


def _same_file(path: str, other: Path) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.lstat(other))
    except OSError:
        return False


def flush_to_disk(fd: int) -> None:
    """``fsync``, and on macOS ``F_FULLFSYNC``: there a plain fsync leaves the
    data in the drive's own cache, which a power cut loses."""
    full = getattr(fcntl, "F_FULLFSYNC", None) if fcntl is not None else None
    if full is not None:
        try:
            fcntl.fcntl(fd, full)
            return
        except OSError:  # a file system without it (a network share): fsync does what it can
            pass
    os.fsync(fd)


def _fsync_dir(folder: Path) -> None:
    """Makes the rename durable; best effort (not possible on every OS)."""
    with suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def before_rename(callback: Callable[[Path], None]) -> Iterator[None]:
    """Call ``callback(temporary)`` in every :func:`atomic_file` write made
    in this block by this thread, once the data is in the temporary file and
    just before it is renamed into place; if it raises, nothing is renamed.

    A journal records there what is about to appear (the result's own
    hash): a process killed right after the rename leaves a record that
    tells the next run the file already is the result.
    """
    token = _before_rename.set(callback)
    try:
        yield
    finally:
        _before_rename.reset(token)


@contextmanager
def atomic_file(dest: Path, overwrite: bool = True, durable: bool = True,
                source_mode: Optional[int] = None) -> Iterator[BinaryIO]:
    """A binary file to write ``dest`` through: a temporary file beside it,
    renamed into place when the block ends without an exception, removed if
    it raises. A new file's permissions are the umask's, less what
    ``source_mode`` (the ``st_mode`` of the file it is made from) keeps
    from the group and others.

    The rename alone makes the write atomic for other processes and for a
    killed writer; ``durable`` (fsync of the file and its folder) is what makes
    it survive a power cut too, at a few milliseconds per file.

    Raises:
        DestinationExists: ``dest`` exists and ``overwrite`` is False.
        OSError: the file cannot be written.
    """
    dest = Path(dest)
    replaced = _regular_file(dest)  # one lstat for its mode and its attributes
    mode = _replaced_mode(replaced, source_mode)
    stem = temp_stem(dest.name, name_max(dest.parent))
    try:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{stem}.", suffix=".tmp")
    except OSError as exc:  # "Permission denied: '.photo.png.k2j4z1.tmp'" names a file the user never asked for
        why = _past_windows_max_path(exc, dest.parent / f".{stem}.{'X' * 8}.tmp") or exc.strerror
        raise type(exc)(exc.errno, why, str(dest)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            _check_not_cut(handle.fileno())
            if durable:
                flush_to_disk(handle.fileno())
        if replaced is not None:  # before the chmod: a read-only file takes no attributes
            _copy_extended_attributes(dest, tmp)
        with suppress(OSError, NotImplementedError):
            os.chmod(tmp, mode)
        callback = _before_rename.get()
        if callback is not None:
            callback(Path(tmp))
        _commit(tmp, dest, overwrite)
    except BaseException:
        with suppress(OSError):
            if sys.platform == "win32":  # Windows will not delete a read-only file (a read-only output's mode, copied)
                os.chmod(tmp, stat.S_IWRITE)
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(dest.parent)


def _check_not_cut(fd: int) -> None:
    """Raise the file system's error (ENOSPC, EDQUOT, EFBIG) where the file
    may have been cut short for want of room.

    Pillow encodes into a real file with C ``write()`` calls and does not
    check that the last one wrote everything: on a full disk it returns
    with the file cut at a block boundary, and that JPEG would have been
    renamed into place and recorded as done. One byte more, written past
    the end and cut off again, needs a new block there and fails alike; a
    whole file ends inside its last block, where the byte fits (one that
    ends exactly on a block of a full disk is refused too: the next would be)."""
    end = os.fstat(fd).st_size
    try:
        if hasattr(os, "pwrite"):
            os.pwrite(fd, b"\0", end)
        else:  # Windows
            os.lseek(fd, end, os.SEEK_SET)
            os.write(fd, b"\0")
    except OSError as exc:
        if exc.errno in NO_SPACE or exc.errno == errno.EFBIG:
            raise
        return  # a file system that will not take the probe (a FUSE mount): the write stands as it is
    os.ftruncate(fd, end)  # a failure here leaves the byte: the write fails


def name_max(folder: Path) -> int:
    """The longest file name that ``folder``'s file system takes: in bytes on
    most, in UTF-16 units on APFS and exFAT (see :func:`name_length`); either
    way a count of bytes against it (:func:`temp_stem`'s) errs short, never long."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or no answer
        return 255
    return limit if limit and limit > 0 else 255  # -1: "no limit", yet file systems have one


def name_length(name: str) -> tuple[int, str]:
    """The length of the file name ``name`` as this system limits it, and its
    unit: Windows (NTFS) and macOS (APFS, and a FAT or exFAT stick there)
    count UTF-16 units, so 255 CJK characters are a legal name (and a Hangul
    syllable as Finder decomposes it: 9 UTF-8 bytes, 3 units); others count
    UTF-8 bytes."""
    if sys.platform in ("win32", "darwin"):
        return _utf16_units(name), "characters"
    return len(os.fsencode(name)), "bytes"


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _past_windows_max_path(exc: OSError, temporary: Path) -> Optional[str]:
    """Why ``temporary`` could not be made, where it is Windows' limit on
    whole paths (long paths off): an output of 246-259 characters is legal,
    its temporary is not, and Windows says "No such file or directory" of
    a folder that is there. Else None."""
    if sys.platform != "win32" or exc.errno not in (errno.ENOENT, errno.ENAMETOOLONG):
        return None
    if _utf16_units(os.path.abspath(temporary)) < _WINDOWS_MAX_PATH or not os.path.isdir(temporary.parent):
        return None
    return f"path longer than Windows' {_WINDOWS_MAX_PATH}-character limit: enable long paths or use a shorter -o"


def name_too_long(path: "Path | str") -> Optional[str]:
    """What is wrong with ``path`` where one of its names is longer than
    :data:`NAME_MAX` (:func:`name_length`: ``"file name too long: xxx... (300
    bytes; ...)"``), else None. Checked without touching the disk: even a stat
    of such a path fails (ENAMETOOLONG), which would otherwise surface as an
    unexpected error."""
    for part in Path(path).parts:
        size, unit = name_length(part)
        if size > NAME_MAX:
            shown = part if len(part) <= 40 else f"{part[:40]}..."
            return f"file name too long: {shown} ({size} {unit}; a file name holds at most {NAME_MAX})"
    return None


def check_name_lengths(path: "Path | str", what: str) -> None:
    """Refuse ``path`` where :func:`name_too_long` says why, as ``"{what}: file name too long: ..."``.

    Raises:
        UsageError: one of its names is longer than :data:`NAME_MAX` bytes.
    """
    problem = name_too_long(path)
    if problem is not None:
        raise UsageError(f"{what}: {problem}")


def name_windows_refuses(name: str) -> Optional[str]:
    """Why Windows cannot have the file name ``name`` (``"Windows names
    cannot hold :"``), when run there; else None. Such a name fails only
    when its file is written (after a training run), or is another file:
    ``v1:final.json`` is a hidden stream of ``v1``, ``con.json`` the console."""
    if sys.platform != "win32" or name in (".", ".."):
        return None
    bad = sorted(set(name) & (WINDOWS_BAD_CHARS | {"/", "\\"}))
    if bad:
        return f"Windows names cannot hold {' '.join(bad)}"
    if any(ord(char) < 32 for char in name):
        return "Windows names cannot hold control characters"
    if name.endswith((".", " ")):  # Windows drops them: "run 2." would be written as "run 2"
        return "Windows names cannot end in a dot or a space"
    device = name.split(".")[0].rstrip(" ")
    if device.upper() in _WINDOWS_DEVICES:
        return f"Windows keeps the name {device} for a device, with or without an extension"
    return None


def temp_stem(name: str, name_max: int, suffix: str = ".tmp") -> str:
    """The NAME part of ``.NAME.XXXXXXXX.tmp``, the temporary files of ``name``
    (or of ``.NAME.XXXXXXXX{suffix}``, as ``tempfile`` names them).

    It is ``name`` itself where that fits in ``name_max`` bytes; otherwise
    (a legal name of 242-255 bytes) the start of ``name`` and a hash of all
    of it, so that the temporary is legal too and :func:`remove_stale_temps_of`
    still tells whose it is.
    """
    room = name_max - _TEMP_EXTRA - len(os.fsencode(suffix))
    if len(os.fsencode(name)) <= room:
        return name
    digest = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:_HASH_CHARS]
    keep = max(room - len(digest), 0)
    start = name[:keep]
    while len(os.fsencode(start)) > keep:  # bytes, not characters: cut whole UTF-8 characters off
        start = start[:-1]
    return start + digest


def write_bytes_atomic(dest: Path, data: bytes, overwrite: bool = True, durable: bool = True,
                       source_mode: Optional[int] = None) -> None:
    """Writes ``data`` to ``dest`` through :func:`atomic_file`."""
    with atomic_file(dest, overwrite, durable, source_mode) as handle:
        handle.write(data)


def remove_stale_temps_of(folder: Path, names: "set[str]") -> None:
    """Remove the temporary files killed writers of ``folder/NAME`` left
    behind, for every NAME in ``names``; one folder listing, however many."""
    with suppress(OSError):
        with os.scandir(folder) as entries:
            limit = name_max(folder)
            stems = {temp_stem(name, limit) for name in names}  # as atomic_file named them
            for entry in entries:
                name = entry.name
                if name.startswith(".") and name.endswith(".tmp") and name[1:].rsplit(".", 2)[0] in stems:
                    with suppress(OSError):
                        os.unlink(entry.path)


def check_writable_folder(folder: Path, what: str) -> None:
    """Refuse, before the work, an output whose folder could not be written
    (``/proc``, a read-only disk, a file where a folder should be).

    Args:
        folder: the folder the output goes in (it need not exist yet).
        what: the output as the user gave it, e.g. ``"-o frames/"``.

    Raises:
        UsageError: a name in it is too long for any file system, or the
            nearest existing folder above it is a file or cannot be written in.
    """
    check_name_lengths(folder, what)  # before the stats below, which such a name fails
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:  # the folder it would be made in
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{what}: {existing} is a file, not a folder")
    try:  # a real write: permission bits alone say nothing of /proc or a read-only mount
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".imgedit-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{what}: cannot write in {existing} ({exc.strerror or exc})") from None
