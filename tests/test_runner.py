"""The batch runner: resume journal, kill safety, bounded queues, pipelines,
dry runs and the Python API."""

import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

import imgedit
from imgedit.errors import BatchError, UsageError
from imgedit.journal import JOURNAL_NAME
from imgedit.runner import _bounded_map

from conftest import fake_distribution, interruptible, run_imgedit, smooth_rgb

SLOW_PLUGIN = """
import time
from imgedit import hookimpl
from imgedit.operations import Operation, Param

def create(context, seconds=0.2):
    def apply(image, mask):
        time.sleep(seconds)
        return 1.0 - image
    return apply

@hookimpl
def register_operations(register):
    register(Operation("slow", "sleep", create, params=(Param("seconds", float, 0.2),)))
"""


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(smooth_rgb(seed=i)).save(src / ("sub" if i == 3 else ".") / f"img{i}.png")
    return src


def summary_of(result):
    return json.loads(result.stdout)


def test_rerun_skips_done_and_redoes_changed(invoke, folder, tmp_path):
    out = tmp_path / "out"
    first = invoke("denoise", folder, "-r", "--sigma", "5", "-o", out, "--json")
    assert first.exit_code == 0, first.output
    assert summary_of(first)["done"] == 4 and (out / JOURNAL_NAME).exists()
    again = summary_of(invoke("denoise", folder, "-r", "--sigma", "5", "-o", out, "--json"))
    assert again["done"] == 0 and again["skipped"] == 4
    Image.fromarray(smooth_rgb(seed=9)).save(folder / "img1.png")  # content changed
    changed = summary_of(invoke("denoise", folder, "-r", "--sigma", "5", "-o", out, "--json"))
    assert changed["done"] == 1 and changed["outputs"][0]["input"].endswith("img1.png")
    other_params = summary_of(invoke("denoise", folder, "-r", "--sigma", "7", "-o", out, "--json"))
    assert other_params["done"] == 4  # a different pipeline is a different result
    forced = summary_of(invoke("denoise", folder, "-r", "--sigma", "7", "-o", out, "--json", "--force"))
    assert forced["done"] == 4


def test_output_lost_in_a_power_cut_is_redone(invoke, folder, tmp_path):
    out = tmp_path / "out"
    assert invoke("denoise", folder, "--sigma", "5", "-o", out).exit_code == 0
    (out / "img0.png").write_bytes(b"")  # renamed into place, data never reached the disk
    again = summary_of(invoke("denoise", folder, "--sigma", "5", "-o", out, "--json"))
    assert again["done"] == 1 and again["outputs"][0]["input"].endswith("img0.png")
    assert Image.open(out / "img0.png").size == (64, 48)


def test_outputs_fsynced_only_when_asked(invoke, folder, tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    assert invoke("denoise", folder, "--sigma", "5", "-o", tmp_path / "fast").exit_code == 0
    once = len(synced)
    assert once <= 1  # the journal, when the run ends
    assert invoke("denoise", folder, "--sigma", "5", "-o", tmp_path / "durable", "--fsync").exit_code == 0
    assert len(synced) - once >= 2 * 3  # each of 3 files and its folder


def test_temporaries_of_a_killed_writer_are_cleared(invoke, folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".img0.png.k2j4_x.tmp"
    stale.write_bytes(b"half a png")
    unrelated = out / ".notes.txt.tmp"
    unrelated.write_text("someone else's")
    assert invoke("denoise", folder, "--sigma", "5", "-o", out).exit_code == 0
    assert not stale.exists() and unrelated.exists()


def test_retry_failed_redoes_only_failures(invoke, folder, tmp_path):
    out = tmp_path / "out"
    (folder / "bad.png").write_bytes(b"not a png")
    first = invoke("denoise", folder, "--sigma", "5", "-o", out, "--json")
    assert first.exit_code == 1 and summary_of(first)["failed"] == 1
    Image.fromarray(smooth_rgb()).save(folder / "bad.png")  # the user fixes it
    retry = invoke("denoise", folder, "--sigma", "5", "-o", out, "--json", "--retry-failed")
    assert retry.exit_code == 0, retry.output
    summary = summary_of(retry)
    assert summary["done"] == 1 and summary["skipped"] == 3
    assert summary["outputs"][0]["input"].endswith("bad.png")


def test_foreign_file_not_overwritten_but_own_outputs_are(invoke, folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "img0.png").write_bytes(b"user's own file")
    result = invoke("denoise", folder, "--sigma", "5", "-o", out, "--json")
    assert result.exit_code == 1 and "--overwrite" in summary_of(result)["failures"][0]["error"]
    assert (out / "img0.png").read_bytes() == b"user's own file"


def test_fail_fast_stops(invoke, folder, tmp_path):
    (folder / "aaa.png").write_bytes(b"broken")
    result = invoke("denoise", folder, "--sigma", "5", "-o", tmp_path / "out", "--json", "--fail-fast", "--workers", "1")
    summary = summary_of(result)
    assert result.exit_code == 1 and summary["failed"] == 1 and summary["done"] < 3


def test_pipeline_text_and_file(invoke, folder, tmp_path):
    out = tmp_path / "out"
    result = invoke("run", "-p", "denoise sigma=5 | inpaint method=ns", folder, "-o", out, "--mask-box", "1,1,5,5")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == ["img0.png", "img1.png", "img2.png"]
    recipe = tmp_path / "edit.toml"
    recipe.write_text('[[stage]]\nop = "denoise"\nsigma = 5\n')
    result = invoke("run", "-f", recipe, folder / "img0.png", "-o", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f.png").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["-p", "denoise | blur"], "stage 2 (blur): unknown operation"),
        (["-p", "denoise sigma=x"], "stage 1 (denoise)"),
        (["-p", "denoise | inpaint"], "stage 2 (inpaint) needs a mask"),
        ([], "either -p TEXT or -f FILE"),
    ],
)
def test_pipeline_checked_before_any_image(invoke, tmp_path, args, message):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(smooth_rgb()).convert("RGB").save(src / "a.jpg")
    result = invoke("run", *args, src, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_collision_is_refused_and_template_avoids_it(invoke, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(smooth_rgb()).save(src / "a.png")
    Image.fromarray(smooth_rgb()).save(src / "a.jpg")
    result = invoke("denoise", src, "--sigma", "5", "-o", tmp_path / "out", "--format", "png")
    assert result.exit_code == 2 and "would both be written" in result.stderr
    result = invoke("denoise", src, "--sigma", "5", "-o", tmp_path / "out", "--format", "png", "--name", "{stem}.{srcext}.{ext}")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.jpg.png", "a.png.png"]


def test_dry_run_touches_nothing(invoke, folder, tmp_path):
    result = invoke("denoise", folder, "-r", "--sigma", "5", "-o", tmp_path / "out", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["inputs"] == 4 and plan["stages"][0]["operation"] == "denoise"
    assert plan["stages"][0]["params"]["sigma"] == 5.0 and plan["stages"][0]["device"] == "cpu"
    assert plan["peak_memory_estimate_mb"] > 0
    assert not (tmp_path / "out").exists()
    text = invoke("denoise", folder, "--sigma", "5", "-o", tmp_path / "out", "--dry-run")
    assert "stage 1: denoise.vae" in text.output and "peak memory" in text.output


def test_bounded_map_keeps_order_and_depth():
    active, peak, lock = [0], [0], threading.Lock()

    def work(x):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01)
        with lock:
            active[0] -= 1
        return x * 2

    with ThreadPoolExecutor(8) as pool:
        results = []
        for value in _bounded_map(pool, work, list(range(40)), depth=3):
            results.append(value)
    assert results == [x * 2 for x in range(40)]
    assert peak[0] <= 3


def test_python_api_tensor_file_folder(folder, tmp_path):
    image = torch.rand(1, 3, 24, 24)
    mask = torch.zeros(1, 1, 24, 24)
    mask[..., 5:10, 5:10] = 1
    out = imgedit.run("inpaint method=telea", image, mask=mask)
    assert out.shape == image.shape and torch.equal(out * (1 - mask), image * (1 - mask))
    summary = imgedit.run("denoise sigma=5", folder / "img0.png", tmp_path / "one.png")
    assert len(summary.done) == 1 and (tmp_path / "one.png").exists()
    summary = imgedit.run(imgedit.Pipeline.parse("denoise sigma=5"), folder, tmp_path / "many", recursive=True)
    assert len(summary.done) == 4 and (tmp_path / "many" / "sub" / "img3.png").exists()
    with pytest.raises(UsageError, match="unknown option"):
        imgedit.run("denoise", folder, tmp_path / "x", colour="red")
    (folder / "bad.png").write_bytes(b"x")
    with pytest.raises(BatchError) as info:
        imgedit.run("denoise sigma=5", folder, tmp_path / "many")
    assert len(info.value.summary.failed) == 1


def _slow_env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "imgedit_slowtest", SLOW_PLUGIN)
    return {"PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1"}


def _start_batch(tmp_path, env, count=24):
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    for i in range(count):
        Image.fromarray(smooth_rgb(seed=i)).save(src / f"im{i:02d}.png")
    cmd = [sys.executable, "-m", "imgedit", "run", "-p", "slow seconds=0.15", str(src), "-o", str(tmp_path / "out"), "--json"]
    import subprocess

    return src, subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 preexec_fn=interruptible)


def _wait_for_outputs(folder, count, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if folder.is_dir() and len(list(folder.glob("*.png"))) >= count:
            return
        time.sleep(0.02)
    raise AssertionError("no outputs appeared")


def _check_complete(out, src):
    for path in out.glob("*.png"):
        result = np.asarray(Image.open(path)).astype(int)  # decodes fully: complete
        original = np.asarray(Image.open(src / path.name)).astype(int)
        assert np.abs(result - (255 - original)).max() <= 1


def test_sigkill_then_rerun_loses_nothing_and_redoes_nothing(tmp_path):
    env = _slow_env(tmp_path)
    src, proc = _start_batch(tmp_path, env)
    out = tmp_path / "out"
    _wait_for_outputs(out, 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _check_complete(out, src)
    finished = len(list(out.glob("*.png")))
    result = run_imgedit("run", "-p", "slow seconds=0.15", src, "-o", out, "--json", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["skipped"] == finished and summary["done"] == 24 - finished
    _check_complete(out, src)
    assert len(list(out.glob("*.png"))) == 24
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_saves_and_says_how_to_resume(tmp_path):
    env = _slow_env(tmp_path)
    src, proc = _start_batch(tmp_path, env)
    out = tmp_path / "out"
    _wait_for_outputs(out, 3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    _check_complete(out, src)
    finished = len(list(out.glob("*.png")))
    result = run_imgedit("run", "-p", "slow seconds=0.15", src, "-o", out, "--json", env=env)
    assert json.loads(result.stdout)["skipped"] == finished


def test_mask_folder_paired_by_relative_path(invoke, folder, tmp_path):
    masks = tmp_path / "masks"
    (masks / "sub").mkdir(parents=True)
    hole = np.zeros((48, 64), np.uint8)
    hole[5:10, 5:10] = 255
    for rel in ["img0.png", "img1.png", "img2.png", "sub/img3.png"]:
        Image.fromarray(hole).save(masks / rel)
    result = invoke("inpaint", folder, "-r", "--mask", masks, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    notes = sorted(o["note"] for o in summary_of(result)["outputs"])
    assert notes == ["mask file img0.png", "mask file img1.png", "mask file img2.png", "mask file sub/img3.png"]


def test_progress_prints_plain_lines_off_a_terminal(capsys, monkeypatch):
    # a log file or a pipe gets periodic "count/total, rate, ETA" lines, and each failure, but no bar
    from types import SimpleNamespace

    from imgedit.verbs import Progress

    monkeypatch.setattr(Progress, "interval", 0.0)
    ok = SimpleNamespace(error=None, status="done", note=None, output="out/a.png")
    bad = SimpleNamespace(error="in/b.png: corrupt or truncated image", status="failed", note=None, output=None)
    with Progress(3, quiet=False) as report:
        report(ok)
        report(bad)
        report(ok)
    err = capsys.readouterr().err.splitlines()
    assert "failed: in/b.png: corrupt or truncated image" in err
    counts = [line for line in err if "img/s" in line]
    assert [line.split()[0] for line in counts] == ["1/3", "2/3", "3/3"] and all("ETA" in line for line in counts)

    with Progress(3, quiet=True) as report:
        report(ok)
    assert capsys.readouterr().err == ""
