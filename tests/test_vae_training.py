"""The denoiser's training routine on tiny data: a real step learns,
checkpoints resume bit for bit, the CLI trains and exports usable weights.
The shared loop and checkpoint files are tested in test_training.py."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import smooth_rgb, trained_tiny_denoiser
from imgedit.checkpoint import load_checkpoint
from imgedit.imagepool import ImagePool, dihedral
from imgedit_vae.metrics import RECON_LOSSES, reconstruction_loss
from imgedit_vae.model import VAEConfig
from imgedit_vae.train_denoise import Trainer, TrainConfig, train
from imgedit.training import learning_rate

TINY_MODEL = VAEConfig(widths=(8, 16, 16, 16), blocks=(1, 1, 1, 1), latent_channels=4)


def tiny_config(**kw):
    base = dict(steps=2, batch=2, patch=32, warmup=1, val_images=1, val_every=1, checkpoint_every=1, model=TINY_MODEL)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(smooth_rgb(72, 80, seed=i)[:, ::-1 if i % 2 else 1]).save(folder / f"{i}.png")
    return folder


def test_pool_patches_are_in_range_and_reproducible(data):
    (data / "broken.png").write_bytes(b"not a png")  # skipped with a warning, not fatal
    pool = ImagePool([data])
    assert len(pool) == 3
    a = pool.patches(4, 32, torch.Generator().manual_seed(3), gray_prob=0.5)
    b = pool.patches(4, 32, torch.Generator().manual_seed(3), gray_prob=0.5)
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    colour = pool.patches(8, 32, torch.Generator().manual_seed(3), gray_prob=0.0)
    assert all(not torch.equal(p[0], p[1]) for p in colour)  # the photos are colourful: no patch made gray
    gray = pool.patches(8, 32, torch.Generator().manual_seed(3), gray_prob=1.0)
    assert all(torch.equal(p[0], p[1]) and torch.equal(p[1], p[2]) for p in gray)
    train_pool, val_pool = pool.split(1)
    assert len(train_pool) == 2 and len(val_pool) == 1


def test_images_smaller_than_min_side_are_skipped_with_one_warning(tmp_path, caplog):
    Image.fromarray(smooth_rgb(128, 192)).save(tmp_path / "big.png")
    for i in range(5):
        Image.fromarray(smooth_rgb(48, 48, seed=i)).save(tmp_path / f"small{i}.png")
    with caplog.at_level("WARNING", logger="imgedit"):
        pool = ImagePool([tmp_path])
    assert pool.paths == [tmp_path / "big.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"skipping 5 images smaller than 64x64 px (e.g. {tmp_path / 'small0.png'})"]  # one line, not five
    caplog.clear()
    with caplog.at_level("WARNING", logger="imgedit"):
        assert len(ImagePool([tmp_path], min_side=48)) == 6
    assert not caplog.records


def test_training_takes_images_as_small_as_a_patch_and_says_what_it_skipped(tmp_path, invoke):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(smooth_rgb(48, 48, seed=i)).save(data / f"{i}.png")  # below the old fixed 64 px, above --patch 32
    Image.fromarray(smooth_rgb(24, 24)).save(data / "tiny.png")
    weights = tmp_path / "w.safetensors"
    result = invoke("train", "denoise", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32",
                    "--widths", "8,16,16,16", "--out", tmp_path / "run", "--export", weights, "-q")
    assert result.exit_code == 0, result.output
    assert f"Warning: skipping 1 image smaller than 32x32 px (e.g. {data / 'tiny.png'})" in result.output
    assert json.loads(weights.with_suffix(".json").read_text())["training"]["images"] == 1  # the other one validates
    result = invoke("train", "denoise", "--data", data, "--steps", "1", "--patch", "64", "--out", tmp_path / "run2", "-q")
    assert result.exit_code == 2 and "no training images of at least 64x64 px" in result.output


def test_zoomed_patches_are_wider_views_scaled_down(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 400), (400, 1)).astype(np.uint8)  # brightness = x
    Image.fromarray(np.stack([ramp] * 3, -1)).save(tmp_path / "ramp.png")
    pool = ImagePool([tmp_path])
    spans = {}
    for zoom in (1.0, 8.0):
        patches = pool.patches(64, 16, torch.Generator().manual_seed(0), zoom=zoom)
        assert patches.shape == (64, 3, 16, 16) and 0 <= patches.min() and patches.max() <= 1
        spans[zoom] = (patches.amax(dim=(1, 2, 3)) - patches.amin(dim=(1, 2, 3))).mean().item()
    assert spans[1.0] == pytest.approx(15 / 399, rel=0.05)  # 16 px of the 400-px ramp, whatever the turn
    assert spans[8.0] > 2.5 * spans[1.0]  # squares 1-8x wider (log-uniform), scaled down to 16 px
    default = pool.patches(4, 16, torch.Generator().manual_seed(1))
    assert torch.equal(default, pool.patches(4, 16, torch.Generator().manual_seed(1), zoom=1.0))  # no extra draw


def test_dihedral_gives_eight_distinct_views():
    image = torch.arange(12.0).view(1, 3, 4)
    views = {tuple(dihedral(image.expand(3, 3, 4), k).flatten().tolist()) for k in range(8)}
    assert len(views) == 8


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_training_step_lowers_the_loss_on_its_batch(data, precision):
    trainer = Trainer(tiny_config(lr=1e-3, precision=precision), ImagePool([data]), torch.device("cpu"))
    torch.nn.init.normal_(trainer.model.decoder.head.weight, std=0.01)
    noisy, cond, clean = trainer.batch()

    def loss() -> float:
        with torch.no_grad():
            trainer.model.eval()
            return float((trainer.model(noisy, cond)[0] - clean).abs().mean())

    before = loss()
    trainer.generator.manual_seed(0)
    # one real optimisation step, on that same batch
    trainer.batch = lambda: (noisy, cond, clean)
    trainer.train_step()
    assert loss() < before


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_checkpoint_resumes_to_the_same_state(data, tmp_path, precision):
    straight = train(tiny_config(steps=3, precision=precision), [data], tmp_path / "a", torch.device("cpu"))
    train(tiny_config(steps=2, precision=precision), [data], tmp_path / "b", torch.device("cpu"))
    resumed = train(tiny_config(steps=3, precision=precision), [data], tmp_path / "b", torch.device("cpu"),
                    resume=tmp_path / "b" / "checkpoint.safetensors")
    assert resumed.step == 3
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    assert straight.history[-1]["val_psnr"] == resumed.history[-1]["val_psnr"]


def _ctrl_c_inside_step(monkeypatch, step, presses=1):
    """Press Ctrl-C ``presses`` times in the middle of training step ``step``
    (1-based): after its batch is drawn, before its weights change."""
    import os
    import signal

    import imgedit_vae.train_denoise as train_denoise

    calls = []

    def loss_and_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            for _ in range(presses):
                os.kill(os.getpid(), signal.SIGINT)
        return reconstruction_loss(*args, **kwargs)

    monkeypatch.setattr(train_denoise, "reconstruction_loss", loss_and_interrupt)


@pytest.mark.parametrize("presses, said", [(1, "interrupted at step 2 of 4; the checkpoint is saved"),
                                           (2, "stopped at once in step 3 of 4, which is not saved; "
                                               "the checkpoint of step 2 is kept")])
def test_a_run_interrupted_inside_a_step_resumes_bit_for_bit(data, tmp_path, monkeypatch, presses, said):
    from imgedit.errors import Interrupted

    cfg = tiny_config(steps=4, val_every=100, checkpoint_every=2)
    straight = train(cfg, [data], tmp_path / "a", torch.device("cpu"))
    _ctrl_c_inside_step(monkeypatch, step=presses + 1, presses=presses)  # one press: step 2; two: step 3
    with pytest.raises(Interrupted) as stopped:
        train(cfg, [data], tmp_path / "b", torch.device("cpu"))
    assert said in str(stopped.value) and stopped.value.exit_code == 130
    monkeypatch.undo()
    resumed = train(cfg, [data], tmp_path / "b", torch.device("cpu"), resume=tmp_path / "b" / "checkpoint.safetensors")
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name


def test_bf16_runs_the_forward_in_bfloat16_and_a_resume_may_change_precision(data, tmp_path, invoke):
    from imgedit.training import autocast

    conv = torch.nn.Conv2d(3, 4, 3)
    with autocast("cpu", "bf16"):
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        autocast("cpu", "fp8")
    from imgedit.training import PRECISIONS
    from imgedit.verbs import precision_option

    assert tuple(precision_option()(lambda: None).__click_params__[0].type.choices) == PRECISIONS

    result = invoke("train", "denoise", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32",
                    "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors", "-q")
    assert result.exit_code == 0, result.output
    result = invoke("train", "denoise", "--data", data, "--steps", "2", "--batch", "2", "--patch", "32", "--precision",
                    "bf16", "--resume", tmp_path / "run" / "checkpoint.safetensors", "--out", tmp_path / "run",
                    "--export", tmp_path / "w.safetensors", "-q")
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "w.json").read_text())
    assert card["training"]["train_config"]["precision"] == "bf16" and card["training"]["steps"] == 2
    assert "resumed with" not in result.output and "resumed with" not in card["training"]["commands"][-1]
    # other settings come from the checkpoint: the user is told, and the card says so
    result = invoke("train", "denoise", "--data", data, "--steps", "3", "--batch", "2", "--patch", "32", "--lr", "0.5",
                    "--resume", tmp_path / "run" / "checkpoint.safetensors", "--out", tmp_path / "run",
                    "--export", tmp_path / "w.safetensors", "-q")
    assert result.exit_code == 0, result.output
    assert "checkpoint's settings" in result.output and "lr 0.001" in result.output
    card = json.loads((tmp_path / "w.json").read_text())
    assert card["training"]["train_config"]["lr"] == 0.001
    assert card["training"]["commands"][-1].endswith("(resumed with the checkpoint's lr 0.001)")
    result = invoke("train", "denoise", "--data", data, "--precision", "fp16", "--out", tmp_path / "r2")
    assert result.exit_code == 2 and "fp16" in result.output


def test_gray_share_sets_the_share_of_gray_patches(data, tmp_path, invoke):
    result = invoke("train", "denoise", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32", "--gray-share", "0",
                    "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "w.json").read_text())["training"]["train_config"]["gray_prob"] == 0.0
    result = invoke("train", "denoise", "--data", data, "--gray-share", "1.5", "--out", tmp_path / "r2")
    assert result.exit_code == 2 and "--gray-share" in result.output
    assert not (tmp_path / "r2").exists()


def test_reconstruction_losses():
    out, clean = torch.tensor([0.5, 0.0, 0.2]), torch.tensor([0.0, 0.0, 0.4])
    assert reconstruction_loss(out, clean, "l1").item() == pytest.approx(0.7 / 3)
    assert reconstruction_loss(out, clean, "mse").item() == pytest.approx(0.29 / 3)
    weight = torch.tensor([1.0, 1.0, 3.0])  # a hole pixel counts three times
    assert reconstruction_loss(out, clean, "l1", weight).item() == pytest.approx(1.1 / 3)
    assert reconstruction_loss(out, clean, "mse", weight).item() == pytest.approx(0.37 / 3)
    with pytest.raises(ValueError, match="l2"):
        reconstruction_loss(out, clean, "l2")


def test_mse_loss_trains_and_is_recorded(data, tmp_path, invoke):
    from imgedit_vae.commands import train_denoise_command

    loss_option = next(p for p in train_denoise_command.params if p.name == "loss")
    assert tuple(loss_option.type.choices) == RECON_LOSSES
    # the step lowers the squared error of its batch, and logs it under the loss's name
    trainer = Trainer(tiny_config(lr=1e-3, loss="mse"), ImagePool([data]), torch.device("cpu"))
    torch.nn.init.normal_(trainer.model.decoder.head.weight, std=0.01)
    batch = trainer.batch()
    trainer.batch = lambda: batch

    def squared_error() -> float:
        with torch.no_grad():
            trainer.model.eval()
            return float((trainer.model(batch[0], batch[1])[0] - batch[2]).square().mean())

    before = squared_error()
    assert set(trainer.train_step()) == {"loss", "mse", "kl"}
    assert squared_error() < before

    result = invoke("train", "denoise", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32", "--loss", "mse",
                    "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "w.json").read_text())["training"]["train_config"]["loss"] == "mse"
    result = invoke("train", "denoise", "--data", data, "--loss", "l2", "--out", tmp_path / "r2")
    assert result.exit_code == 2 and "--loss" in result.output
    assert not (tmp_path / "r2").exists()


def test_resuming_a_checkpoint_older_than_a_setting_says_it_keeps_the_old_behaviour(data, tmp_path, invoke):
    from imgedit.checkpoint import save_checkpoint

    result = invoke("train", "denoise", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32",
                    "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    path = tmp_path / "run" / "checkpoint.safetensors"
    state = load_checkpoint(path, kind="denoise")
    del state["config"]["loss"]  # as a checkpoint written before --loss existed
    save_checkpoint(state, path)
    result = invoke("train", "denoise", "--data", data, "--steps", "2", "--batch", "2", "--patch", "32", "--loss", "mse",
                    "--resume", path, "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors", "-q")
    assert result.exit_code == 0, result.output
    assert "loss l1" in result.output  # it trained with L1, and goes on so: the user is told
    assert json.loads((tmp_path / "w.json").read_text())["training"]["train_config"]["loss"] == "l1"


def test_learning_rate_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    lrs = [learning_rate(cfg, s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_train_and_eval_commands_end_to_end(data, tmp_path, invoke):
    weights = tmp_path / "w" / "mine.safetensors"
    result = invoke("train", "denoise", "--data", data, "--steps", "2", "--batch", "2", "--patch", "32",
                    "--out", tmp_path / "run", "--export", weights, "-q")
    assert result.exit_code == 0, result.output
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["training"]["steps"] == 2 and "train denoise" in card["training"]["commands"][0]
    assert load_checkpoint(tmp_path / "run" / "checkpoint.safetensors", kind="denoise")["step"] == 2

    noisy = np.clip(smooth_rgb(48, 64, seed=9) + np.random.default_rng(0).normal(0, 20, (48, 64, 3)), 0, 255)
    Image.fromarray(noisy.astype(np.uint8)).save(tmp_path / "noisy.png")
    result = invoke("denoise", tmp_path / "noisy.png", "-o", tmp_path / "out.png", "--weights", weights, "--sigma", "20")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").is_file()

    sheet = tmp_path / "sheet.png"
    result = invoke("eval", "denoise", "--data", data, "--sigma", "10,30", "--weights", weights, "--baselines",
                    "--sheet", sheet, "--json")
    assert result.exit_code == 0, result.output
    with Image.open(sheet) as grid:  # 3 images x (noisy, methods..., clean): 72-px crops + 4-px gutters
        assert grid.size[1] == 3 * 76 and grid.size[0] >= 4 * 76
    rows = json.loads(result.output[result.output.index("{"):])["rows"]
    assert {(r["sigma"], r["method"]) for r in rows} >= {(10.0, "noisy"), (30.0, "vae"), (30.0, "nlm")}
    noisy30 = next(r for r in rows if r["sigma"] == 30 and r["method"] == "noisy")
    nlm30 = next(r for r in rows if r["sigma"] == 30 and r["method"] == "nlm")
    assert nlm30["psnr"] > noisy30["psnr"]
    result = invoke("eval", "denoise", "--data", data, "--sigma", "10", "--weights", weights, "--no-baselines", "--json")
    assert result.exit_code == 0, result.output  # the spelling eval inpaint takes, too
    assert {r["method"] for r in json.loads(result.output[result.output.index("{"):])["rows"]} == {"noisy", "vae"}


@pytest.mark.parametrize("verb, module", [("denoise", "imgedit_vae.evaluate_denoise"), ("inpaint", "imgedit_vae.evaluate_inpaint")])
@pytest.mark.parametrize("sheet, message", [("sheet.nosuchformat", "unknown image suffix"), ("file/sheet.png", "is a file"),
                                            ("folder", "is a folder")])
def test_a_sheet_that_cannot_be_written_is_refused_before_evaluating(data, tmp_path, invoke, monkeypatch, verb, module,
                                                                   sheet, message):
    import importlib

    def evaluated(*args, **kwargs):
        raise AssertionError("evaluated before the sheet was checked")

    monkeypatch.setattr(importlib.import_module(module), "evaluate", evaluated)
    (tmp_path / "file").write_text("a file, not a folder")
    (tmp_path / "folder").mkdir()
    result = invoke("eval", verb, "--data", data, "--limit", 1, "--sheet", tmp_path / sheet)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output


def test_eval_skips_a_corrupt_file_with_a_warning_and_counts_what_it_scored(data, tmp_path, invoke, caplog):
    (data / "1.png").write_bytes(b"not a png")  # one of three
    result = invoke("eval", "denoise", "--data", data, "--sigma", "25", "--ensemble", 1)
    assert result.exit_code == 0, result.output
    assert f"{data}: 2 images, seed 0" in result.output
    assert any("skipping" in r.getMessage() and "1.png" in r.getMessage() for r in caplog.records)


def test_training_ends_with_how_to_use_the_weights_and_its_checkpoint_is_not_taken_for_them(data, tmp_path, invoke):
    weights = tmp_path / "my weights.safetensors"
    result = invoke("train", "denoise", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32",
                    "--widths", "8,16,16,16", "--out", tmp_path / "run", "--export", weights, "-q")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"Use it: imgedit denoise photo.jpg --weights '{weights}'"
    Image.fromarray(smooth_rgb(48, 64, seed=9)).save(tmp_path / "noisy.png")
    result = invoke("denoise", tmp_path / "noisy.png", "-o", tmp_path / "out.png",
                    "--weights", tmp_path / "run" / "checkpoint.safetensors")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "is a training checkpoint" in result.output and f"use {weights.resolve()}" in result.output


def test_bad_training_input_is_one_line_and_exit_2(tmp_path, invoke, data):
    result = invoke("train", "denoise", "--data", data, "--resume", tmp_path / "nope.pt", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "no such checkpoint" in result.output
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    result = invoke("train", "denoise", "--data", data, "--resume", tmp_path / "junk.pt", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "cannot read checkpoint" in result.output
    result = invoke("train", "denoise", "--data", data, "--patch", "40", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "multiple of 16" in result.output
    result = invoke("eval", "denoise", "--data", data, "--sigma", "ten")
    assert result.exit_code == 2


def test_a_wider_run_starts_from_trained_weights_with_the_same_output(data, tmp_path, invoke):
    narrow = tmp_path / "narrow.safetensors"
    before = trained_tiny_denoiser(invoke, data, narrow, tmp_path / "run1", bridge=False)
    assert before.cfg.widths == (8, 16, 16, 16) and not before.cfg.bridge

    # wider, and with the bridge that bridgeless weights lack
    wider = TrainConfig(model=VAEConfig(widths=(12, 16, 24, 16), blocks=before.cfg.blocks,
                                        latent_channels=before.cfg.latent_channels, bridge=True))
    trainer = Trainer(wider, ImagePool([data]), torch.device("cpu"), init=narrow)
    noisy, cond, _ = trainer.batch()
    trainer.model.eval()
    with torch.no_grad():
        assert torch.allclose(trainer.model(noisy, cond)[0], before(noisy, cond)[0], atol=1e-5)
    assert trainer.commands[0].startswith(f"(started from {narrow}") and "train denoise" in trainer.commands[0]

    grown = tmp_path / "grown.safetensors"
    result = invoke("train", "denoise", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32", "--init", narrow,
                    "--widths", "12,16,24,16", "--out", tmp_path / "run2", "--export", grown, "-q")
    assert result.exit_code == 0, result.output
    card = json.loads(grown.with_suffix(".json").read_text())
    assert card["model_config"]["widths"] == [12, 16, 24, 16] and card["model_config"]["bridge"] is True
    assert card["training"]["commands"][0].startswith("(started from") and "--init" in card["training"]["commands"][1]


def test_init_weights_wider_than_the_default_widths_set_them(data, tmp_path, invoke):
    from imgedit.models import save_weights
    from imgedit_vae.model import ConditionalVAE

    wide = replace(TrainConfig().model, widths=(40, 64, 80, 96))  # wider than the default 32,64,80,96 at 1/2
    weights = tmp_path / "wide.safetensors"
    save_weights(ConditionalVAE(wide).state_dict(), weights, {"model_config": wide.to_dict(), "training": {}})
    common = ("train", "denoise", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32", "--init", weights, "-q")
    result = invoke(*common, "--out", tmp_path / "r1", "--export", tmp_path / "a.safetensors")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a.json").read_text())["model_config"]["widths"] == [40, 64, 80, 96]
    result = invoke(*common, "--widths", "32,64,80,96", "--out", tmp_path / "r2", "--export", tmp_path / "b.safetensors")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "does not fit" in result.output and "pass --widths 40,64,80,96 (or wider)" in result.output


def test_bad_init_or_widths_is_one_line_and_exit_2(data, tmp_path, invoke):
    result = invoke("train", "denoise", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32",
                    "--widths", "16,16,16,16", "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors", "-q")
    assert result.exit_code == 0, result.output
    result = invoke("train", "denoise", "--data", data, "--init", tmp_path / "w.safetensors", "--widths", "8,16,16,16",
                    "--patch", "32", "--out", tmp_path / "r2", "--export", tmp_path / "w2.safetensors", "-q")
    assert result.exit_code == 2 and "does not fit" in result.output and "Traceback" not in result.output
    result = invoke("train", "denoise", "--data", data, "--init", tmp_path / "nope.safetensors", "--out", tmp_path / "r3",
                    "--export", tmp_path / "w3.safetensors")
    assert result.exit_code == 2 and "nope.safetensors" in result.output
    result = invoke("train", "denoise", "--data", data, "--init", tmp_path / "w.safetensors",
                    "--resume", tmp_path / "run" / "checkpoint.safetensors", "--out", tmp_path / "r4")
    assert result.exit_code == 2 and "give one of them" in result.output
    result = invoke("train", "denoise", "--data", data, "--widths", "8,16", "--out", tmp_path / "r5")
    assert result.exit_code == 2 and "--widths" in result.output
