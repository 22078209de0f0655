"""Inputs from someone else (uploads to a service): file names that try to
drive the terminal, and folders of tens of thousands of files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgedit.masks import MaskOptions, find_mask, sidecar_path

ESCAPE = "esc\x1b]0;PWNED\x07.png"  # sets the terminal's title, where printed raw
NEWLINE = "nl\nfake: line.png"  # a line of its own, where printed raw


# ----------------------------------------------------------------- file names
@pytest.fixture
def named_badly(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in (ESCAPE, NEWLINE):
        (folder / name).write_bytes(b"not an image")
    return folder


def test_failing_names_are_printed_escaped_one_line_each(invoke, named_badly, tmp_path):
    result = invoke("denoise", named_badly, "--method", "nlm", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    lines = result.stderr.splitlines()
    for shown in ("esc\\x1b]0;PWNED\\x07.png", "nl\\nfake: line.png"):
        failed = f"failed: {named_badly}/{shown}: not an image (unrecognised file contents)"
        assert failed in lines and f"  {failed[len('failed: '):]}" in lines  # as it fails, and in the summary
    assert not any(line.startswith("fake: line") for line in lines)


def test_a_single_failing_name_is_escaped_in_the_error(invoke, named_badly, tmp_path):
    result = invoke("denoise", named_badly / ESCAPE, "--method", "nlm", "-o", tmp_path / "out.png")
    assert result.exit_code == 1
    shown = f"{named_badly}/esc\\x1b]0;PWNED\\x07.png"
    assert result.stderr == f"Error: {shown}: not an image (unrecognised file contents)\n"


def test_json_keeps_the_names_as_they_are(invoke, named_badly, tmp_path):
    result = invoke("denoise", named_badly, "--method", "nlm", "-o", tmp_path / "out", "--json")
    failures = json.loads(result.stdout)["failures"]
    assert sorted(Path(f["input"]).name for f in failures) == sorted([ESCAPE, NEWLINE])


# ----------------------------------------------------------------- big folders
H, W = 24, 32


def _mask(path: Path) -> None:
    hole = np.zeros((H, W), np.uint8)
    hole[5:10, 5:10] = 255
    Image.fromarray(hole).save(path)


def _settled(folder: Path, hours_ago: float = 1.0) -> None:
    """The folder's mtime in the past: a folder changed just now is listed afresh each time."""
    then = time.time() - hours_ago * 3600
    os.utime(folder, (then, then))


@pytest.fixture
def listings(monkeypatch) -> list[Path]:
    """The folders listed from now on."""
    listed: list[Path] = []
    scandir, listdir = os.scandir, os.listdir

    def counted(real):
        def list_folder(path="."):
            listed.append(Path(path))
            return real(path)
        return list_folder

    monkeypatch.setattr(os, "scandir", counted(scandir))
    monkeypatch.setattr(os, "listdir", counted(listdir))
    return listed


def test_a_mask_folder_is_listed_once_for_a_batch(tmp_path, listings):
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(20):
        _mask(masks / f"p{i}.png")
        (masks / f"other{i}.txt").write_text("x")
    _settled(masks)
    rgb = np.zeros((H, W, 3), np.float32)
    for i in range(20):
        hole, source = find_mask(tmp_path / "in" / f"p{i}.png", rgb, None, MaskOptions(mask=masks))
        assert source == f"mask file p{i}.png" and hole.sum() == 25
    assert listings.count(masks) == 1


def test_sidecars_are_looked_up_in_one_listing_until_the_folder_changes(tmp_path, listings):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(20):
        (photos / f"p{i}.jpg").write_bytes(b"")
    _mask(photos / "p3.mask.png")
    _settled(photos)
    found = [sidecar_path(photos / f"p{i}.jpg") for i in range(20)]
    assert found == [None] * 3 + [photos / "p3.mask.png"] + [None] * 16
    assert listings.count(photos) == 1
    _mask(photos / "p4_mask.PNG")  # a sidecar added: the folder's mtime moves
    _settled(photos, hours_ago=0.5)
    assert sidecar_path(photos / "p4.jpg") == photos / "p4_mask.PNG"
    (photos / "p3.mask.png").unlink()
    _settled(photos, hours_ago=0.25)
    assert sidecar_path(photos / "p3.jpg") is None


def test_a_folder_changed_just_now_is_listed_afresh(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    assert sidecar_path(photos / "a.jpg") is None
    before = photos.stat()
    _mask(photos / "a.mask.png")
    os.utime(photos, ns=(before.st_atime_ns, before.st_mtime_ns))  # added within the same tick of the clock
    assert sidecar_path(photos / "a.jpg") == photos / "a.mask.png"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_a_fifo_given_as_an_image_is_refused_at_once_for_what_it_is(tmp_path):
    # it read as 'is empty (0 bytes)'; reading it would wait for a writer forever
    from conftest import run_imgedit

    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    result = run_imgedit("denoise", fifo, "--method", "nlm", "-o", tmp_path / "out.png", timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith(f"{fifo}: is a FIFO, not an image file")
    assert not (tmp_path / "out.png").exists()
