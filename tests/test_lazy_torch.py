"""A rerun with nothing left to do imports no torch (seconds and hundreds of
MB on every poll of a cron job), and says what it said when it did; the checks
made before any image are kept: torch is asked where it must judge."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
from PIL import Image

from conftest import smooth_rgb

#: Runs the imgedit CLI in a fresh interpreter and says on stderr, at exit,
#: where torch was first imported (or that it was not) and how many inputs were read.
PROBE = r"""
import atexit, sys, traceback
first = []

class Finder:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not first:
            first.append("".join(traceback.format_stack(limit=25)))

sys.meta_path.insert(0, Finder())
import imgedit.imageio.read as read  # numpy and Pillow, no torch
reads = []
real_read = read.read_file_bytes
read.read_file_bytes = lambda path, *a, **k: reads.append(path) or real_read(path, *a, **k)
atexit.register(lambda: sys.stderr.write(f"\nPROBE reads={len(reads)} torch={'torch' in sys.modules}\n"
                                         + (f"PROBE first torch import:\n{first[0]}" if first else "")))
sys.argv[0] = "imgedit"
from imgedit.entry import main
main()
"""

CHECK_OPTIONS = r"""
import sys
from imgedit.output_plan import check_compute_options
from imgedit.runner import RunOptions
check_compute_options(RunOptions(device=sys.argv[1] or None, precision=sys.argv[2] or None, tile=512))
print("torch" in sys.modules)
"""

DENOISE = ("--method", "nlm", "--sigma", "5")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("IMGEDIT_DEVICE", "IMGEDIT_CPU_MEMORY_MB")}
    return {**env, **extra}


def probe(*args, **env):
    """(exit code, stdout, stderr without the probe's lines, reads, torch imported, where torch was imported)."""
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True,
                          env=_env(**env), timeout=300)
    stderr, _, said = done.stderr.rpartition("\nPROBE reads=")
    reads, torch = re.match(r"(\d+) torch=(\w+)", said).groups()
    return done.returncode, done.stdout, stderr, int(reads), torch == "True", said


def _folder(tmp_path, count=3):
    """``count`` photos, made a minute ago: a rerun reads one made in the
    seconds before its record (imgedit.journal.RACY_SECONDS), to be sure."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(count):
        Image.fromarray(smooth_rgb(24, 32, seed=i)).save(src / f"p{i}.png")
        os.utime(src / f"p{i}.png", (time.time() - 60,) * 2)
    return src


def _summary(stdout):
    summary = json.loads(stdout)
    summary.pop("seconds")
    return summary


def _untimed(text):
    return re.sub(r" in \d+\.\ds", " in Xs", text)


@pytest.fixture
def done_folder(invoke, tmp_path, monkeypatch):
    """A folder of 3 photos, all denoised into out/ by a first run."""
    monkeypatch.delenv("IMGEDIT_DEVICE", raising=False)
    monkeypatch.delenv("IMGEDIT_CPU_MEMORY_MB", raising=False)
    src, out = _folder(tmp_path), tmp_path / "out"
    first = invoke("denoise", src, "-o", out, *DENOISE, "--json")
    assert first.exit_code == 0 and json.loads(first.stdout)["done"] == 3, first.output
    return src, out


def test_a_rerun_with_nothing_to_do_imports_no_torch_and_says_the_same(invoke, done_folder):
    src, out = done_folder
    journal = (out / ".imgedit-journal.jsonl").read_bytes()
    code, stdout, stderr, reads, torch, said = probe("denoise", src, "-o", out, *DENOISE, "--json")
    assert code == 0 and not torch and reads == 0, stderr + said
    summary = _summary(stdout)
    assert summary["done"] == 0 and summary["skipped"] == 3 and summary["failed"] == 0 and summary["error"] is None
    # what the same rerun says where torch is loaded (in this process), as every rerun did
    loaded = invoke("denoise", src, "-o", out, *DENOISE, "--json")
    assert loaded.exit_code == 0 and _summary(loaded.stdout) == summary and stderr == loaded.stderr

    code, _, text, reads, torch, said = probe("denoise", src, "-o", out, *DENOISE)  # the summary line
    loaded = invoke("denoise", src, "-o", out, *DENOISE)
    assert code == loaded.exit_code == 0 and not torch and reads == 0, text + said
    assert _untimed(text) == _untimed(loaded.stderr) and "done 0, skipped 3, failed 0 in" in text
    assert (out / ".imgedit-journal.jsonl").read_bytes() == journal  # nothing recorded anew


def test_imgedit_run_and_a_touched_photo_import_no_torch_either_and_a_new_one_is_computed(done_folder):
    src, out = done_folder
    code, stdout, stderr, reads, torch, said = probe("run", "-p", "denoise method=nlm sigma=5", src, "-o", out, "--json")
    assert code == 0 and not torch and _summary(stdout)["skipped"] == 3, stderr + said
    # a photo whose time changed is read (and hashed) to tell it is unchanged: still no torch
    os.utime(src / "p1.png", ns=(1_000_000_000, 1_000_000_000))
    code, stdout, stderr, reads, torch, said = probe("denoise", src, "-o", out, *DENOISE, "--json", "-v")
    assert code == 0 and not torch and reads == 1 and _summary(stdout)["skipped"] == 3, stderr + said
    # a new photo among them is computed as ever
    Image.fromarray(smooth_rgb(24, 32, seed=9)).save(src / "p9.png")
    code, stdout, stderr, reads, torch, said = probe("denoise", src, "-o", out, *DENOISE, "--json")
    summary = _summary(stdout)
    assert code == 0 and torch and summary["done"] == 1 and summary["skipped"] == 3, stderr + said
    assert (out / "p9.png").is_file()


def test_an_inpaint_rerun_with_a_box_imports_no_torch(invoke, tmp_path):
    src, out = _folder(tmp_path), tmp_path / "filled"
    args = ("inpaint", src, "-o", out, "--method", "telea", "--mask-box", "4,4,8,8", "--json")
    first = invoke(*args)
    assert first.exit_code == 0 and json.loads(first.stdout)["done"] == 3, first.output
    code, stdout, stderr, reads, torch, said = probe(*args)
    assert code == 0 and not torch and reads == 0, stderr + said
    assert _summary(stdout) == _summary(invoke(*args).stdout) and _summary(stdout)["skipped"] == 3


@pytest.mark.parametrize("args, env, message", [
    (("--device", "bogus"), {}, "device 'bogus' is not a device; use auto, cpu, cuda, cuda:N or mps (available: "),
    ((), {"IMGEDIT_DEVICE": "cuda:7"}, "device 'cuda:7' is not available (available: "),
    ((), {"IMGEDIT_CPU_MEMORY_MB": "-5"}, "IMGEDIT_CPU_MEMORY_MB='-5' is not a number of megabytes above 0"),
])
def test_a_bad_device_is_refused_before_any_image_is_read_where_a_good_one_needs_no_torch(
        done_folder, args, env, message):
    src, out = done_folder
    Image.fromarray(smooth_rgb(24, 32, seed=9)).save(src / "p9.png")  # work to do, besides the photos done
    journal = (out / ".imgedit-journal.jsonl").read_bytes()
    code, stdout, stderr, reads, torch, said = probe("denoise", src, "-o", out, *DENOISE, "--json", *args, **env)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr + said
    assert reads == 0 and stdout == "" and not (out / "p9.png").exists()
    assert (out / ".imgedit-journal.jsonl").read_bytes() == journal
    # an all-done rerun refuses it too, and one asking for what every machine has imports no torch
    (src / "p9.png").unlink()
    code, _, stderr, reads, _, said = probe("denoise", src, "-o", out, *DENOISE, *args, **env)
    assert code == 2 and message in stderr and reads == 0, stderr + said
    code, stdout, stderr, reads, torch, said = probe("denoise", src, "-o", out, *DENOISE, "--json", "--device", " CPU ",
                                                     IMGEDIT_CPU_MEMORY_MB="2048.5")
    assert code == 0 and not torch and _summary(stdout)["skipped"] == 3, stderr + said


def test_check_compute_options_imports_torch_only_to_judge():
    def check(device, precision):
        return subprocess.run([sys.executable, "-c", CHECK_OPTIONS, device, precision], capture_output=True, text=True,
                              env=_env(), timeout=300)

    for device, precision in (("", ""), ("auto", ""), ("cpu", "fp32"), ("CPU:0", " BF16 "), ("", "auto")):
        done = check(device, precision)
        assert done.returncode == 0 and done.stdout.strip() == "False", (device, precision, done.stderr)
    for device, precision, message in (("gpu", "", "device 'gpu' is not a device; use auto, cpu, cuda, cuda:N or mps"),
                                       ("cpu", "fp8", "precision 'fp8' is not valid (expected one of: auto, fp32")):
        done = check(device, precision)
        assert done.returncode != 0 and message in done.stderr


def test_what_is_judged_without_torch_is_what_torch_would_take(monkeypatch):
    from imgedit import output_plan
    from imgedit.devices import parse_precision, resolve_device
    from imgedit.tiling import cpu_memory_mb

    for spec in output_plan._ANY_MACHINE_DEVICES:
        resolve_device(spec)
        resolve_device(spec.upper())
        monkeypatch.setenv("IMGEDIT_DEVICE", spec)
        assert output_plan._any_machine_device(None)
        resolve_device(None)
    monkeypatch.delenv("IMGEDIT_DEVICE")
    assert output_plan._any_machine_device(None)
    for spec in ("", "cpu:1", "cuda", "cuda:0", "mps", "gpu", "auto:0"):  # resolve_device judges these
        assert not output_plan._any_machine_device(spec)
    for name in ("fp8", "", "half"):
        assert not output_plan._precision_name(name)
    for name in output_plan._PRECISION_NAMES:
        assert parse_precision(name) in (None, name)
    # the memory budget has one reader, torch-free, which the check and tiling share
    from imgedit.errors import UsageError
    from imgedit.process_tuning import cpu_memory_setting

    for value in ("", " ", "1", "2048.5", " 1e3 ", "0.001"):
        monkeypatch.setenv("IMGEDIT_CPU_MEMORY_MB", value)
        assert cpu_memory_setting() == (float(value) if value.strip() else None)
        cpu_memory_mb()
    for value in ("0", "-5", "nan", "inf", "abc", "1e999"):
        monkeypatch.setenv("IMGEDIT_CPU_MEMORY_MB", value)
        with pytest.raises(UsageError, match="is not a number of megabytes above 0"):
            cpu_memory_setting()
