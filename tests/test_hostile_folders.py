"""Folders whose contents a stranger controls (a service editing uploads in
place, its journal among them): a link, FIFO or device planted where imgedit
keeps its journal stops the run before any image, and nothing outside the
folder is read, written, created or deleted; an output written over a link
takes neither the mode nor the content of the link's target."""

import json
import os
import stat
import subprocess

import pytest
from PIL import Image

from imgedit.atomic import new_file_mode, write_bytes_atomic
from imgedit.journal import JOURNAL_NAME, LOCK_NAME, SHARDS_NAME

from conftest import run_imgedit, smooth_images, smooth_rgb

DENOISE = ("denoise", "--method", "nlm", "--sigma", "5")


def outputs(folder):
    return sorted(folder.glob("*.denoise.*"))


def test_a_shards_folder_linked_elsewhere_is_refused_and_its_files_neither_read_nor_deleted(invoke, tmp_path):
    uploads, secret = smooth_images(tmp_path / "uploads", count=2), tmp_path / "secret"
    secret.mkdir()
    audit_log = secret / "audit-log.jsonl"
    audit_log.write_text(json.dumps({"dst": "0.denoise.png", "key": "k", "status": "done", "time": 1.0}) + "\n")
    before = audit_log.read_bytes()
    (uploads / SHARDS_NAME).symlink_to(secret)
    result = invoke(*DENOISE, uploads)
    assert result.exit_code == 1
    assert f"{SHARDS_NAME} is a symbolic link" in result.output
    assert audit_log.read_bytes() == before  # was deleted, after being folded into the journal
    assert not outputs(uploads) and not (uploads / JOURNAL_NAME).exists()


@pytest.mark.parametrize("name", [JOURNAL_NAME, LOCK_NAME])
@pytest.mark.parametrize("target", ["victim.txt", "missing"])
def test_a_journal_or_lock_file_that_is_a_link_is_refused_and_its_target_untouched(invoke, tmp_path, name, target):
    uploads, victim = smooth_images(tmp_path / "uploads", count=2), tmp_path / "victim.txt"
    victim.write_text("someone else's file\n")
    (uploads / name).symlink_to(tmp_path / target)
    result = invoke(*DENOISE, uploads)
    assert result.exit_code == 1
    assert f"{name} is a symbolic link: imgedit does not follow links for its journal" in result.output
    assert victim.read_text() == "someone else's file\n"  # records were appended to it
    assert not (tmp_path / "missing").exists()  # the lock file was created there
    assert (uploads / name).is_symlink() and not outputs(uploads)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_a_journal_that_is_a_fifo_is_refused_at_once(tmp_path):
    uploads = smooth_images(tmp_path / "uploads", count=2)
    os.mkfifo(uploads / JOURNAL_NAME)
    try:  # in a child: opened to read, a FIFO waits for a writer for good
        result = run_imgedit(*DENOISE, uploads, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("imgedit waited on a FIFO planted as its journal")
    assert result.returncode == 1
    assert f"{JOURNAL_NAME} is a FIFO" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not outputs(uploads)


def test_an_output_over_a_link_to_a_setuid_program_takes_neither_its_mode_nor_its_content(invoke, tmp_path):
    src, program, out = tmp_path / "in.png", tmp_path / "program", tmp_path / "out"
    Image.fromarray(smooth_rgb()).save(src)
    program.write_bytes(b"\x7fELF a setuid program")
    program.chmod(0o4755)
    out.mkdir()
    (out / "in.png").symlink_to(program)
    result = invoke(*DENOISE, src, "-o", out / "in.png", "--overwrite")
    assert result.exit_code == 0, result.output
    mode = os.lstat(out / "in.png").st_mode
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == new_file_mode()  # a new file's, not the target's 4755
    assert program.read_bytes() == b"\x7fELF a setuid program" and stat.S_IMODE(program.stat().st_mode) == 0o4755


def test_a_replaced_file_keeps_its_permissions_but_not_setuid(tmp_path):
    dest = tmp_path / "a.png"
    dest.write_bytes(b"old")
    dest.chmod(0o4750)
    write_bytes_atomic(dest, b"new")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o750 and dest.read_bytes() == b"new"
