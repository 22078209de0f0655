"""The batch runner: resume journal, kill safety, bounded queues, pipelines,
dry runs and the Python API."""

import io
import json
import re
import shutil
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
from imgedit.journal import JOURNAL_NAME, LOCK_NAME
from imgedit.runner import _bounded_map

from conftest import fake_distribution, interruptible, reaped, run_imgedit, smooth_rgb, wait_for_outputs

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


@pytest.mark.parametrize("large", [False, True], ids=["small", "refused from its header"])
def test_skip_failed_leaves_out_unchanged_failures_until_they_change(invoke, folder, tmp_path, monkeypatch, large):
    # a nightly run over a folder with a corrupt photo exited 1 every night
    if large:  # as a file too large to read whole before its header is checked: keyed all the same
        monkeypatch.setattr("imgedit.imageio.read.HEADER_FIRST_BYTES", 0)
    out = tmp_path / "out"
    (folder / "bad.png").write_bytes(b"not a png")
    (folder / "empty.png").write_bytes(b"")
    args = ["denoise", folder, "--sigma", "5", "--method", "nlm", "-o", out]
    first = invoke(*args, "--json")
    assert first.exit_code == 1 and summary_of(first)["failed"] == 2
    nightly = invoke(*args, "--skip-failed")
    assert nightly.exit_code == 0, nightly.output
    assert "done 0, skipped 5 (2 that failed before, unchanged), failed 0" in nightly.stderr
    listed = summary_of(invoke(*args, "--skip-failed", "--json"))["failed_before"]
    assert sorted((os.path.basename(f["input"]), "not an image" in f["error"] or "is empty" in f["error"])
                  for f in listed) == [("bad.png", True), ("empty.png", True)]
    assert invoke(*args).exit_code == 1  # without the flag they are tried again
    Image.fromarray(smooth_rgb()).save(folder / "bad.png")  # the user replaces it
    fixed = summary_of(invoke(*args, "--skip-failed", "--json"))
    assert fixed["done"] == 1 and fixed["outputs"][0]["input"].endswith("bad.png") and len(fixed["failed_before"]) == 1
    both = invoke(*args, "--skip-failed", "--retry-failed")
    assert both.exit_code == 2 and "give one of them" in both.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="modes")
def test_skip_failed_tries_again_what_failed_for_this_machine_not_the_file(invoke, folder, tmp_path):
    # a photo refused as read-only by --in-place, then made writable, was
    # skipped for good: only a failure of the file's own content is skipped
    photo = folder / "img0.png"
    os.chmod(photo, 0o444)
    args = ["denoise", photo, folder / "img1.png", "--sigma", "5", "--method", "nlm", "--in-place", "--json"]
    refused = invoke(*args)
    assert refused.exit_code == 1 and "is read-only" in summary_of(refused)["failures"][0]["error"]
    os.chmod(photo, 0o644)
    again = summary_of(invoke(*args, "--skip-failed"))
    assert again["done"] == 1 and again["outputs"][0]["input"].endswith("img0.png") and again["failed_before"] == []


def test_skip_failed_tries_again_an_image_refused_for_this_machines_pixel_limit(invoke, folder, tmp_path, monkeypatch):
    # a limit set low for one night (or a smaller machine's) must not leave the photos out for good
    args = ["denoise", folder / "img0.png", folder / "img1.png", "--sigma", "5", "--method", "nlm", "-o", tmp_path / "o"]
    monkeypatch.setenv("IMGEDIT_MAX_PIXELS", "500")
    refused = summary_of(invoke(*args, "--json"))
    assert refused["failed"] == 2 and "above the limit" in refused["failures"][0]["error"], refused
    monkeypatch.delenv("IMGEDIT_MAX_PIXELS")
    again = summary_of(invoke(*args, "--skip-failed", "--json"))
    assert again["done"] == 2 and again["failed_before"] == [], again


def test_results_written_beside_their_photos_with_o_the_photos_folder(invoke, folder):
    # -o in/ --name '{stem}.den.{ext}': the folder's photos are inputs (only a sub-folder -o is the run's own)
    args = ["denoise", folder, "-o", folder, "--name", "{stem}.den.{ext}", "--sigma", "5", "--method", "nlm"]
    first = summary_of(invoke(*args, "--json"))
    assert first["done"] == 3 and (folder / "img0.den.png").is_file(), first
    again = summary_of(invoke(*args, "--json"))  # the results are not taken for photos to edit
    assert again["done"] == 0 and again["failed"] == 0 and not list(folder.glob("*.den.den.png")), again


def test_running_out_of_memory_on_an_image_is_said_plainly(invoke, folder, tmp_path, monkeypatch):
    # numpy's MemoryError while a photo was read ahead came out as 'unexpected MemoryError: ...'
    from imgedit.imageio import read as read_module

    real_read = read_module.read_image

    def read_image(path, **kwargs):
        if path.name == "img1.png":
            raise MemoryError("Unable to allocate 91.6 MiB for an array with shape (4000, 6000) and data type float32")
        return real_read(path, **kwargs)

    monkeypatch.setattr(read_module, "read_image", read_image)
    result = invoke("denoise", folder, "--sigma", "5", "--method", "nlm", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 1 and summary_of(result)["done"] == 2
    (error,) = [f["error"] for f in summary_of(result)["failures"]]
    assert "img1.png: not enough memory for this image (Unable to allocate 91.6 MiB" in error
    assert "unexpected" not in error


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


def test_fail_fast_stops_at_the_first_failure_even_with_reads_in_flight(invoke, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(8):
        (src / f"bad{i}.png").write_bytes(b"not a png")  # every read fails, and reads run ahead
    result = invoke("denoise", src, "--sigma", "5", "-o", tmp_path / "out", "--json", "--fail-fast", "--workers", "4")
    summary = summary_of(result)
    assert result.exit_code == 1 and summary["failed"] == 1 and summary["done"] == 0


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
    recipe.write_text('[[stage]]\nop = "denoise"\nsigma = "lots"\n')
    result = invoke("run", "-f", recipe, folder / "img0.png", "-o", tmp_path / "g.png")
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {recipe}: stage 1 (denoise): "), result.output


def test_several_pipeline_options_run_one_after_the_other(invoke, folder, tmp_path):
    result = invoke("run", "-p", "denoise.nlm sigma=5", "-p", "inpaint method=ns", folder / "img0.png",
                    "-o", tmp_path / "two.png", "--mask-box", "1,1,5,5", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert [stage["operation"] + "." + stage["method"] for stage in json.loads(result.stdout)["stages"]] == [
        "denoise.nlm", "inpaint.ns"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["-p", "denoise | blur"], "stage 2 (blur): unknown operation"),
        (["-p", "denoise sigma=x"], "stage 1 (denoise)"),
        (["-p", "denoise | inpaint"], "stage 2 (inpaint) needs a mask"),
        ([], "either -p TEXT or -f FILE"),
        (["-p", "denoise", "-p", "inpaint method=ns"], "stage 2 (inpaint) needs a mask"),  # both -p count
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
    # photo.JPG and photo.jpg: {srcext} tells them apart, not 'different folders'
    Image.fromarray(smooth_rgb()).save(src / "a.JPG", format="JPEG")
    result = invoke("denoise", src, "--sigma", "5", "-o", tmp_path / "jpeg", "--format", "jpeg")
    assert result.exit_code == 2 and "add {srcext} to the name" in result.stderr, result.output
    from imgedit.output_plan import _apart

    assert "put {stem} in the --name template" in _apart(src / "Photo.jpg", src / "photo.jpg")  # --name 'x.{ext}'
    assert "different folders" in _apart(src / "a.jpg", tmp_path / "a.jpg")
    (src / "a.JPG").unlink()
    Image.fromarray(smooth_rgb()).save(src / "b.png")
    same = invoke("denoise", src / "a.png", src / "b.png", "--sigma", "5", "-o", tmp_path / "same", "--name", "same.{ext}")
    assert same.exit_code == 2 and "put {stem} in the --name template" in same.stderr, same.output


def test_a_refused_input_does_not_make_the_owner_redo_its_result(invoke, tmp_path):
    # another photo of the same name into the same -o is refused; its failure
    # used to be recorded over the owner's "done", and the owner's next run
    # computed and wrote its intact output again
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir()
    other.mkdir()
    Image.fromarray(smooth_rgb(seed=1)).save(mine / "a.png")
    Image.fromarray(smooth_rgb(seed=2)).save(other / "a.png")
    out = tmp_path / "out"
    args = ["--sigma", "5", "--method", "nlm", "-o", out, "--json"]
    assert summary_of(invoke("denoise", mine, *args))["done"] == 1
    refused = invoke("denoise", other, *args)
    assert refused.exit_code == 1 and "holds the result of another input" in refused.stdout
    again = summary_of(invoke("denoise", mine, *args))
    assert again["done"] == 0 and again["skipped"] == 1


def test_a_format_that_drops_depth_or_transparency_says_so_once(invoke, tmp_path):
    import tifffile

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(src / name, (rng.random((24, 32, 3)) * 65535).astype(np.uint16))
    for name in ("c.png", "d.png"):
        rgba = np.dstack([smooth_rgb(24, 32), np.full((24, 32), 255, np.uint8)])
        rgba[:4, :4, 3] = 128
        Image.fromarray(rgba).save(src / name)
    to_jpeg = invoke("denoise", src, "--sigma", "5", "--method", "nlm", "-o", tmp_path / "jpeg", "--format", "jpeg")
    assert to_jpeg.exit_code == 0, to_jpeg.output
    warnings = [line for line in to_jpeg.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 2, warnings
    assert any("JPEG holds 8 bits a channel: 16-bit images are written at 8" in w for w in warnings)
    assert any("JPEG has no transparency: transparent images are written opaque" in w for w in warnings)
    kept = invoke("denoise", src, "--sigma", "5", "--method", "nlm", "-o", tmp_path / "same")
    assert kept.exit_code == 0 and "Warning" not in kept.stderr, kept.output


def test_dry_run_touches_nothing(invoke, folder, tmp_path):
    result = invoke("denoise", folder, "-r", "--sigma", "5", "-o", tmp_path / "out", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["inputs"] == 4 and plan["stages"][0]["operation"] == "denoise"
    assert plan["stages"][0]["params"]["sigma"] == 5.0 and plan["stages"][0]["device"] == "cpu"
    assert plan["peak_memory_estimate_mb"] > 0
    assert not (tmp_path / "out").exists()
    text = invoke("denoise", folder, "--sigma", "5", "-o", tmp_path / "out", "--dry-run")
    assert "stage 1: denoise.vae sigma=5.0 strength=1.0 ensemble=2 [cpu" in text.output and "peak memory" in text.output
    assert plan["stages"][0]["params"]["weights"] == ""  # not given: said in JSON, left out of the line


def test_a_dry_run_fails_on_a_model_that_would_stop_the_run(invoke, folder, tmp_path, monkeypatch):
    # it printed a plan and exit 0; the run then stopped at its first image
    import shutil

    from imgedit.models import shipped_weights_dir

    weights = shutil.copytree(shipped_weights_dir(), tmp_path / "weights")
    with open(weights / "imgedit_vae" / "denoise-vae.safetensors", "ab") as fh:
        fh.write(b"x")  # no longer the file its card names
    monkeypatch.setenv("IMGEDIT_WEIGHTS", str(weights))
    result = invoke("denoise", folder, "--sigma", "5", "-o", tmp_path / "out", "--dry-run", "--json")
    plan = json.loads(result.stdout)
    assert result.exit_code == 1 and plan["inputs"] == 3 and "sha256 mismatch" in plan["problems"][0]
    assert result.stderr.strip() == f"Error: {plan['problems'][0]}" and not (tmp_path / "out").exists()
    fine = invoke("denoise", folder, "--sigma", "5", "--method", "nlm", "-o", tmp_path / "out", "--dry-run", "--json")
    assert fine.exit_code == 0 and json.loads(fine.stdout)["problems"] == []  # nlm needs no model


def test_dry_run_memory_estimate_counts_the_process_the_queue_and_the_working_size(invoke, tmp_path):
    from imgedit.dryrun import BYTES_PER_PIXEL, _process_mb

    src = tmp_path / "big"
    src.mkdir()
    for i in range(12):
        Image.new("RGB", (3000, 2000)).save(src / f"p{i:02d}.png")  # 6 MP each; only headers are read

    def estimate(*args):
        result = invoke(*args, "--dry-run", "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["peak_memory_estimate_mb"]

    image_mb = 6e6 * BYTES_PER_PIXEL / 2**20
    one = estimate("style", src / "p00.png", "--style", "mosaic", "-o", tmp_path / "o.png")
    assert one > _process_mb()  # Python and torch are part of the peak
    # a style applied at its capped working size needs far less than one applied at full size
    full = estimate("style", src / "p00.png", "--style", "mosaic", "--scale", "3000", "-o", tmp_path / "o.png")
    assert full - one > 100 * (6 - 1024 * 683 / 1e6)
    # images decoded ahead and waiting to be written: one per further input, up to 2 x depth
    three = estimate("style", src / "p00.png", src / "p01.png", src / "p02.png", "--style", "mosaic", "-o", tmp_path / "o")
    assert abs(three - one - 2 * image_mb) < 0.05 * one
    many = estimate("style", src, "--style", "mosaic", "-o", tmp_path / "o")  # 12 inputs, queue depth 4
    assert abs(many - one - 8 * image_mb) < 0.05 * one
    # large photos are read fewer ahead, as the run does: here two 6 MP photos at most
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("imgedit.runner.READ_AHEAD_PIXELS", 12_000_000)
        large = estimate("style", src, "--style", "mosaic", "-o", tmp_path / "o")
    assert abs(large - one - 4 * image_mb) < 0.05 * one



def test_dry_run_memory_estimate_grows_with_inpaint_samples(invoke, tmp_path):
    # --samples K writes K fills side by side: the result, and the copies
    # made of it on the way to the file, are K times the photo
    from imgedit.dryrun import BYTES_PER_PIXEL, OUTPUT_SIZE_COPIES

    Image.new("RGB", (3000, 2000)).save(tmp_path / "p.png")  # only its header is read

    def estimate(*args):
        result = invoke("inpaint", tmp_path / "p.png", "--mask-box", "10,10,50,50", *args, "-o", tmp_path / "o.png",
                        "--dry-run", "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["peak_memory_estimate_mb"]

    image_mb = 6e6 * BYTES_PER_PIXEL / 2**20
    one, three = estimate(), estimate("--samples", "3")
    assert abs(three - one - 2 * OUTPUT_SIZE_COPIES * image_mb) < 0.05 * one
    # a later stage works on the wider image: its copies in and out are three times the photo's
    def plan(pipeline):
        result = invoke("run", "-p", pipeline, tmp_path / "p.png", "--mask-box", "10,10,50,50", "-o", tmp_path / "o.png",
                        "--dry-run", "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["peak_memory_estimate_mb"]

    alone = plan("denoise method=nlm sigma=5")
    after = plan("inpaint samples=3 | denoise method=nlm sigma=5")
    assert after - alone > 4 * image_mb  # 8 photo-sized copies more, less what its tiling saves


def test_dry_run_names_an_output_over_the_pixel_limit_as_the_run_refuses_it(invoke, tmp_path, monkeypatch):
    Image.new("RGB", (32, 32)).save(tmp_path / "p.png")
    monkeypatch.setenv("IMGEDIT_MAX_PIXELS", "1500")
    result = invoke("inpaint", tmp_path / "p.png", "--mask-box", "2,2,4,4", "--samples", "2", "-o", tmp_path / "o.png",
                    "--dry-run", "--json")
    plan = json.loads(result.stdout)
    assert result.exit_code == 2 and plan["stages"] and len(plan["problems"]) == 1
    assert plan["problems"][0].startswith("the output of stage 1 (inpaint) would be 64x32")
    assert result.stderr.strip() == f"Error: {plan['problems'][0]}"

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


def _check_complete(out, src):
    for path in out.glob("*.png"):
        result = np.asarray(Image.open(path)).astype(int)  # decodes fully: complete
        original = np.asarray(Image.open(src / path.name)).astype(int)
        assert np.abs(result - (255 - original)).max() <= 1


def test_sigkill_then_rerun_loses_nothing_and_redoes_nothing(tmp_path):
    env = _slow_env(tmp_path)
    src, proc = _start_batch(tmp_path, env)
    out = tmp_path / "out"
    with reaped(proc):
        wait_for_outputs(proc, out, 5)
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


def _signalled_after_three_outputs(tmp_path, signum):
    """A slow batch (with --json) sent ``signum`` once three outputs are
    written: (env, src, out, process, stdout, stderr), the process ended."""
    env = _slow_env(tmp_path)
    src, proc = _start_batch(tmp_path, env)
    out = tmp_path / "out"
    with reaped(proc):
        wait_for_outputs(proc, out, 3)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    return env, src, out, proc, stdout, stderr


def _at_once(runs):
    """Start each (env, command line) of imgedit at the same moment; their (exit code, stderr)."""
    import subprocess

    procs = [subprocess.Popen([sys.executable, "-m", "imgedit", *map(str, cmd)], env={**os.environ, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for env, cmd in runs]
    return [(proc.wait(timeout=120), proc.communicate()[1]) for proc in procs]


def _two_at_once(env, *commands):
    return _at_once([(env, cmd) for cmd in commands])


def _paced_at_once(site, command, paces):
    return _at_once([({"PYTHONPATH": str(site), "PACE": pace}, command) for pace in paces])


PACED_PLUGIN = """
import os, time
from imgedit import hookimpl
from imgedit.operations import Operation

def create(context):
    def apply(image, mask):
        time.sleep(float(os.environ["PACE"]))  # not a parameter: two runs at two paces have one recipe
        return 1.0 - image
    return apply

@hookimpl
def register_operations(register):
    register(Operation("paced", "sleep", create))
"""


@pytest.mark.parametrize("paces", [("0.5", "0.5"), ("0.05", "0.6")], ids=["in step", "one faster"])
def test_two_in_place_runs_at_once_edit_each_photo_once_and_a_rerun_skips_them(tmp_path, paces):
    # the loser of each photo recorded a failure over the winner's edit: the next run edited them all again;
    # and a slower run read, as its input, a photo the faster one had edited since its journal was read
    site, photos = tmp_path / "site", tmp_path / "photos"
    site.mkdir()
    photos.mkdir()
    fake_distribution(site, "imgedit_pacedtest", PACED_PLUGIN)
    for i in range(6):
        Image.fromarray(smooth_rgb(seed=i)).save(photos / f"im{i}.png")
    before = {p.name: np.asarray(Image.open(p)) for p in photos.glob("*.png")}
    command = ("run", "-p", "paced", photos, "--in-place", "-q")
    runs = _paced_at_once(site, command, paces)
    for code, stderr in runs:
        assert code == 0 and "failed" not in stderr, stderr
    env = {"PYTHONPATH": str(site), "PACE": "0"}
    again = run_imgedit(*command[:-1], "--json", env=env)
    assert json.loads(again.stdout)["done"] == 0, again.stdout
    for name, pixels in before.items():  # inverted once (twice would be the photo again)
        assert np.array_equal(np.asarray(Image.open(photos / name)), 255 - pixels), name


def test_two_runs_at_once_do_not_replace_each_other_s_output_of_one_name(tmp_path):
    # xargs -P over a/x.png and b/x.png into one folder: both said "wrote out/x.png", the last one won.
    # b reads its input before a writes, and is still working when a has written (1.6 s apart)
    env = _slow_env(tmp_path)
    for folder, seed in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        Image.fromarray(smooth_rgb(seed=seed)).save(tmp_path / folder / "x.png")
    out = tmp_path / "out"
    commands = {f: ("run", "-p", f"slow seconds={pace}", tmp_path / f / "x.png", "-o", f"{out}/")
                for f, pace in (("a", 0.4), ("b", 2.0))}
    (a_code, _), (b_code, b_said) = _two_at_once(env, commands["a"], commands["b"])
    assert (a_code, b_code) == (0, 1), b_said
    assert "--overwrite" in b_said and ("out/x.png was written by another run while this one made it from" in b_said
                                        or "holds the result of another input" in b_said), b_said  # b started late
    written = np.asarray(Image.open(out / "x.png")).astype(int)
    assert np.array_equal(written, 255 - np.asarray(Image.open(tmp_path / "a" / "x.png")).astype(int))
    rerun = run_imgedit(*commands["a"], "--json", env=env)
    assert json.loads(rerun.stdout)["skipped"] == 1, rerun.stdout  # a's record stands: b recorded nothing over it


def test_ctrl_c_saves_and_says_how_to_resume(tmp_path):
    env, src, out, proc, _, stderr = _signalled_after_three_outputs(tmp_path, signal.SIGINT)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    said = re.search(r"interrupted after (\d+) images? done, (\d+) not attempted", stderr)
    assert said and int(said[1]) >= 3 and int(said[2]) > 0, stderr
    assert "Traceback" not in stderr
    _check_complete(out, src)
    finished = len(list(out.glob("*.png")))
    result = run_imgedit("run", "-p", "slow seconds=0.15", src, "-o", out, "--json", env=env)
    assert json.loads(result.stdout)["skipped"] == finished


@pytest.mark.parametrize("planned, done, said", [
    (1, 0, "interrupted after 0 of 1 image; run the same command again to redo what was not written"),
    (3, 1, "interrupted after 1 of 3 images; run the same command again to redo what was not written"),
])
def test_an_interrupt_without_a_journal_does_not_promise_a_resume(planned, done, said):
    from pathlib import Path

    from imgedit.errors import Interrupted
    from imgedit.runner import FileResult, Summary
    from imgedit.verbs import _print_summary

    summary = Summary([FileResult(Path(f"{i}.png"), output=Path(f"o{i}.png")) for i in range(done)],
                      interrupted=True, planned=planned)
    with pytest.raises(Interrupted) as stopped:
        _print_summary(summary, quiet=True, as_json=False, planned=planned)
    assert str(stopped.value) == said


def test_the_summary_line_counts_the_images_never_tried(capsys):
    from pathlib import Path

    from imgedit.errors import Interrupted
    from imgedit.runner import FileResult, Summary
    from imgedit.verbs import _print_summary

    summary = Summary([FileResult(Path(f"{i}.png"), output=Path(f"o{i}.png")) for i in range(2)],
                      interrupted=True, planned=5, journal=Path("out/.imgedit-journal.jsonl"))
    with pytest.raises(Interrupted, match="after 2 images done, 3 not attempted"):
        _print_summary(summary, quiet=False, as_json=False, planned=5)
    assert "done 2, skipped 0, failed 0, not attempted 3 in" in capsys.readouterr().err


def test_sigterm_stops_a_batch_as_ctrl_c_does_and_exits_143(tmp_path):
    env, src, out, proc, stdout, stderr = _signalled_after_three_outputs(tmp_path, signal.SIGTERM)
    assert proc.returncode == 143, stderr
    assert "stopped by SIGTERM; interrupted after" in stderr and "run the same command again to resume" in stderr
    summary = json.loads(stdout)  # the summary is said, as after Ctrl-C
    assert summary["interrupted"] is True and summary["done"] >= 3 and summary["not_attempted"] > 0
    assert "Traceback" not in stderr and not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    _check_complete(out, src)


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


@pytest.mark.parametrize("terminal", [None, "dumb"], ids=["log file", "TERM=dumb"])
def test_progress_prints_plain_lines_off_a_terminal(capsys, monkeypatch, terminal):
    # a log file or a pipe gets periodic "count/total, rate, ETA" lines, and each failure, but no bar;
    # so does a terminal that cannot redraw a line (TERM=dumb: a screen reader's, an editor's shell)
    from pathlib import Path

    from imgedit.runner import FileResult
    from imgedit.verbs import Progress

    if terminal is not None:
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
        monkeypatch.setenv("TERM", terminal)
    monkeypatch.setattr(Progress, "interval", 0.0)
    ok = FileResult(Path("in/a.png"), output=Path("out/a.png"))
    bad = FileResult(Path("in/b.png"), status="failed", error="in/b.png: corrupt or truncated image")
    with Progress(3, quiet=False) as report:
        report(ok)
        report(bad)
        report(ok)
    err = capsys.readouterr().err.splitlines()
    assert "failed: in/b.png: corrupt or truncated image" in err
    counts = [line for line in err if "img/s" in line]
    assert [line.split()[0] for line in counts] == ["1/3", "2/3", "3/3"] and all("ETA" in line for line in counts)
    assert "\r" not in "".join(err)

    with Progress(3, quiet=True) as report:
        report(ok)
    assert capsys.readouterr().err == ""


def test_verbose_says_each_image_and_what_its_stages_said(invoke, tmp_path):
    # a batch's estimated sigmas were only in --json; -v gives a line per image
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for sigma in (5, 25):
        noisy = smooth_rgb(48, 48, seed=sigma).astype(float) + rng.normal(0, sigma, (48, 48, 3))
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(src / f"n{sigma}.png")
    out = tmp_path / "out"
    first = invoke("denoise", src, "-o", out, "--method", "nlm", "-v")
    assert first.exit_code == 0, first.output
    lines = {line.split()[1]: line for line in first.stderr.splitlines() if line.startswith("wrote ")}
    assert sorted(lines) == [str(out / "n25.png"), str(out / "n5.png")]
    estimated = {name: float(line.split("(sigma ")[1].split()[0]) for name, line in lines.items()}
    assert estimated[str(out / "n5.png")] < 12 < estimated[str(out / "n25.png")]
    plain = invoke("denoise", src, "-o", out, "--method", "nlm")  # without -v: the summary alone
    assert "wrote" not in plain.stderr and "skipped" not in plain.stderr.replace("skipped 2", "")
    again = invoke("denoise", src, "-o", out, "--method", "nlm", "-v")
    assert again.stderr.count("(done in an earlier run)") == 2
    both = invoke("denoise", src, "-o", out, "-q", "-v")
    assert both.exit_code == 2 and "pick one" in both.stderr


def test_a_long_silence_gets_a_still_working_line(capsys, monkeypatch):
    # a 24 MP photo through a learned model is a minute without a word otherwise;
    # the heartbeat's clock is driven by hand here (tick), its thread stopped
    from types import SimpleNamespace

    import imgedit.progress as progress
    from imgedit.progress import HEARTBEAT_SECONDS, Progress

    ok = SimpleNamespace(error=None, status="done", note=None, output="out/a.png", details=[], panels=1)
    single = Progress(1, quiet=False, first="photos/big.jpg")
    with single as report:
        beat = single.heartbeat
        beat.stop()  # its own thread would tick by the wall clock
        start = beat.started
        beat._stop.clear()
        beat.tick(start + HEARTBEAT_SECONDS - 1)  # not yet
        beat.tick(start + HEARTBEAT_SECONDS + 1)
        beat.tick(start + HEARTBEAT_SECONDS + 2)  # it just spoke: silent again
        monkeypatch.setattr(progress, "_last_said", [start])  # as if nothing had been said since the start
        batch = Progress(40, quiet=False)
        batch.count, batch_beat = 3, progress.Heartbeat(batch.still_working)
        batch_beat.started = start
        batch_beat.tick(start + 65)
        report(ok)
    err = capsys.readouterr().err.splitlines()
    assert err == [f"working on photos/big.jpg, {round(HEARTBEAT_SECONDS + 1)}s so far",
                   "3/40 images done, 65s so far", "wrote out/a.png"]
    with Progress(1, quiet=True) as report:  # -q: no heartbeat at all
        report(ok)
    assert capsys.readouterr().err == ""


def test_a_rerun_leaves_out_its_own_outputs(invoke, folder, tmp_path):
    # results beside the inputs, and -o inside the input folder with -r:
    # a second run must not take the first run's results for new inputs
    import shutil

    for index, extra in enumerate(([], ["-o", "out"])):
        src = shutil.copytree(folder, tmp_path / f"copy{index}")
        extra = [src / e if e == "out" else e for e in extra]
        first = invoke("denoise", src, "-r", "--sigma", "5", "--method", "nlm", *extra, "--json")
        assert first.exit_code == 0 and summary_of(first)["done"] == 4, first.output
        before = sorted(p.relative_to(src) for p in src.rglob("*.png"))
        assert len(before) == 8
        again = invoke("denoise", src, "-r", "--sigma", "5", "--method", "nlm", *extra, "--json")
        assert again.exit_code == 0, again.output
        assert summary_of(again)["done"] == 0 and summary_of(again)["skipped"] == 4
        assert sorted(p.relative_to(src) for p in src.rglob("*.png")) == before


def test_results_an_earlier_run_wrote_beside_the_photos_are_not_inputs(invoke, folder, tmp_path):
    # another -o or another pipeline does not name those results: the journal
    # of the folder they were written to does
    first = invoke("denoise", folder, "-r", "--sigma", "5", "--method", "nlm", "--json")
    assert first.exit_code == 0 and summary_of(first)["done"] == 4, first.output
    for verb, extra in (("denoise", ["--sigma", "5", "--method", "nlm"]),
                        ("inpaint", ["--mask-box", "2,2,4,4", "--method", "telea"])):
        out = tmp_path / f"out-{verb}"
        result = invoke(verb, folder, "-r", "-o", out, *extra)
        assert result.exit_code == 0, result.output
        assert "left out 4 images that are imgedit's results" in result.stderr
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
            "img0.png", "img1.png", "img2.png", "sub/img3.png"]
    named = invoke("denoise", folder / "img0.denoise.png", "-o", tmp_path / "named.png", "--sigma", "5", "--method", "nlm")
    assert named.exit_code == 0 and (tmp_path / "named.png").exists(), named.output  # named: edited as asked
    # a file put where a result was (not the size recorded) is a photo again
    Image.fromarray(smooth_rgb(24, 24, seed=9)).save(folder / "img1.denoise.png")
    again = invoke("denoise", folder, "-r", "-o", tmp_path / "again", "--sigma", "5", "--method", "nlm", "--json")
    assert summary_of(again)["done"] == 5 and (tmp_path / "again" / "img1.denoise.png").exists(), again.output
    # --json silences the note on stderr: its summary names what was left out
    assert sorted(os.path.relpath(p, folder).replace(os.sep, "/") for p in summary_of(again)["left_out_results"]) == [
        "img0.denoise.png", "img2.denoise.png", "sub/img3.denoise.png"]
    assert again.stderr == ""


def test_a_rerun_beside_its_journal_reads_it_once_and_sees_what_another_run_added(invoke, folder, tmp_path,
                                                                                  monkeypatch):
    # planning reads the journal to leave earlier results out; the run takes
    # that read up (rereading only what was appended since) rather than read
    # 20 000 records twice
    from imgedit import journal as journal_module
    from imgedit.inputs import scan_inputs
    from imgedit.output_plan import JournalsRead, leave_out_own_outputs
    from imgedit.pipeline import Pipeline
    from imgedit.runner import RunOptions, open_journal

    assert invoke("denoise", folder, "-r", "--sigma", "5", "--method", "nlm").exit_code == 0
    reads = []
    real_init = journal_module.Journal.__init__
    monkeypatch.setattr(journal_module.Journal, "__init__",
                        lambda self, *a, **k: (reads.append(a[0]), real_init(self, *a, **k))[1])
    again = invoke("denoise", folder, "-r", "--sigma", "5", "--method", "nlm", "--json")
    assert summary_of(again)["skipped"] == 4 and summary_of(again)["done"] == 0  # its results left out
    assert reads == [folder]
    dry = invoke("denoise", folder, "-r", "--sigma", "5", "--method", "nlm", "--dry-run")
    assert "4 inputs (4 already done)" in dry.stdout and reads == [folder, folder]

    journals = JournalsRead()
    items, own = leave_out_own_outputs(Pipeline.parse("denoise method=nlm sigma=5"),
                                       scan_inputs([str(folder)], recursive=True).files, RunOptions(), journals=journals)
    assert len(items) == len(own) == 4 and len(reads) == 3
    real_init(other := object.__new__(journal_module.Journal), folder)  # another run, done since planning
    other.record(folder / "late.png", "k", "done", size=1)
    other.close()
    taken = open_journal(items, RunOptions(), journals)
    try:
        assert taken.get(folder / "late.png").status == "done" and taken.get(folder / "img0.denoise.png") is not None
        assert len(reads) == 3 and journals.take(folder) is None  # handed over, not read again
    finally:
        taken.release()


def test_a_run_says_when_another_run_writes_into_its_folder(invoke, folder, tmp_path):
    # safe (each skips what the other finished) but maybe twice the work: a cron job wants to know
    from imgedit.journal import Journal

    out = tmp_path / "out"
    alone = invoke("denoise", folder, "-o", out, "--sigma", "5", "--method", "nlm")
    assert alone.exit_code == 0 and "another imgedit run" not in alone.stderr
    other = Journal(out)
    other.hold()
    try:
        shared = invoke("denoise", folder, "-o", out, "--sigma", "6", "--method", "nlm")
    finally:
        other.release()
    assert shared.exit_code == 0, shared.output
    assert f"another imgedit run is writing into {out} too" in shared.stderr


def test_photos_edited_in_place_are_still_inputs_even_moved(invoke, folder, tmp_path):
    edited = invoke("denoise", folder, "-r", "--in-place", "--sigma", "5", "--method", "nlm")
    assert edited.exit_code == 0, edited.output
    moved = folder.rename(tmp_path / "moved")  # the journal names the photos where they were
    result = invoke("inpaint", moved, "-r", "-o", tmp_path / "out", "--mask-box", "2,2,4,4", "--method", "telea",
                    "--json")
    assert result.exit_code == 0 and summary_of(result)["done"] == 4, result.output


def test_a_scan_that_finds_only_results_is_an_error_not_a_run_that_did_nothing(invoke, folder, tmp_path):
    out = folder / "out"
    assert invoke("denoise", folder, "-r", "-o", out, "--sigma", "5", "--method", "nlm").exit_code == 0
    for photo in folder.rglob("img*.png"):
        if out not in photo.parents:
            photo.unlink()  # the photos gone: only the results under -o are left to find
    result = invoke("denoise", folder, "-r", "-o", out, "--sigma", "5", "--method", "nlm")
    assert result.exit_code == 2 and "every image found is a result of imgedit" in result.stderr, result.output


def test_a_folder_of_results_given_as_the_input_is_edited(invoke, folder, tmp_path):
    # a chain of verbs: the second takes the first's -o folder, whose photos are elsewhere
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    assert invoke("denoise", folder, "-r", "-o", stage1, "--sigma", "5", "--method", "nlm").exit_code == 0
    result = invoke("inpaint", stage1, "-r", "-o", stage2, "--mask-box", "2,2,4,4", "--method", "telea", "--json")
    assert result.exit_code == 0 and summary_of(result)["done"] == 4, result.output
    assert "left out" not in result.stderr


def test_a_folder_of_one_photo_reruns_like_a_folder_of_many(invoke, folder, tmp_path):
    src = tmp_path / "one"
    src.mkdir()
    (src / "a.png").write_bytes((folder / "img0.png").read_bytes())
    for attempt in ("first", "again"):
        result = invoke("run", "-p", "denoise method=nlm sigma=5", src, "--json")
        assert result.exit_code == 0, result.output  # the rerun used to fail: 'a.denoise.png exists; pass --overwrite'
    assert summary_of(result)["skipped"] == 1 and (src / "a.denoise.png").exists()
    # and its log ends as a batch's does, for a script reading it
    text = invoke("run", "-p", "denoise method=nlm sigma=5", src)
    assert text.exit_code == 0 and text.stderr.splitlines()[-1].startswith("done 0, skipped 1, failed 0 in ")
    named = invoke("denoise", src / "a.png", "--method", "nlm", "--sigma", "5")  # a file named alone: no journal
    assert named.exit_code == 1 and "pass --overwrite" in named.stderr
    (src / "b.png").write_bytes(b"not a photo")
    (src / "a.png").unlink()
    (src / "a.denoise.png").unlink()
    lone_failure = invoke("run", "-p", "denoise method=nlm sigma=5", src)
    assert lone_failure.exit_code == 1 and "done 0, skipped 0, failed 1" in lone_failure.stderr
    assert lone_failure.stderr.splitlines()[-1] == "Error: 1 of 1 images failed (--retry-failed redoes only those)"
    named = invoke("denoise", src / "b.png", "--method", "nlm", "--sigma", "5")  # named alone: its own error
    assert named.exit_code == 1 and named.stderr.splitlines() == [f"Error: {src / 'b.png'}: not an image (unrecognised file contents)"]


def test_an_output_that_is_another_named_input_is_refused(invoke, folder, tmp_path):
    a, b = folder / "img0.png", folder / "img0.denoise.png"
    b.write_bytes((folder / "img1.png").read_bytes())
    kept = b.read_bytes()
    result = invoke("denoise", a, b, "--sigma", "5", "--method", "nlm", "--overwrite")
    assert result.exit_code == 2 and "is also an input" in result.stderr
    assert b.read_bytes() == kept


@pytest.mark.parametrize(
    "args,message",
    [
        (["--in-place", "-o", "OUT"], "--in-place writes over the inputs"),
        (["-o", "FILE"], "is a file; give a folder"),
        (["-o", "OUT/one.png"], "names one image, but there are 4 inputs"),
        (["--force", "--retry-failed"], "give one of them"),
        (["--name", "{stem}", "-o", "OUT"], "no file suffix"),
        (["--format", "png", "--name", "{stem}.jpg", "-o", "OUT"], "would write PNG data into a .jpg file"),
        (["--mask-color", "zzz"], "--mask-color: expected a hex colour"),
        (["--mask", "MISSING"], "--mask MISSING: no such file"),
    ],
)
def test_option_conflicts_are_usage_errors_before_any_image(invoke, folder, tmp_path, args, message):
    (tmp_path / "FILE").write_text("not a folder")
    args = [str(tmp_path / a) if a in ("OUT", "FILE") else a.replace("OUT", str(tmp_path / "OUT")) for a in args]
    before = sorted(folder.rglob("*"))
    verb = "inpaint" if any(a.startswith("--mask") for a in args) else "denoise"
    result = invoke(verb, folder, "-r", "--method", "ns" if verb == "inpaint" else "nlm", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(folder.rglob("*")) == before and not (tmp_path / "OUT").exists()


def test_an_output_folder_that_cannot_be_made_is_one_line(invoke, folder, tmp_path):
    (tmp_path / "FILE").write_text("a file where a folder would go")
    result = invoke("denoise", folder, "--sigma", "5", "--method", "nlm", "-o", tmp_path / "FILE" / "out")
    assert result.exit_code == 1, result.output
    assert "cannot write to" in result.stderr and "unexpected" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_multi_frame_inputs_warn_and_in_place_refuses_them(invoke, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    pages = [Image.fromarray(smooth_rgb(seed=i)) for i in range(3)]
    pages[0].save(src / "pages.tif", save_all=True, append_images=pages[1:])
    pages[0].save(src / "anim.webp", save_all=True, append_images=pages[1:2], lossless=True)
    pages[0].save(src / "single.png")
    result = invoke("denoise", src, "--sigma", "5", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"Warning: {src / 'pages.tif'} has 3 pages; only the first is edited" in result.stderr.splitlines()
    assert f"Warning: {src / 'anim.webp'} has 2 frames; only the first is edited" in result.stderr.splitlines()
    assert "single.png has" not in result.stderr
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    result = invoke("denoise", src, "--sigma", "30", "--in-place", "--json")
    assert result.exit_code == 1  # the batch went on: the single-frame file was edited
    summary = summary_of(result)
    assert summary["done"] == 1 and summary["outputs"][0]["input"].endswith("single.png")
    assert sorted(os.path.basename(f["input"]) for f in summary["failures"]) == ["anim.webp", "pages.tif"]
    assert all("only the first is edited, so --in-place would destroy the others" in f["error"]
               and "\n" not in f["error"] for f in summary["failures"])
    after = {p.name: p.read_bytes() for p in src.iterdir() if not p.name.startswith(".imgedit-journal")}
    assert after.pop("single.png") != before.pop("single.png") and after == before  # the refused ones untouched


@pytest.mark.skipif(sys.platform == "win32", reason="links and modes")
def test_in_place_refuses_links_and_read_only_photos_and_edits_the_rest(invoke, tmp_path):
    # a rename over a link replaced the link and left its target as it was;
    # a read-only photo (a photographer's way to keep originals) was replaced
    src = tmp_path / "in"
    (src / "kept").mkdir(parents=True)
    for name in ("kept/target.png", "locked.png", "plain.png"):
        Image.fromarray(smooth_rgb(seed=len(name))).save(src / name)
    (src / "link.png").symlink_to("kept/target.png")
    os.chmod(src / "locked.png", 0o444)
    before = {name: (src / name).read_bytes() for name in ("kept/target.png", "locked.png", "plain.png")}
    result = invoke("denoise", src / "link.png", src / "locked.png", src / "plain.png",
                    "--in-place", "--sigma", "5", "--method", "nlm", "--json")
    assert result.exit_code == 1
    errors = {os.path.basename(f["input"]): f["error"] for f in summary_of(result)["failures"]}
    assert "is a symbolic link: --in-place would replace the link" in errors["link.png"]
    assert str(src / "kept" / "target.png") in errors["link.png"]
    assert "is read-only, so --in-place leaves it as it is" in errors["locked.png"]
    assert (src / "link.png").is_symlink() and (src / "kept/target.png").read_bytes() == before["kept/target.png"]
    assert (src / "locked.png").read_bytes() == before["locked.png"]
    assert (src / "plain.png").read_bytes() != before["plain.png"]



@pytest.mark.skipif(sys.platform == "win32", reason="links")
def test_in_place_does_not_edit_through_a_link_to_a_folder_outside_the_tree(invoke, tmp_path):
    # a downloaded folder's "gallery -> ~/Pictures" had every photo there
    # rewritten by -r --in-place, also one its own link to a file reached
    pictures, download = tmp_path / "home" / "Pictures", tmp_path / "dl"
    pictures.mkdir(parents=True)
    download.mkdir()
    Image.fromarray(smooth_rgb(seed=1)).save(pictures / "mine.png")
    Image.fromarray(smooth_rgb(seed=2)).save(download / "a.png")
    (download / "gallery").symlink_to(pictures)
    (download / "b.png").symlink_to(pictures / "mine.png")
    mine = (pictures / "mine.png").read_bytes()
    result = invoke("denoise", download, "-r", "--in-place", "--sigma", "5", "--method", "nlm", "--json")
    assert result.exit_code == 1
    failures = summary_of(result)["failures"]
    assert [os.path.basename(f["input"]) for f in failures] == ["mine.png"]
    assert f"lies behind the link {download / 'gallery'}, outside the folder named" in failures[0]["error"]
    assert (pictures / "mine.png").read_bytes() == mine and summary_of(result)["done"] == 1  # a.png, inside
    # the folder the link leads to, named, is edited
    named = invoke("denoise", download / "gallery", "--in-place", "--sigma", "5", "--method", "nlm")
    assert named.exit_code == 0 and (pictures / "mine.png").read_bytes() != mine, named.output


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_a_private_photo_gives_a_private_edit(invoke, tmp_path):
    # a 0600 photo gave a 0644 edit, readable by everyone (cp keeps it 0600);
    # a photo others may read gives the umask's mode, and a replaced output keeps its own
    import stat

    before = os.umask(0o022)
    try:
        for name, mode in (("private.png", 0o600), ("group.png", 0o640), ("open.png", 0o644)):
            Image.fromarray(smooth_rgb()).save(tmp_path / name)
            os.chmod(tmp_path / name, mode)
        result = invoke("denoise", tmp_path / "private.png", tmp_path / "group.png", tmp_path / "open.png",
                        "--sigma", "5", "--method", "nlm")
        assert result.exit_code == 0, result.output
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("*.denoise.png")}
        assert modes == {"private.denoise.png": 0o600, "group.denoise.png": 0o640, "open.denoise.png": 0o644}
        os.chmod(tmp_path / "open.denoise.png", 0o664)
        again = invoke("denoise", tmp_path / "private.png", "-o", tmp_path / "open.denoise.png", "--overwrite",
                       "--sigma", "6", "--method", "nlm")
        assert again.exit_code == 0 and stat.S_IMODE((tmp_path / "open.denoise.png").stat().st_mode) == 0o664
    finally:
        os.umask(before)

def _as_camera_preview(data: bytes) -> bytes:
    """An MPO (as Pillow writes it) whose second image is typed as cameras type
    their previews, "Large Thumbnail (VGA Equivalent)", in its MP index."""
    import struct

    at = data.index(b"MPF\x00") + 4
    order = "<" if data[at:at + 2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, at + 4)
    (count,) = struct.unpack_from(order + "H", data, at + ifd)
    for i in range(count):
        tag, _, _, value = struct.unpack_from(order + "HHII", data, at + ifd + 2 + 12 * i)
        if tag == 0xB002:  # the MP entries, 16 bytes each, the attribute first
            out = bytearray(data)
            (attribute,) = struct.unpack_from(order + "I", out, at + value + 16)
            struct.pack_into(order + "I", out, at + value + 16, attribute & 0xFF000000 | 0x010001)
            return bytes(out)
    raise AssertionError("no MP entries")


def test_camera_jpegs_with_a_preview_are_said_once_and_edited_in_place(invoke, tmp_path):
    # many cameras write MPO JPEGs (the photo, then a preview): a batch of them
    # warned once per photo, and --in-place refused every one; a stereo pair's
    # second eye (an MPO image of another type) is still a frame
    src = tmp_path / "in"
    src.mkdir()
    photo = Image.fromarray(smooth_rgb(48, 64, seed=1))
    for name in ("a.jpg", "b.jpg", "c.jpg", "stereo.jpg"):
        buffer = io.BytesIO()
        photo.save(buffer, format="MPO", save_all=True, append_images=[photo.resize((16, 12))])
        (src / name).write_bytes(buffer.getvalue() if name == "stereo.jpg" else _as_camera_preview(buffer.getvalue()))
    assert Image.open(src / "a.jpg").n_frames == 2
    result = invoke("denoise", src, "--sigma", "5", "--method", "nlm", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if "preview" in line]
    assert len(said) == 1 and "holds its camera's preview besides the photo" in said[0]
    assert f"{src / 'stereo.jpg'} has 2 frames; only the first is edited" in result.stderr
    assert {Image.open(p).size for p in (tmp_path / "out").glob("*.jpg")} == {(64, 48)}
    in_place = invoke("denoise", src, "--sigma", "5", "--method", "nlm", "--in-place", "--json")
    assert in_place.exit_code == 1 and summary_of(in_place)["done"] == 3, in_place.output
    assert "stereo.jpg has 2 frames" in summary_of(in_place)["failures"][0]["error"]
    edited = Image.open(src / "a.jpg")
    assert edited.size == (64, 48) and getattr(edited, "n_frames", 1) == 1


def test_python_api_masks_and_tensor_contract(folder, tmp_path):
    hole = np.zeros((48, 64), np.uint8)
    hole[10:20, 10:20] = 255
    Image.fromarray(hole).save(tmp_path / "hole.png")
    summary = imgedit.run("inpaint method=telea", folder / "img0.png", tmp_path / "filled.png", mask=tmp_path / "hole.png")
    assert len(summary.done) == 1 and "hole.png" in summary.done[0].note
    image = torch.rand(2, 3, 24, 24)
    out = imgedit.run("inpaint method=telea", image, mask_box=(4, 4, 6, 6))
    changed = (out != image).any(dim=1)
    assert changed.any() and not changed[:, :4].any() and not changed[:, 10:].any()
    gray = imgedit.run("denoise method=nlm sigma=5", torch.rand(1, 1, 16, 16))
    assert gray.shape == (1, 3, 16, 16)
    bad_calls = [
        (lambda: imgedit.run("denoise", image, tmp_path / "x.png"), UsageError, "for a tensor the result is returned"),
        (lambda: imgedit.run("denoise", image, bogus=1), UsageError, "bogus do not apply to a tensor"),
        (lambda: imgedit.run("denoise", (image * 255).to(torch.uint8)), imgedit.errors.ShapeError, "floating-point"),
        (lambda: imgedit.run("denoise", torch.rand(1, 4, 8, 8)), imgedit.errors.ShapeError, "(B, 3, H, W)"),
        (lambda: imgedit.run("denoise", torch.rand(0, 3, 8, 8)), imgedit.errors.ShapeError, "(B, 3, H, W)"),
        (lambda: imgedit.run("denoise", image * 5), UsageError, "must be in [0, 1]"),
        (lambda: imgedit.run("denoise", np.zeros((1, 3, 8, 8))), UsageError, "target must be"),
        (lambda: imgedit.run("denoise", [str(folder), image]), UsageError, "a list holding Tensor"),
        (lambda: imgedit.run("denoise", []), UsageError, "list of targets is empty"),
        (lambda: imgedit.run(42, image), UsageError, "pipeline must be"),
        (lambda: imgedit.run("denoise", folder, tmp_path / "q", quality=500), UsageError, "quality must be"),
        (lambda: imgedit.run("denoise", folder, tmp_path / "q", workers=0), UsageError, "workers must be"),
        (lambda: imgedit.run("inpaint", folder, tmp_path / "q", mask_box=(1, 2)), UsageError, "--mask-box"),
        (lambda: imgedit.run("inpaint", folder, tmp_path / "q", mask=tmp_path / "none.png"), UsageError, "no such file"),
    ]
    for call, kind, message in bad_calls:
        with pytest.raises(kind) as info:
            call()
        assert message in str(info.value)
    assert not (tmp_path / "q").exists()


def test_fail_fast_says_how_many_were_not_attempted_and_how_to_go_on(invoke, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a0.png").write_bytes(b"not a png")
    for i in range(1, 12):
        Image.fromarray(smooth_rgb(seed=i)).save(src / f"a{i}.png")
    result = invoke("denoise", src, "--sigma", "5", "--method", "nlm", "-o", tmp_path / "out", "--fail-fast", "--workers", "1")
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "stopped there (--fail-fast)" in last and "not attempted" in last and "run the same command again" in last
    again = invoke("denoise", src, "--sigma", "5", "--method", "nlm", "-o", tmp_path / "out", "--json")
    assert again.exit_code == 1 and summary_of(again)["failed"] == 1
    assert len(list((tmp_path / "out").glob("*.png"))) == 11


def test_ray_address_without_the_ray_engine_is_a_usage_error(invoke, folder, tmp_path):
    result = invoke("denoise", folder, "--method", "nlm", "-o", tmp_path / "out", "--ray-address", "127.0.0.1:6379")
    assert result.exit_code == 2 and "needs --engine ray" in result.stderr
    env = invoke("denoise", folder, "--method", "nlm", "--sigma", "5", "-o", tmp_path / "out", "--json",
                 env={"IMGEDIT_RAY_ADDRESS": "127.0.0.1:6379"})
    assert env.exit_code == 0, env.output  # the environment variable alone is not a request


@pytest.mark.parametrize("args, env, message", [
    (("--device", "cuda:7"), {}, "device 'cuda:7' is not available"),
    ((), {"IMGEDIT_DEVICE": "bogus"}, "device 'bogus' is not a device"),
    ((), {"IMGEDIT_MAX_PIXELS": "inf"}, "IMGEDIT_MAX_PIXELS='inf' is not a number of pixels"),
    ((), {"IMGEDIT_MAX_PIXELS": "-5"}, "IMGEDIT_MAX_PIXELS='-5' is not a number of pixels"),  # was: no limit
    ((), {"IMGEDIT_MAX_PIXELS": "0.9"}, "IMGEDIT_MAX_PIXELS='0.9' is not a number of pixels"),
    ((), {"IMGEDIT_CPU_MEMORY_MB": "-5"}, "IMGEDIT_CPU_MEMORY_MB='-5' is not a number of megabytes above 0"),
])
def test_a_bad_device_or_limit_is_one_usage_error_before_any_image(invoke, folder, tmp_path, args, env, message):
    result = invoke("denoise", folder, "--sigma", "5", "-o", tmp_path / "out", *args, env=env)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, message", [
    ({"device": "bogus"}, "device 'bogus' is not a device"),
    ({"precision": "fp8"}, "precision 'fp8' is not valid"),
    ({"tile": "x"}, "tile: expected a size in px, 0 or 'auto', got 'x'"),
])
def test_the_api_checks_device_precision_and_tile_before_any_image(folder, tmp_path, option, message):
    import imgedit
    from imgedit.errors import ImgeditError

    with pytest.raises(ImgeditError, match=message) as error:
        imgedit.run("denoise sigma=5", folder, tmp_path / "out", **option)
    assert error.value.exit_code == 2 and not (tmp_path / "out").exists()


def test_a_model_that_will_not_load_is_one_error_without_per_image_advice(invoke, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGEDIT_WEIGHTS", str(tmp_path / "no-weights"))
    result = invoke("denoise", folder, "--sigma", "5", "-o", tmp_path / "out")
    last = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 1 and "denoise-vae" in last and last.endswith("no image was processed")
    assert "--fail-fast" not in result.stderr and "not attempted" not in result.stderr
    # said once: not also as the first image's failure, in its list and in a summary of "failed 1"
    assert result.stderr.count("missing file") == 1 and "failed" not in result.stderr, result.stderr
    journal = tmp_path / "out" / ".imgedit-journal.jsonl"
    assert not journal.exists() or '"failed"' not in journal.read_text()  # not that image's failure


def test_a_model_that_will_not_load_is_named_after_an_image_that_failed_for_itself(invoke, tmp_path, monkeypatch):
    # a corrupt first image took the run's error: "corrupt image ...; no image was processed"
    import imgedit
    from imgedit.errors import WeightsError

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # corrupt, read first
    for name in ("b.png", "c.png"):
        Image.fromarray(smooth_rgb(24, 32)).save(src / name)
    monkeypatch.setenv("IMGEDIT_WEIGHTS", str(tmp_path / "no-weights"))
    result = invoke("denoise", src, "--sigma", "5", "-o", tmp_path / "out")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and lines[-1].startswith("Error: model 'denoise-vae': missing file"), result.stderr
    assert lines[-1].endswith("no image was processed") and any(line.startswith("failed: ") and "a.png" in line
                                                                 for line in lines[:-1])
    with pytest.raises(WeightsError, match="missing file") as error:  # the Python API raises it as the model did
        imgedit.run("denoise sigma=5", src, tmp_path / "api")
    assert error.value.summary.unbuildable


def test_reduced_precision_is_part_of_the_recipe(invoke, folder, tmp_path):
    out = tmp_path / "out"
    assert summary_of(invoke("denoise", folder, "--sigma", "5", "-o", out, "--json"))["done"] == 3
    same = summary_of(invoke("denoise", folder, "--sigma", "5", "-o", out, "--json", "--precision", "fp32"))
    assert same["skipped"] == 3  # fp32 is what auto gave on the CPU: the same bytes
    bf16 = summary_of(invoke("denoise", folder, "--sigma", "5", "-o", out, "--json", "--precision", "bf16"))
    assert bf16["done"] == 3  # other bytes, so not "done in an earlier run"


def test_a_tile_size_given_is_part_of_the_recipe(invoke, folder, tmp_path):
    out = tmp_path / "out"
    assert summary_of(invoke("denoise", folder, "--method", "nlm", "--sigma", "5", "-o", out, "--json"))["done"] == 3
    tiled = summary_of(invoke("denoise", folder, "--method", "nlm", "--sigma", "5", "-o", out, "--json", "--tile", "16"))
    assert tiled["done"] == 3  # seams move values by a level: not "done in an earlier run"
    again = summary_of(invoke("denoise", folder, "--method", "nlm", "--sigma", "5", "-o", out, "--json", "--tile", "16"))
    assert again["skipped"] == 3
    untiled = summary_of(invoke("denoise", folder, "--method", "nlm", "--sigma", "5", "-o", out, "--json", "--tile", "0"))
    assert untiled["done"] == 3  # 0 (no tiling) given is a choice too
    auto = summary_of(invoke("denoise", folder, "--method", "nlm", "--sigma", "5", "-o", out, "--json", "--tile", "auto"))
    assert auto["done"] == 3  # auto is the plain command's key: what the first run wrote, now replaced


@pytest.fixture
def jpegs(tmp_path):
    """Photos saved at quality 80: with no --quality their edits keep it."""
    src = tmp_path / "jpegs"
    src.mkdir()
    for i in range(2):
        Image.fromarray(smooth_rgb(seed=i)).save(src / f"img{i}.jpg", quality=80)
    return src


def test_no_quality_and_quality_95_are_different_results(invoke, jpegs, tmp_path):
    out, nlm = tmp_path / "out", ("--method", "nlm", "--sigma", "5")
    assert summary_of(invoke("denoise", jpegs, *nlm, "-o", out, "--json"))["done"] == 2
    kept = (out / "img0.jpg").read_bytes()
    asked = summary_of(invoke("denoise", jpegs, *nlm, "-o", out, "--json", "--quality", "95"))
    assert asked["done"] == 2  # the first run kept quality 80: not "done in an earlier run"
    assert (out / "img0.jpg").read_bytes() != kept
    assert summary_of(invoke("denoise", jpegs, *nlm, "-o", out, "--json", "--quality", "95"))["skipped"] == 2
    assert summary_of(invoke("denoise", jpegs, *nlm, "-o", out, "--json"))["done"] == 2


@pytest.mark.parametrize("quality", [(), ("--quality", "95")])
def test_results_keyed_as_earlier_versions_keyed_them_stay_done(invoke, jpegs, tmp_path, monkeypatch, quality):
    """Journals written before 2026-12-08 (no --quality keyed as --quality
    95): their results are not redone by a rerun with no --quality or with
    95, nor edited a second time in place."""
    from imgedit import journal_keys

    recipes = journal_keys.recipes
    out, nlm = tmp_path / "out", ("--method", "nlm", "--sigma", "5")
    photos = shutil.copytree(jpegs, tmp_path / "edited in place")
    with monkeypatch.context() as earlier:
        earlier.setattr(journal_keys, "recipes", lambda pipeline, options: (recipes(pipeline, options)[1],) * 2)
        assert summary_of(invoke("denoise", jpegs, *nlm, "-o", out, "--json"))["done"] == 2
        assert summary_of(invoke("denoise", photos, *nlm, "--in-place", "--json"))["done"] == 2
    assert summary_of(invoke("denoise", jpegs, *nlm, *quality, "-o", out, "--json"))["skipped"] == 2
    dry = invoke("denoise", jpegs, *nlm, *quality, "-o", out, "--dry-run")
    assert dry.exit_code == 0 and "2 already done" in dry.output, dry.output
    edited = (photos / "img0.jpg").read_bytes()
    again = invoke("denoise", photos, *nlm, *quality, "--in-place", "--json")
    assert summary_of(again)["skipped"] == 2 and summary_of(again)["done"] == 0
    assert "earlier in-place edit" not in again.stderr  # known as this recipe's result, not another's
    assert (photos / "img0.jpg").read_bytes() == edited


def test_a_journal_that_cannot_be_written_stops_the_run_in_one_line(invoke, folder, tmp_path, monkeypatch):
    import errno

    import imgedit.journal as journal_module

    class FullDisk:
        def write(self, text):
            raise OSError(errno.EFBIG, "File too large")

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(journal_module, "_open_append", lambda path: FullDisk())
    result = invoke("denoise", folder, "-r", "--sigma", "5", "--method", "nlm", "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: cannot write the resume journal ") and "(File too large)" in last
    assert "unexpected" not in result.stderr
    # the "start" line comes before the rename: no output (nor its temporary file) is left behind
    left = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert left <= {JOURNAL_NAME, LOCK_NAME}, left


def test_a_full_disk_stops_the_batch_at_the_first_output_it_cannot_write(invoke, folder, tmp_path, monkeypatch):
    import errno

    import imgedit.imageio.write as write_module

    encode, written = write_module.encode_to, []

    def fills_the_disk(out, *args):  # the second output finds the disk full
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(encode(out, *args))

    monkeypatch.setattr(write_module, "encode_to", fills_the_disk)
    out = tmp_path / "out"
    result = invoke("denoise", folder, "-r", "--sigma", "5", "--method", "nlm", "-o", out, "--json", "--workers", "1")
    summary = json.loads(result.stdout)
    assert result.exit_code == 1 and summary["done"] == 1 and summary["not_attempted"] >= 1  # not computed to fail
    assert "no space left on device" in summary["error"].lower() and "run the same command again" in summary["error"]
    assert "unexpected" not in result.stderr and not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    monkeypatch.setattr(write_module, "encode_to", encode)
    again = summary_of(invoke("denoise", folder, "-r", "--sigma", "5", "--method", "nlm", "-o", out, "--json"))
    assert again["skipped"] == 1 and again["done"] == 3  # space freed: the rest is done, the first kept


def test_an_interrupted_in_place_run_resumes_without_editing_a_photo_twice(invoke, folder, tmp_path):
    import shutil

    once, resumed = tmp_path / "once", tmp_path / "resumed"
    shutil.copytree(folder, once)
    shutil.copytree(folder, resumed)
    assert invoke("denoise", once, "-r", "--method", "nlm", "--sigma", "20", "--in-place").exit_code == 0
    # as a Ctrl-C leaves it: the first two photos edited, the rest not yet
    first = sorted(resumed.rglob("*.png"))[:2]
    result = invoke("denoise", *first, "--method", "nlm", "--sigma", "20", "--in-place", "--json")
    assert summary_of(result)["done"] == 2
    again = invoke("denoise", resumed, "-r", "--method", "nlm", "--sigma", "20", "--in-place", "--json")
    summary = summary_of(again)
    assert again.exit_code == 0 and summary["done"] == 2 and summary["skipped"] == 2
    for path in sorted(once.rglob("*.png")):
        assert (resumed / path.relative_to(once)).read_bytes() == path.read_bytes()  # each edited exactly once
    plan = json.loads(invoke("denoise", resumed, "-r", "--method", "nlm", "--sigma", "20", "--in-place", "--dry-run",
                             "--json").stdout)
    assert plan["already_done"] == 4


def test_another_pipelines_results_are_not_replaced_without_overwrite(invoke, folder, tmp_path):
    out = tmp_path / "out"
    assert invoke("denoise", folder, "--method", "nlm", "--sigma", "5", "-o", out).exit_code == 0
    denoised = (out / "img0.png").read_bytes()
    other = invoke("inpaint", folder, "--method", "telea", "--mask-box", "2,2,8,8", "-o", out, "--json")
    assert other.exit_code == 1 and summary_of(other)["done"] == 0
    assert "holds an earlier run's denoise result; pass --overwrite" in summary_of(other)["failures"][0]["error"]
    assert (out / "img0.png").read_bytes() == denoised
    changed = invoke("denoise", folder, "--method", "nlm", "--sigma", "9", "-o", out, "--json")
    assert summary_of(changed)["done"] == 3  # the same operations with other parameters: redone, as before
    forced = invoke("inpaint", folder, "--method", "telea", "--mask-box", "2,2,8,8", "-o", out, "--json", "--overwrite")
    assert summary_of(forced)["done"] == 3


def test_a_failed_attempt_does_not_make_a_users_file_replaceable(invoke, folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "img0.png").write_bytes(b"user's own file")
    for _ in range(2):  # the first run's "failed" line must not let the second replace it
        result = invoke("denoise", folder, "--sigma", "5", "--method", "nlm", "-o", out, "--json")
        assert result.exit_code == 1 and "--overwrite" in summary_of(result)["failures"][0]["error"]
    assert (out / "img0.png").read_bytes() == b"user's own file"


def test_an_output_another_run_finished_meanwhile_is_skipped_not_refused(folder, tmp_path):
    from imgedit.inputs import InputFile
    from imgedit.journal import Journal, bytes_digest, make_key
    from imgedit.pipeline import Pipeline
    from imgedit.journal_keys import recipe
    from imgedit.runner import RunOptions, _Batch, _Work

    out = tmp_path / "out"
    out.mkdir()
    pipeline, options = Pipeline.parse("denoise method=nlm sigma=5"), RunOptions(output=out)
    ours = _Batch(pipeline, options, Journal(out), None)  # this run read the journal: nothing done yet
    data = (folder / "img0.png").read_bytes()
    other = Journal(out)  # a second run, started at the same time on the same inputs, finishes img0 first
    (out / "img0.png").write_bytes(b"its result")
    key = make_key(bytes_digest(data), recipe(pipeline, options))
    other.record(out / "img0.png", key, "start", replacing=False, ops=pipeline.label)
    other.record(out / "img0.png", key, "done", size=len(b"its result"), ops=pipeline.label)
    other.close()
    work = _Work(InputFile(folder / "img0.png", folder), out / "img0.png")
    assert ours._skip(work, data) and work.result.note == "done in an earlier run"  # not "exists; pass --overwrite"


def test_the_closing_line_advises_overwrite_when_outputs_are_in_the_way(invoke, folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("img0.png", "img1.png"):
        (out / name).write_bytes(b"user's own file")
    result = invoke("denoise", folder, "--sigma", "5", "--method", "nlm", "-o", out)
    last = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 1 and last == ("Error: 2 of 3 images failed (their outputs exist: pass --overwrite to "
                                              "replace them, or give another -o)")
    (folder / "img2.png").write_bytes(b"not a png")  # a failure a retry can help with (once the file is fixed)
    result = invoke("denoise", folder, "--sigma", "5", "--method", "nlm", "-o", out)
    assert result.stderr.strip().splitlines()[-1].endswith("(--retry-failed redoes only those)")


def test_a_verbs_options_say_which_methods_take_them(invoke):
    text = " ".join(invoke("inpaint", "--help").output.split())
    assert "--radius INTEGER (ns, telea) Inpainting neighbourhood radius" in text
    assert "--seed INTEGER (vae) Draw a random plausible fill" in text
    assert "--dilate" in text and "(vae) Grow" not in text  # a common option names no method


def test_a_result_holding_several_side_by_side_says_so(invoke, test_plugin, folder, tmp_path):
    import torch

    from imgedit.operations import Capabilities, Operation

    class Twice:
        def __call__(self, image, mask):
            return torch.cat([image, 1 - image], dim=-1)

        def output_shape(self, shape):
            return (*shape[:-1], 2 * shape[-1])

    twice = Operation("twice", "sheet", lambda ctx: Twice(), capabilities=Capabilities(tileable=False),
                      resizes=lambda params: True)
    test_plugin("sheet_plugin", register_operations=lambda register: register(twice))
    result = invoke("run", "-p", "twice", folder / "img0.png", "-o", tmp_path / "sheet.png")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == f"wrote {tmp_path / 'sheet.png'} (2 results side by side)"
    report = json.loads(invoke("run", "-p", "twice", folder / "img1.png", "-o", tmp_path / "s2.png", "--json").stdout)
    assert report["outputs"][0]["panels"] == 2


def test_a_single_large_image_reports_its_tiles(invoke, folder, tmp_path, monkeypatch):
    from imgedit.verbs import StageProgress

    monkeypatch.setattr(StageProgress, "interval", 0.0)  # a line per tile, not one every 10 s
    result = invoke("denoise", folder / "img0.png", "--method", "nlm", "--sigma", "5", "--tile", "32",
                    "-o", tmp_path / "one.png")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if " tiles (" in line]
    assert lines and all(line.startswith("stage 1 (denoise): ") for line in lines), result.stderr
    import re

    done, total = map(int, re.search(r": (\d+)/(\d+) tiles", lines[-1]).groups())
    assert done == total > 1  # the last line: every tile
    batch = invoke("denoise", folder, "--method", "nlm", "--sigma", "5", "--tile", "32", "-o", tmp_path / "many")
    assert batch.exit_code == 0 and " tiles (" not in batch.stderr  # a batch counts images


def test_progress_lines_say_seconds_per_image_when_slow_and_eta_in_minutes():
    from imgedit.verbs import duration, pace

    assert pace(15.2, "img") == "15.2 img/s"
    assert pace(1 / 26.7, "image") == "26.7 s/image"  # was "0.0/s" in a slow eval
    assert [duration(s) for s in (0, 45.4, 99, 615, 3600, 12000)] == ["0s", "45s", "99s", "10m15s", "1h00m", "3h20m"]


def test_an_upgraded_plugin_redoes_kept_inputs_but_not_edits_in_place(invoke, folder, tmp_path, test_plugin):
    from imgedit.operations import Operation
    from imgedit.plugins import plugin_info

    brighten = Operation(name="brighten", method="add", create=lambda ctx: (lambda image, mask: (image + 0.1).clamp(0, 1)))
    test_plugin("imgedit_brighten", register_operations=lambda register: register(brighten))
    plugin_info("imgedit_brighten").version = "1.0"
    out = tmp_path / "out"
    assert summary_of(invoke("run", "-p", "brighten", folder, "-o", out, "--json"))["done"] == 3
    assert summary_of(invoke("run", "-p", "brighten", folder, "-o", out, "--json"))["skipped"] == 3
    in_place = tmp_path / "in-place"
    shutil.copytree(folder, in_place)
    assert summary_of(invoke("run", "-p", "brighten", in_place, "--in-place", "--json"))["done"] == 3
    edited = (in_place / "img0.png").read_bytes()
    plugin_info("imgedit_brighten").version = "1.1"  # a new release may compute other bytes
    assert summary_of(invoke("run", "-p", "brighten", folder, "-o", out, "--json"))["done"] == 3
    assert summary_of(invoke("run", "-p", "brighten", in_place, "--in-place", "--json"))["skipped"] == 3
    assert (in_place / "img0.png").read_bytes() == edited  # brightened once, not twice


def _age(folder, seconds=3600):
    """Inputs last changed an hour ago, as a folder of photos is: only then is a file's stat trusted."""
    for path in folder.rglob("*.png"):
        os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_a_rerun_skips_unchanged_inputs_without_reading_them(invoke, folder, tmp_path, monkeypatch):
    import imgedit.imageio.read as read_module

    _age(folder)
    out = tmp_path / "out"
    assert summary_of(invoke("denoise", folder, "-r", "--method", "nlm", "-o", out, "--json"))["done"] == 4
    reads = []
    real_read = read_module.read_file_bytes
    monkeypatch.setattr(read_module, "read_file_bytes", lambda path: reads.append(path) or real_read(path))
    again = summary_of(invoke("denoise", folder, "-r", "--method", "nlm", "-o", out, "--json"))
    assert again["skipped"] == 4 and reads == []
    plan = invoke("denoise", folder, "-r", "--method", "nlm", "-o", out, "--dry-run")
    assert "4 inputs (4 already done)" in plan.output and reads == []
    # an edit shows in the file's mtime (and size): that input is read and redone, the others not
    Image.fromarray(smooth_rgb(seed=9)).save(folder / "img1.png")
    changed = summary_of(invoke("denoise", folder, "-r", "--method", "nlm", "-o", out, "--json"))
    assert changed["done"] == 1 and [p.name for p in reads] == ["img1.png"]


def test_a_dry_run_reads_only_the_inputs_the_journal_has_a_result_for(invoke, folder, tmp_path, monkeypatch):
    import imgedit.dryrun as dryrun

    hashed = []
    real_digest = dryrun.file_digest
    monkeypatch.setattr(dryrun, "file_digest", lambda path: hashed.append(path.name) or real_digest(path))
    out = tmp_path / "out"
    plan = invoke("denoise", folder, "-r", "--method", "nlm", "-o", out, "--dry-run")
    assert "4 inputs (0 already done)" in plan.output and hashed == []  # nothing recorded: nothing to read
    assert summary_of(invoke("denoise", folder, "-r", "--method", "nlm", "-o", out, "--json"))["done"] == 4
    plan = invoke("denoise", folder, "-r", "--method", "nlm", "-o", out, "--dry-run")
    assert "4 inputs (4 already done)" in plan.output  # just written: their stat is not trusted, so they are read
    assert sorted(hashed) == sorted(p.name for p in folder.rglob("*.png"))


def test_an_input_changed_within_the_clock_tick_of_its_record_is_read(invoke, tmp_path):
    # a file saved again within a second or two of the run that read it may keep its size and mtime
    # (a coarse clock, an uncompressed format): such a file is read, not trusted by its stat
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photo = src / "a.bmp"
    Image.fromarray(smooth_rgb(seed=1)).save(photo)
    assert summary_of(invoke("denoise", src, "--method", "nlm", "-o", out, "--json"))["done"] == 1
    before = os.stat(photo)
    Image.fromarray(smooth_rgb(seed=2)).save(photo)  # the same size: an uncompressed bitmap
    os.utime(photo, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same mtime, as a coarse clock gives
    assert os.stat(photo).st_size == before.st_size and os.stat(photo).st_ino == before.st_ino
    assert summary_of(invoke("denoise", src, "--method", "nlm", "-o", out, "--json"))["done"] == 1


def test_a_second_ctrl_c_while_the_writes_in_flight_end_still_counts_them(monkeypatch):
    from concurrent.futures import Future
    from pathlib import Path
    from types import SimpleNamespace

    from imgedit import runner
    from imgedit.inputs import InputFile

    second_press = []

    class Batch:
        options, build_failed = SimpleNamespace(depth=4, workers=2, fail_fast=False), False

        def read_ahead(self):
            return 4

        def decode(self, work):
            return work

        def compute(self, work):
            if work.item.path.name == "c.png":
                second_press.append("armed")
                raise KeyboardInterrupt  # the first Ctrl-C, while the third image computes
            return work

        def encode(self, work):
            time.sleep(0.2)  # a write still under way when Ctrl-C comes
            work.result.status = "done"
            return work

    result_of = Future.result

    def result(self, timeout=None):
        if second_press == ["armed"]:
            second_press.append("pressed")
            raise KeyboardInterrupt  # the second Ctrl-C, while the writes in flight end
        return result_of(self, timeout)

    monkeypatch.setattr(Future, "result", result)
    finished = []
    works = [runner._Work(InputFile(Path(name), Path(".")), Path("out") / name) for name in ("a.png", "b.png", "c.png")]
    with pytest.raises(KeyboardInterrupt):
        runner.run_works(Batch(), works, finished.append)
    assert second_press == ["armed", "pressed"]
    assert [(r.source.name, r.status) for r in finished] == [("a.png", "done"), ("b.png", "done")]


def test_a_batch_of_large_photos_reads_fewer_ahead(monkeypatch):
    # four 96 MP photos read ahead, each 1.6 GB as floats with its mask, took 9 GB
    from concurrent.futures import Future

    from imgedit import runner
    from imgedit.pipeline import Pipeline

    batch = runner._Batch(Pipeline.parse("denoise method=nlm sigma=5"), runner.RunOptions(depth=4), None, None)
    assert batch.read_ahead() == 1  # no image read yet (a resumed run skips its first ones): its size is unknown
    monkeypatch.setattr(runner, "READ_AHEAD_PIXELS", 4 * 100)
    for largest, ahead in ((10, 4), (100, 4), (150, 2), (1000, 1)):
        batch._largest = largest
        assert batch.read_ahead() == ahead

    # the reading asks again as each image ends, and the first goes alone
    class Pool:  # runs each item at once, counting what was asked for
        submitted = 0

        def submit(self, fn, value):
            self.submitted += 1
            done = Future()
            done.set_result(fn(value))
            return done

    pool, depth = Pool(), {"now": 1}
    in_flight = []
    for count, value in enumerate(runner._bounded_map(pool, lambda x: x, list(range(10)), lambda: depth["now"]), 1):
        in_flight.append(pool.submitted - count)  # read ahead of the one in hand
        depth["now"] = 3 if value >= 1 else 1  # the first two read one ahead, then three
    assert in_flight == [1, 1, 3, 3, 3, 3, 3, 2, 1, 0]


def test_another_run_s_output_renamed_into_place_the_same_instant_is_kept_with_its_record(invoke, tmp_path,
                                                                                         monkeypatch):
    # two runs finishing the same instant both passed the check before the rename: the last rename won, and
    # the loser's "start" line, left last in the journal, made the winner's file the loser's result
    from imgedit import runner
    from imgedit.journal import Journal

    src, out = tmp_path / "b", tmp_path / "out"
    src.mkdir()
    Image.fromarray(smooth_rgb(seed=2)).save(src / "x.png")
    theirs = io.BytesIO()
    Image.fromarray(smooth_rgb(seed=1)).save(theirs, format="PNG")
    theirs = theirs.getvalue()
    record_start = runner._Batch._record_start

    def other_run_renames_meanwhile(self, work, temporary):
        record_start(self, work, temporary)
        (out / "x.png").write_bytes(theirs)
        other = Journal(out)
        other.record(out / "x.png", "k-other", "done", size=len(theirs), ops="other", src="a/x.png", src_sha256="d")
        other.close()

    monkeypatch.setattr(runner._Batch, "_record_start", other_run_renames_meanwhile)
    result = invoke("denoise", src, "--sigma", "5", "-o", out)
    monkeypatch.undo()
    assert result.exit_code == 1 and "out/x.png was written by another run" in result.output, result.output
    assert (out / "x.png").read_bytes() == theirs
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    record = Journal(out)
    assert (record.get(out / "x.png").status, record.owner(out / "x.png")) == ("done", "other")
    again = invoke("denoise", src, "--sigma", "5", "-o", out)  # not taken for this input's result, nor replaced
    assert again.exit_code == 1 and "holds an earlier run's other result" in again.output, again.output
    assert (out / "x.png").read_bytes() == theirs


def test_a_single_file_s_result_beside_its_photo_is_not_an_input_of_a_folder_run(invoke, tmp_path):
    # 'imgedit denoise photo.png' keeps no journal, so 'imgedit inpaint .' took photo.denoise.png for a photo
    folder = tmp_path / "shots"
    folder.mkdir()
    for name, seed in (("photo.png", 1), ("other.png", 2), ("keep.inpaint.png", 3)):  # no keep.*: a photo
        Image.fromarray(smooth_rgb(seed=seed)).save(folder / name)
    single = invoke("denoise", folder / "photo.png", "--sigma", "5", "--method", "nlm")
    assert single.exit_code == 0 and (folder / "photo.denoise.png").exists(), single.output
    assert not (folder / JOURNAL_NAME).exists()
    result = invoke("inpaint", folder, "--mask-box", "2,2,4,4", "--method", "telea", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert [os.path.basename(p) for p in summary_of(result)["left_out_results"]] == ["photo.denoise.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".png") == [
        "keep.inpaint.png", "other.png", "photo.png"]
    named = invoke("inpaint", folder / "photo.denoise.png", "--mask-box", "2,2,4,4", "--method", "telea",
                   "-o", tmp_path / "named.png")
    assert named.exit_code == 0, named.output  # named: edited as asked


def test_a_dangling_link_where_the_output_goes_is_not_blamed_on_another_run(invoke, tmp_path):
    # the create-only-if-absent commit found the link there, and said another run wrote it, on every rerun
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    Image.fromarray(smooth_rgb(seed=1)).save(src / "x.png")
    (out / "x.png").symlink_to(tmp_path / "gone.png")
    result = invoke("denoise", src, "--sigma", "5", "--method", "nlm", "-o", out)
    assert result.exit_code == 1 and "x.png exists; pass --overwrite to replace it" in result.output, result.output
    assert "another run" not in result.output and (out / "x.png").is_symlink()
    replaced = invoke("denoise", src, "--sigma", "5", "--method", "nlm", "-o", out, "--overwrite")
    assert replaced.exit_code == 0 and not (out / "x.png").is_symlink(), replaced.output
