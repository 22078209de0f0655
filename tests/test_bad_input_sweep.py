"""Bad input found by a sweep of every verb and option: each gets a one-line
error and exit 2 (usage) or 1 (failure), never an unexpected error, and
never a lost or half-written file."""

import logging
import math
import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import TINY_TRAIN_ARGS, smooth_images
from imgedit.checkpoint import load_checkpoint, save_checkpoint
from imgedit.errors import UsageError

HUGE = "99999999999999999999"  # past a C long: torch, numpy and OpenCV overflow on it
LONG = "x" * 300  # past NAME_MAX (255 bytes): even a stat of a path holding it fails


@pytest.fixture(autouse=True)
def _in_a_fresh_folder(tmp_path, monkeypatch):
    """Relative paths (``--data d``, a verb's default ``runs/...``) land in the test's own folder."""
    monkeypatch.chdir(tmp_path)


def _error_line(result) -> str:
    """The one error line of a refused command (click's usage lines aside)."""
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    assert "unexpected" not in result.output and "Traceback" not in result.output, result.output
    return lines[0]




def _train_args(verb, data):
    args = ["train", verb, "--data", data, *TINY_TRAIN_ARGS[verb], "-q"]
    return args + (["--style-image", data / "0.png"] if verb == "style" else [])


# --- 1. an --export that is a device or a pipe --------------------------------------------


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_export_that_is_no_regular_file_is_refused_before_training(tmp_path, invoke, overwrite):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # stands for /dev/null: the weights' rename would replace it with a file
    args = _train_args("denoise", smooth_images(tmp_path / "data", count=3))
    result = invoke(*args, "--steps", 1, "--out", tmp_path / "run", "--export", fifo, *overwrite)
    assert result.exit_code == 2, result.output
    assert _error_line(result) == f"Error: --export {fifo} exists and is not a regular file"
    assert stat.S_ISFIFO(fifo.stat().st_mode) and not (tmp_path / "run").exists()


# --- 2. an existing --sheet ----------------------------------------------------------------


def _never(*args, **kwargs):
    raise AssertionError("the evaluation ran although its --sheet is refused")


EVAL_SHEET_CASES = {  # the verb's arguments, and what to stub so that an evaluation that starts fails at once
    "denoise": (["--limit", 1, "--sigma", 25], "imgedit_vae.evaluate_denoise", "evaluate"),
    "inpaint": (["--limit", 1, "--masks", "thin"], "imgedit_vae.evaluate_inpaint", "evaluate"),
    "interp": (["--pairs", 1, "--frames", 3], "imgedit_interp.commands", "load_latent_model_argument"),
    "style": (["--limit", 1, "--size", 32, "--steps", 1, "--style", "candy"], "imgedit_style.report", "evaluate_styles"),
}


@pytest.mark.parametrize("verb", sorted(EVAL_SHEET_CASES))
def test_an_existing_sheet_is_refused_before_evaluating(tmp_path, invoke, monkeypatch, verb):
    import importlib

    args, module, stubbed = EVAL_SHEET_CASES[verb]
    monkeypatch.setattr(importlib.import_module(module), stubbed, _never)
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(b"figures of an earlier evaluation")
    result = invoke("eval", verb, "--data", smooth_images(tmp_path / "data", count=4), *args, "--sheet", sheet)
    assert result.exit_code == 2, result.output
    assert _error_line(result) == f"Error: --sheet {sheet} exists: pass --overwrite to replace it, or give another --sheet"
    assert sheet.read_bytes() == b"figures of an earlier evaluation"


def test_overwrite_replaces_an_existing_sheet_and_alone_is_a_slip(tmp_path, invoke):
    data = smooth_images(tmp_path / "data", count=1)
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(b"old")
    result = invoke("eval", "denoise", "--data", data, "--sigma", 25, "--ensemble", 1, "--sheet", sheet, "--overwrite")
    assert result.exit_code == 0, result.output
    assert ", 1 copy, " in result.output  # one copy is not the default's two: the header says which it was
    assert sheet.read_bytes()[:4] == b"\x89PNG"
    result = invoke("eval", "denoise", "--data", data, "--overwrite")
    assert result.exit_code == 2
    assert _error_line(result) == "Error: --overwrite replaces an existing --sheet: it needs --sheet"


def test_check_sheet_takes_an_existing_sheet_with_overwrite(tmp_path):
    from imgedit.verbs import check_sheet

    sheet = tmp_path / "s.png"
    sheet.write_bytes(b"x")
    with pytest.raises(UsageError, match="exists: pass --overwrite"):
        check_sheet(sheet)
    check_sheet(sheet, overwrite=True)
    check_sheet(tmp_path / "new.png")


# --- 3./4. whole numbers too large for torch, numpy and OpenCV -------------------------------

TRAIN_VERBS = ("denoise", "gan", "inpaint", "interp-vae", "sigma", "style")
BOUNDED = [
    *[(["denoise", "a.png"], option) for option in ("--threads", "--workers")],
    (["inpaint", "a.png", "--mask-box", "1,1,4,4"], "--dilate"),
    (["run", "-p", "denoise", "a.png"], "--threads"),
    *[(["eval", verb, "--data", "d"], option) for verb in ("denoise", "inpaint") for option in ("--seed", "--threads", "--limit")],
    *[(["eval", "style", "--data", "d"], option) for option in ("--seed", "--threads", "--size", "--limit", "--steps")],
    *[(["eval", "interp", "--data", "d"], option) for option in ("--feature-seed", "--frames", "--threads", "--pairs")],
    (["eval", "gan", "--real", "d"], "--threads"),
    (["eval", "gan", "--real", "d"], "--n"),
    *[(["train", verb, "--data", "d"], option) for verb in TRAIN_VERBS
      for option in ("--seed", "--batch", "--nproc", "--steps")],
    *[(["train", "style", "--data", "d"], option)
      for option in ("--loss-seed", "--style-size", "--threads", "--patch", "--preview-every")],
    (["train", "interp-vae", "--data", "d"], "--z-dim"),
    (["train", "gan", "--data", "d"], "--holdout"),
    (["train", "denoise", "--data", "d"], "--patch"),
    (["train", "inpaint", "--data", "d"], "--sample-every"),
]


@pytest.mark.parametrize("args, option", BOUNDED, ids=[f"{' '.join(a[:2])} {o}" for a, o in BOUNDED])
def test_a_whole_number_too_large_is_a_usage_error(invoke, args, option):
    result = invoke(*args, option, HUGE)
    assert result.exit_code == 2, result.output
    shown = {"--n": "'-n' / '--n'"}.get(option, f"'{option}'")  # click names an option by its short flag too
    assert _error_line(result).startswith(f"Error: Invalid value for {shown}: {HUGE} is not in the range")


@pytest.mark.parametrize("seed, refused", [(0, False), (2**32 - 1, False), (2**32, True), (-1, True)])
def test_seeds_are_those_every_generator_draws_distinctly_from(invoke, seed, refused):
    from imgedit.latents import MAX_SEED

    assert MAX_SEED == 2**32 - 1  # torch's CPU generator keeps 32 bits of a seed
    result = invoke("train", "gan", "--data", "d", "--seed", seed, "--size", "7")  # --size refused in any case
    assert ("Invalid value for '--seed'" in result.output) == refused, result.output


def test_nproc_is_at_most_one_process_per_cpu_core(invoke):
    result = invoke("train", "denoise", "--data", "d", "--nproc", (os.cpu_count() or 1) + 1)
    assert result.exit_code == 2 and "Invalid value for '--nproc'" in _error_line(result)


@pytest.mark.parametrize("verb", ["gan", "inpaint", "style", "interp-vae"])
def test_a_learning_rate_past_one_is_a_usage_error(invoke, verb):
    result = invoke("train", verb, "--data", "d", "--lr", "1e30")
    assert result.exit_code == 2 and "Invalid value for '--lr': 1e+30 is not in the range" in _error_line(result)


def test_eval_interp_refuses_morphs_that_would_not_fit_in_memory(monkeypatch):
    from imgedit import devices
    from imgedit_interp.commands import _check_eval_memory

    monkeypatch.setattr(devices, "available_memory", lambda: 2e9)
    _check_eval_memory(8, 9, 64)  # the defaults: a few MB
    with pytest.raises(UsageError, match="8 morphs of 1000 frames of 256x256 would need about .* ask for fewer --frames"):
        _check_eval_memory(8, 1000, 256)


# --- 4. a run that never trained a step blocks no rerun -------------------------------------


class _Trainer:
    """The smallest trainer ``fit`` accepts; ``loss`` and ``weights`` say what step N gives."""

    def __init__(self, steps=4, loss=lambda step: 1.0 / step, weights=lambda step: torch.ones(2)):
        self.cfg = SimpleNamespace(steps=steps, val_every=1, checkpoint_every=2)
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.loss, self.weights = loss, weights

    def train_step(self):
        self.step += 1
        return {"loss": self.loss(self.step)}

    def validate(self):
        return None

    def state(self):
        return {"kind": "count", "step": self.step, "model": {"w": self.weights(self.step)}}


def test_a_run_that_fails_before_its_first_step_leaves_no_log_and_blocks_no_rerun(tmp_path):
    from imgedit.training import check_fresh_run, fit

    def too_large(step):
        raise MemoryError("a batch too large for memory")

    with pytest.raises(MemoryError):
        fit(_Trainer(loss=too_large), tmp_path / "run")
    assert not (tmp_path / "run" / "log.jsonl").exists()
    check_fresh_run(tmp_path / "run", None, overwrite=False)  # the rerun goes ahead

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "log.jsonl").write_text("")  # left by such a run before the log was opened lazily
    check_fresh_run(tmp_path / "old", None, overwrite=False)


# --- 5. empty paths and names too long --------------------------------------------------------

OUTPUT_VERBS = {
    "denoise": ["denoise", "{photo}", "--method", "nlm"],
    "inpaint": ["inpaint", "{photo}", "--method", "telea", "--mask-box", "1,1,8,8"],
    "run": ["run", "-p", "denoise method=nlm sigma=10", "{photo}"],
    "style": ["style", "{photo}", "--style", "candy"],
    "sample": ["sample", "-n", "2", "--grid"],
    "interpolate": ["interpolate", "{photo}", "{photo}", "--frames", "2"],
}


def _verb_args(verb, photo):
    return [str(photo) if a == "{photo}" else a for a in OUTPUT_VERBS[verb]]


@pytest.mark.parametrize("verb", sorted(OUTPUT_VERBS))
def test_an_empty_output_is_refused_not_taken_for_the_current_folder(tmp_path, invoke, photo, verb):
    before = sorted(os.listdir(tmp_path))
    result = invoke(*_verb_args(verb, photo), "-o", "")
    assert result.exit_code == 2, result.output
    assert "Invalid value for '-o' / '--output': the path is empty" in _error_line(result)
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("verb", sorted(OUTPUT_VERBS))
@pytest.mark.parametrize("where", ["{long}/out.png", "{long}.png"])
def test_an_output_name_too_long_is_a_usage_error(tmp_path, invoke, photo, verb, where):
    result = invoke(*_verb_args(verb, photo), "-o", tmp_path / where.format(long=LONG))
    assert result.exit_code == 2, result.output
    assert "Invalid value for '-o' / '--output': file name too long: xxxx" in _error_line(result)


def test_a_name_template_too_long_is_refused_before_any_image(tmp_path, invoke, photo):
    result = invoke("denoise", photo, "--method", "nlm", "-o", f"{tmp_path / 'out'}/", "--name", LONG + ".{ext}")
    assert result.exit_code == 2, result.output
    assert _error_line(result).startswith("Error: --name: file name too long: xxxx")
    assert not (tmp_path / "out").exists()  # refused while planning: no image was read or written


def test_an_input_whose_output_name_is_too_long_fails_alone_saying_what_fits_it(tmp_path, invoke, photo):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a" * 248 + ".png", "b.png"):  # the first fits; its ".denoise" output does not
        shutil.copy(photo, folder / name)
    result = invoke("denoise", folder, "--method", "nlm", "--sigma", "5")
    assert result.exit_code == 1 and (folder / "b.denoise.png").exists(), result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and failed[0].count("a" * 248) == 1, failed  # the input's name said once
    assert "output file name too long" in failed[0] and "260 bytes" in failed[0] and "shorter --name" in failed[0]


def test_output_is_file_refuses_a_name_too_long_before_its_stat():
    from imgedit.inputs import output_is_file

    with pytest.raises(UsageError, match="file name too long"):
        output_is_file(Path(LONG) / "a.png", 1)


@pytest.mark.parametrize("option, value, said", [
    ("--out", "", "the path is empty"), ("--out", "{tmp}/{long}", "file name too long"),
    ("--export", "", "the path is empty")])
def test_a_training_path_empty_or_too_long_is_refused(tmp_path, invoke, option, value, said):
    result = invoke("train", "denoise", "--data", "d", option, value.format(tmp=tmp_path, long=LONG))
    assert result.exit_code == 2, result.output
    shown = {"--out": "'-o' / '--out'"}.get(option, f"'{option}'")  # click names an option by its short flag too
    assert f"Invalid value for {shown}: {said}" in _error_line(result)


def test_an_eval_sheet_or_style_name_too_long_is_a_usage_error(tmp_path, invoke):
    result = invoke("eval", "denoise", "--data", "d", "--sheet", tmp_path / f"{LONG}.png")
    assert result.exit_code == 2 and "Invalid value for '--sheet': file name too long" in _error_line(result)
    result = invoke("eval", "style", "--data", smooth_images(tmp_path / "data", count=1), "--style", LONG)
    assert result.exit_code == 2 and _error_line(result).startswith("Error: style: --style: file name too long")


@pytest.mark.parametrize("args, said", [
    (["denoise", "{long}.png"], "Error: input: file name too long"),
    (["train", "sigma", "--data", "{long}", "--out", "{tmp}/run"], "Error: input: file name too long"),
    (["inpaint", "a.png", "--mask", "{long}"], "Invalid value for '--mask': file name too long"),
    (["train", "denoise", "--data", "d", "--resume", "{long}"], "Invalid value for '--resume': file name too long"),
    (["train", "denoise", "--data", "d", "--init", "{long}"], "Invalid value for '--init': file name too long"),
    (["train", "style", "--data", "d", "--style-image", "{long}"], "Invalid value for '--style-image': file name too long"),
    (["eval", "denoise", "--data", "d", "--weights", "{long}"], "Invalid value for '--weights': file name too long"),
    (["run", "-f", "{long}", "a.png"], "Invalid value for '-f' / '--file': file name too long")])
def test_an_input_name_too_long_is_a_usage_error(tmp_path, invoke, args, said):
    result = invoke(*[str(tmp_path / a.format(long=LONG, tmp=tmp_path)) if "{" in a else a for a in args])
    assert result.exit_code == 2, result.output
    assert said in _error_line(result)


@pytest.mark.parametrize("args", [["denoise", "a.png", "--weights"], ["inpaint", "a.png", "--weights"],
                                  ["sample", "-n", "1", "--model"]])
def test_a_model_file_name_too_long_is_a_usage_error(tmp_path, invoke, args):
    # a name-or-file option: the stat that tells a file from a name failed with ENAMETOOLONG
    result = invoke(*args, f"{LONG}.safetensors", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert "model file: file name too long" in _error_line(result)


def test_a_style_image_name_too_long_is_a_usage_error(tmp_path):
    from imgedit_style.operations import check_style_image

    with pytest.raises(UsageError, match="style image: file name too long"):
        check_style_image(tmp_path / f"{LONG}.jpg")


def test_export_path_empty_is_refused_by_the_check_too(tmp_path):
    from imgedit.training import check_export_path

    with pytest.raises(UsageError, match="names no file"):
        check_export_path(Path(""))  # a Python caller's "" (click's --export refuses it as empty)


# --- 6. training that diverges -----------------------------------------------------------------


def test_a_loss_that_is_not_finite_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    from imgedit.training import TrainingDiverged, fit

    trainer = _Trainer(steps=6, loss=lambda step: math.nan if step == 3 else 1.0)
    with pytest.raises(TrainingDiverged) as stopped:
        fit(trainer, tmp_path)
    assert str(stopped.value) == "training diverged at step 3: the loss is not finite (loss); lower --lr"
    assert stopped.value.exit_code == 1
    assert load_checkpoint(tmp_path / "checkpoint.safetensors", kind="count")["step"] == 2


def test_weights_that_are_not_finite_are_not_checkpointed(tmp_path):
    from imgedit.training import TrainingDiverged, fit

    trainer = _Trainer(steps=6, weights=lambda step: torch.full((2,), math.inf if step >= 3 else 1.0))
    with pytest.raises(TrainingDiverged, match="diverged by step 4: model.w is not finite"):
        fit(trainer, tmp_path)  # the loss is computed before the step's update: finite while the weights are not
    assert load_checkpoint(tmp_path / "checkpoint.safetensors", kind="count")["step"] == 2


@pytest.mark.parametrize("verb", sorted(TINY_TRAIN_ARGS))
def test_export_refuses_weights_that_are_not_finite(tmp_path, invoke, verb):
    args = _train_args(verb, smooth_images(tmp_path / "data", count=8))
    run = tmp_path / "run"
    assert invoke(*args, "--steps", 1, "--out", run, "--export", tmp_path / "good.safetensors").exit_code == 0
    checkpoint = run / "checkpoint.safetensors"
    state = load_checkpoint(checkpoint, kind=verb)
    for part in ("model", "G", "G_ema"):  # the networks a verb exports
        for tensor in state.get(part, {}).values():
            if tensor.is_floating_point():
                tensor.fill_(math.nan)
    save_checkpoint(state, checkpoint)  # as a run at a learning rate far too large leaves it

    target = tmp_path / "nan.safetensors"
    result = invoke(*args, "--steps", 1, "--resume", checkpoint, "--export", target)  # exports as it is
    assert result.exit_code == 1, result.output
    assert "training diverged by step 1: " in _error_line(result) and "nothing is exported" in result.output
    assert not target.exists() and not target.with_suffix(".json").exists()


# --- 7. mask sources that can never apply -------------------------------------------------------


def test_a_mask_box_or_colour_beside_a_mask_file_is_named_as_ignored(tmp_path, caplog, photo, invoke):
    import numpy as np
    from PIL import Image

    from imgedit.masks import MaskOptions

    mask = tmp_path / "hole.png"
    hole = np.zeros((48, 64), np.uint8)
    hole[10:20, 10:20] = 255
    Image.fromarray(hole).save(mask)
    with caplog.at_level(logging.WARNING, logger="imgedit"):
        MaskOptions(mask=mask, mask_color="#ff00ff", mask_box=(500, 500, 4, 4)).checked()
        MaskOptions(mask_color="#ff00ff", mask_box=(1, 1, 4, 4)).checked()
        MaskOptions(mask_box=(1, 1, 4, 4)).checked()
    said = [r.getMessage() for r in caplog.records]
    assert said == ["ignoring --mask-color and --mask-box: --mask gives the hole (mask sources are tried in a fixed "
                    "order, the first wins)",
                    "ignoring --mask-box: --mask-color gives the hole (mask sources are tried in a fixed order, the "
                    "first wins)"]

    result = invoke("inpaint", photo, "--method", "telea", "--mask", mask, "--mask-box", "500,500,4,4",
                    "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    assert "ignoring --mask-box: --mask gives the hole" in result.output


@pytest.mark.parametrize("verb, weights, said", [
    ("denoise", "{tmp}/nope.safetensors", "nope.safetensors: no such file"),
    ("inpaint", "{tmp}/nope.safetensors", "nope.safetensors: no such file"),
    ("denoise", "inpaint-vae", "model 'inpaint-vae' is not a denoiser"),
    ("denoise", "sigma-net", "model 'sigma-net' is not a denoiser"),
    ("inpaint", "denoise-vae", "model 'denoise-vae' is not an inpainter"),
    ("denoise", "tampered", "sha256 mismatch")])
def test_weights_that_are_missing_or_of_another_kind_are_a_usage_error(tmp_path, invoke, verb, weights, said):
    # exit 2, before any image is read, as a --model that is missing or of another kind is
    import shutil

    from imgedit.models import shipped_weights_dir

    shipped = shipped_weights_dir() / "imgedit_vae"
    if weights == "tampered":
        for ext in (".safetensors", ".json"):
            shutil.copy(shipped / f"denoise-vae{ext}", tmp_path / f"tampered{ext}")
        with open(tmp_path / "tampered.safetensors", "r+b") as fh:
            fh.seek(-1, 2)
            fh.write(b"\0" if fh.read(1) != b"\0" else b"\1")
        path = tmp_path / "tampered.safetensors"
    else:
        path = shipped / f"{weights}.safetensors" if "{" not in weights else Path(weights.format(tmp=tmp_path))
    image = smooth_images(tmp_path / "in", count=1) / "0.png"
    result = invoke(verb, image, "--mask-box", "2,2,8,8", "-o", tmp_path / "out.png", "--weights", path) if verb == "inpaint" \
        else invoke(verb, image, "-o", tmp_path / "out.png", "--weights", path)
    assert result.exit_code == 2, result.output
    assert said in _error_line(result) and not (tmp_path / "out.png").exists()
