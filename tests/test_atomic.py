"""Atomic writes: temporaries beside the destination, within the file
system's name limit, and cleared after a killed writer."""

import os

import pytest

from imgedit.atomic import atomic_file, remove_stale_temps_of, write_bytes_atomic


def name_max(folder):
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        return 255


def long_name(folder, start="L", ending=".png"):
    """A legal name as long as the file system allows (255 bytes on most):
    its temporary can no longer be the name plus 14 bytes."""
    return start * ((name_max(folder) - len(ending)) // len(start.encode())) + ending


def temporaries(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


@pytest.mark.parametrize("start", ["L", "é"])  # é: two bytes; the limit counts bytes, not characters
def test_the_longest_legal_name_can_be_written(tmp_path, start):
    dest = tmp_path / long_name(tmp_path, start)
    with atomic_file(dest) as handle:
        (temporary,) = temporaries(tmp_path)  # hidden, and legal on this file system
        assert temporary.startswith(".") and len(os.fsencode(temporary)) <= name_max(tmp_path)
        handle.write(b"image")
    assert dest.read_bytes() == b"image" and temporaries(tmp_path) == []


def test_a_killed_writers_temporary_of_a_long_name_is_cleared_and_no_one_elses(tmp_path):
    mine, other = long_name(tmp_path, ending="1.png"), long_name(tmp_path, ending="2.png")  # same start
    left_behind = {}
    for name in (mine, other, "short.png"):
        with pytest.raises(KeyboardInterrupt), atomic_file(tmp_path / name):
            (left_behind[name],) = set(temporaries(tmp_path)) - set(left_behind.values())
            raise KeyboardInterrupt
        (tmp_path / left_behind[name]).write_bytes(b"half")  # what a SIGKILL would have left
    assert len(set(left_behind.values())) == 3
    remove_stale_temps_of(tmp_path, {mine})
    assert temporaries(tmp_path) == sorted([left_behind[other], left_behind["short.png"]])
    remove_stale_temps_of(tmp_path, {other, "short.png"})
    assert temporaries(tmp_path) == []


def test_short_names_keep_their_temporaries_name(tmp_path):
    # a temporary left by an older version is still recognised as this one's
    (tmp_path / ".photo.png.k2j4_x8y.tmp").write_bytes(b"half")
    (tmp_path / ".photo.png.notes.k2j4_x8y.tmp").write_bytes(b"someone else's")
    write_bytes_atomic(tmp_path / "photo.png", b"image")
    remove_stale_temps_of(tmp_path, {"photo.png"})
    assert temporaries(tmp_path) == [".photo.png.notes.k2j4_x8y.tmp"]


def test_a_new_file_takes_the_umask_of_the_moment_it_is_written(tmp_path):
    # a host application may change its umask between two writes
    import stat

    before = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "open.png", b"x")
        os.umask(0o077)
        write_bytes_atomic(tmp_path / "private.png", b"x")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "open.png").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.png").stat().st_mode) == 0o600


@pytest.mark.skipif(not hasattr(os, "pwrite"), reason="RLIMIT_FSIZE stands in for a full disk on POSIX")
def test_an_image_cut_short_for_want_of_room_is_never_renamed_into_place(tmp_path):
    # Pillow encodes a JPEG into the file with C write() calls and does not
    # check the last one: on a full disk it returned with the file cut short,
    # and that file was renamed into place and recorded as done. A file-size
    # limit cuts a write short the same way: the write that crosses it writes
    # up to it, and the next fails. One byte short of the whole file, the
    # last write is the one cut, and Pillow says nothing.
    import subprocess
    import sys

    script = """
import resource, signal, sys
import numpy as np
from imgedit.errors import ImageWriteError
from imgedit.imageio import Picture, write_image
from imgedit.imageio.encode import encode
picture = Picture(rgb=np.random.default_rng(0).random((400, 400, 3), dtype=np.float32))
size = len(encode(picture, "JPEG", 95))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
resource.setrlimit(resource.RLIMIT_FSIZE, (size - 1, size - 1))
try:
    write_image(picture, sys.argv[1], quality=95)
except ImageWriteError as exc:
    print("refused:", exc)
"""
    dest = tmp_path / "photo.jpg"
    done = subprocess.run([sys.executable, "-c", script, str(dest)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "photo.jpg: cannot write" in done.stdout
    assert not dest.exists() and list(tmp_path.iterdir()) == []  # neither the cut file nor its temporary


def test_a_durable_write_asks_macos_for_a_full_flush(tmp_path, monkeypatch):
    # there a plain fsync leaves the data in the drive's cache, which a power cut loses
    from types import SimpleNamespace

    from imgedit import atomic

    asked, fsynced = [], []

    def fcntl_call(fd, op):
        asked.append(op)
        if len(asked) > 1:
            raise OSError(22, "not on this file system")

    monkeypatch.setattr(atomic, "fcntl", SimpleNamespace(F_FULLFSYNC=51, fcntl=fcntl_call))
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: fsynced.append(fd))
    atomic.flush_to_disk(7)
    assert asked == [51] and fsynced == []
    atomic.flush_to_disk(7)  # refused (a network share): fsync does what it can
    assert fsynced == [7]
    monkeypatch.setattr(atomic, "fcntl", None)  # Windows
    atomic.flush_to_disk(8)
    assert fsynced == [7, 8]


def test_a_folder_that_refuses_the_temporary_names_the_file_asked_for(tmp_path, monkeypatch, invoke):
    # a read-only output folder said "Permission denied: '.../.small.denoise.png.uar3imet.tmp'"
    import tempfile

    from conftest import smooth_rgb
    from PIL import Image

    def refused(dir, prefix, suffix):
        raise PermissionError(13, "Permission denied", os.path.join(dir, prefix + "uar3imet" + suffix))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError) as error:
        write_bytes_atomic(tmp_path / "out.png", b"x")
    assert error.value.filename == str(tmp_path / "out.png") and error.value.errno == 13
    Image.fromarray(smooth_rgb(16, 16)).save(tmp_path / "small.png")
    result = invoke("denoise", tmp_path / "small.png", "--method", "nlm", "--sigma", "5")
    assert result.exit_code == 1 and ".tmp" not in result.stderr
    assert f"Permission denied: '{tmp_path / 'small.denoise.png'}'" in result.stderr, result.stderr


def test_a_link_sent_again_on_nfs_that_reports_eexist_for_its_own_link_is_a_success(tmp_path, monkeypatch):
    # NFS: the first link() made the link, its reply was lost, the resend found the name taken
    real_link = os.link

    def link_then_eexist(src, dst):
        real_link(src, dst)
        raise FileExistsError(17, "File exists")

    monkeypatch.setattr(os, "link", link_then_eexist)
    write_bytes_atomic(tmp_path / "x.png", b"ours", overwrite=False)
    assert (tmp_path / "x.png").read_bytes() == b"ours" and temporaries(tmp_path) == []
    (tmp_path / "y.png").write_bytes(b"theirs")  # another's file there: still refused, and kept
    monkeypatch.setattr(os, "link", lambda src, dst: (_ for _ in ()).throw(FileExistsError(17, "File exists")))
    with pytest.raises(FileExistsError):
        write_bytes_atomic(tmp_path / "y.png", b"ours", overwrite=False)
    assert (tmp_path / "y.png").read_bytes() == b"theirs" and temporaries(tmp_path) == []


def test_without_hard_links_a_dangling_link_at_the_destination_is_not_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "link", lambda src, dst: (_ for _ in ()).throw(PermissionError(1, "not permitted")))
    (tmp_path / "x.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(FileExistsError):
        write_bytes_atomic(tmp_path / "x.png", b"ours", overwrite=False)
    assert (tmp_path / "x.png").is_symlink() and temporaries(tmp_path) == []


def test_a_replaced_file_keeps_its_extended_attributes(tmp_path):
    # a photo's tags and origin (Finder tags over SMB, xdg.origin.url) went with the old inode
    dest = tmp_path / "a.jpg"
    dest.write_bytes(b"old")
    try:
        os.setxattr(dest, "user.xdg.origin.url", b"https://example.org/a.jpg")
    except (AttributeError, OSError):
        pytest.skip("no user extended attributes here")
    inode = dest.stat().st_ino
    write_bytes_atomic(dest, b"new")
    assert dest.read_bytes() == b"new" and dest.stat().st_ino != inode  # replaced, not rewritten
    assert os.getxattr(dest, "user.xdg.origin.url") == b"https://example.org/a.jpg"
    write_bytes_atomic(tmp_path / "b.jpg", b"new")  # a new file: nothing to keep, and no error
    assert os.listxattr(tmp_path / "b.jpg") == []


def test_on_macos_a_replaced_file_has_copyfile_copy_its_extended_attributes_first(tmp_path, monkeypatch):
    import sys

    import imgedit.atomic as atomic

    calls = []

    def copyfile(src, dst, state, flags):
        calls.append((src, os.stat(dst).st_mode & 0o777, state, flags))  # still writable: before the chmod
        return 0

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(atomic, "_macos_copyfile", lambda: copyfile)
    dest = tmp_path / "a.jpg"
    dest.write_bytes(b"old")
    dest.chmod(0o444)  # a read-only photo: its tags are copied while the new file still takes them
    write_bytes_atomic(dest, b"new")
    write_bytes_atomic(tmp_path / "b.jpg", b"new")  # a new file: nothing to copy
    assert calls == [(os.fsencode(dest), 0o600, None, 1 << 2)] and dest.read_bytes() == b"new"
    assert dest.stat().st_mode & 0o777 == 0o444
