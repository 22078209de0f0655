"""The inpainting training routine on tiny data: a real step learns,
checkpoints resume bit for bit."""

import pytest
import torch

from conftest import smooth_images
from imgedit.errors import UsageError
from imgedit.imagepool import ImagePool
from imgedit_vae.model import VAEConfig
from imgedit_vae.train_inpaint import InpaintTrainConfig, InpaintTrainer, hole_batch, train_inpaint

TINY = VAEConfig(widths=(8, 16, 16, 16), blocks=(1, 1, 1, 1), latent_channels=4, residual=False)


def tiny_config(**kw):
    base = dict(steps=2, batch=2, patch=32, warmup=1, val_images=1, val_every=1, checkpoint_every=1,
                model=TINY, disc_width=8)
    base.update(kw)
    return InpaintTrainConfig(**base)


@pytest.fixture
def data(tmp_path):
    return smooth_images(tmp_path / "data")


def test_hole_batch_shapes_and_kinds():
    masks = hole_batch(5, 48, ("thin", "thick"), torch.Generator().manual_seed(0))
    assert masks.shape == (5, 1, 48, 48)
    assert all(0 < float(m.mean()) <= 0.5 for m in masks)


@pytest.mark.parametrize("precision, loss", [("fp32", "l1"), ("bf16", "l1"), ("fp32", "mse")])
def test_one_step_lowers_the_fill_error_on_its_batch(data, precision, loss):
    trainer = InpaintTrainer(tiny_config(lr=3e-3, precision=precision, loss=loss), ImagePool([data]), torch.device("cpu"))
    clean, mask = trainer.batch()

    def error() -> float:  # of the deterministic fill, in the loss it is trained with
        with torch.no_grad():
            trainer.model.eval()
            fill, raw, _ = trainer.model(clean, mask, "mean")
            return float(trainer._reconstruction(raw, clean, mask, loss))

    before = error()
    trainer.batch = lambda: (clean, mask)
    metrics = trainer.train_step()
    assert set(metrics) >= {"loss", "recon", "kl", "adv", "fm", "critic"}
    assert error() < before


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_checkpoint_resumes_to_the_same_state(data, tmp_path, precision):
    straight = train_inpaint(tiny_config(steps=3, precision=precision), [data], tmp_path / "a", torch.device("cpu"))
    train_inpaint(tiny_config(steps=2, precision=precision), [data], tmp_path / "b", torch.device("cpu"))
    resumed = train_inpaint(tiny_config(steps=3, precision=precision), [data], tmp_path / "b", torch.device("cpu"),
                            resume=tmp_path / "b" / "checkpoint.safetensors")
    for net in ("model", "critic"):
        a, b = getattr(straight, net).state_dict(), getattr(resumed, net).state_dict()
        for name in a:
            assert torch.equal(a[name], b[name]), (net, name)


def test_the_deterministic_fill_alone_takes_the_squared_error(data):
    trainer = InpaintTrainer(tiny_config(loss="mse"), ImagePool([data]), torch.device("cpu"))
    seen = []
    trainer._reconstruction = lambda raw, clean, mask, kind: seen.append(kind) or raw.float().mean() * 0
    trainer.train_step()
    assert seen == ["l1", "mse"]  # posterior sample (beside the critic) first, then the prior mean


def test_the_squared_error_enters_as_its_root_with_holes_weighted_up():
    trainer = object.__new__(InpaintTrainer)
    trainer.cfg = tiny_config(hole_weight=3.0)
    clean, raw = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.1)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # one hole pixel of four: weights 3, 1, 1, 1
    assert trainer._reconstruction(raw, clean, mask, "mse").item() == pytest.approx((0.01 * 6 / 4) ** 0.5)
    assert trainer._reconstruction(raw, clean, mask, "l1").item() == pytest.approx(0.1 * 6 / 4)


def test_loss_and_hole_kinds_are_chosen_on_the_command_line_and_recorded(data, tmp_path, invoke):
    import json

    result = invoke("train", "inpaint", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32", "--loss", "mse",
                    "--masks", "medium, thick,thick", "--zoom", "3", "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors", "-q")
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "w.json").read_text())
    config = card["training"]["train_config"]
    assert config["loss"] == "mse" and "--loss mse" in card["training"]["commands"][-1]
    assert config["kinds"] == ["medium", "thick", "thick"]  # a repeat draws thick twice as often
    assert config["zoom"] == 3.0 and "--zoom 3" in card["training"]["commands"][-1]
    assert card["model_config"]["bridge"] is True  # the shipped architecture, so --init from it works
    for option, value in (("--loss", "l2"), ("--masks", "thin,huge"), ("--masks", ","), ("--zoom", "0.5")):
        result = invoke("train", "inpaint", "--data", data, option, value, "--out", tmp_path / "r2")
        assert result.exit_code == 2 and option in result.output and "Traceback" not in result.output
        assert not (tmp_path / "r2").exists()


def test_hole_kinds_are_drawn_as_often_as_they_are_named(monkeypatch):
    from imgedit_vae import train_inpaint as module

    drawn = []
    real = module.random_hole_mask
    monkeypatch.setattr(module, "random_hole_mask", lambda h, w, kind, g: drawn.append(kind) or real(h, w, kind, g))
    hole_batch(300, 32, ("medium", "thick", "thick"), torch.Generator().manual_seed(0))
    assert set(drawn) == {"medium", "thick"} and 150 < drawn.count("thick") < 250


def test_the_smallest_training_image_is_one_patch(tmp_path):
    small = smooth_images(tmp_path / "small", count=2, height=48, width=48)  # below the old fixed 64 px
    trainer = train_inpaint(tiny_config(steps=1), [small], tmp_path / "run", torch.device("cpu"))
    assert len(trainer.train_pool) + len(trainer.val_clean) == 2
    with pytest.raises(UsageError, match="no training images of at least 64x64 px"):
        train_inpaint(tiny_config(patch=64), [small], tmp_path / "run2", torch.device("cpu"))
    assert not (tmp_path / "run2").exists()


def test_unknown_hole_kind_or_loss_and_wrong_checkpoint_kind(data, tmp_path):
    with pytest.raises(UsageError, match="hole kinds"):
        train_inpaint(tiny_config(kinds=("huge",)), [data], tmp_path / "x", torch.device("cpu"))
    with pytest.raises(UsageError, match="reconstruction loss 'l2'"):
        train_inpaint(tiny_config(loss="l2"), [data], tmp_path / "x", torch.device("cpu"))
    from imgedit_vae.train_denoise import TrainConfig, train

    train(TrainConfig(steps=1, batch=2, patch=32, val_images=0, model=VAEConfig(widths=(8, 8), blocks=(1, 1))),
          [data], tmp_path / "d", torch.device("cpu"))
    with pytest.raises(UsageError, match="is a 'denoise' checkpoint, not 'inpaint'"):
        train_inpaint(tiny_config(), [data], tmp_path / "y", torch.device("cpu"), resume=tmp_path / "d" / "checkpoint.safetensors")


def test_a_run_starts_from_trained_weights_and_init_with_resume_is_refused(data, tmp_path, invoke):
    trained = train_inpaint(tiny_config(steps=1), [data], tmp_path / "a", torch.device("cpu"))
    from imgedit.models import save_weights

    weights = tmp_path / "inpaint.safetensors"
    save_weights(trained.model.state_dict(), weights, {"training": {"steps": 1, "commands": ["imgedit train inpaint"]}})
    fresh = InpaintTrainer(tiny_config(seed=5), ImagePool([data]), torch.device("cpu"))
    started = InpaintTrainer(tiny_config(seed=5), ImagePool([data]), torch.device("cpu"), init=weights)
    for name, value in trained.model.state_dict().items():
        assert torch.equal(started.model.state_dict()[name], value), name
    assert not all(torch.equal(fresh.model.state_dict()[n], v) for n, v in trained.model.state_dict().items())
    assert started.commands[0].startswith(f"(started from {weights}") and "train inpaint" in started.commands[0]

    result = invoke("train", "inpaint", "--data", data, "--init", weights,
                    "--resume", tmp_path / "a" / "checkpoint.safetensors", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "give one of them" in result.output and "Traceback" not in result.output
    result = invoke("train", "inpaint", "--data", data, "--init", tmp_path / "nope.safetensors", "--out", tmp_path / "c",
                    "--export", tmp_path / "c.safetensors")
    assert result.exit_code == 2 and "nope.safetensors" in result.output


def test_a_wider_run_with_a_bridge_starts_from_narrower_weights_with_the_same_fills(data, tmp_path):
    from dataclasses import replace

    from imgedit.models import save_weights

    trained = train_inpaint(tiny_config(steps=1), [data], tmp_path / "a", torch.device("cpu"))
    weights = tmp_path / "inpaint.safetensors"
    save_weights(trained.model.state_dict(), weights, {"training": {"steps": 1, "commands": ["imgedit train inpaint"]}})
    wider = replace(TINY, widths=(8, 16, 24, 32), bridge=True)
    grown = InpaintTrainer(tiny_config(model=wider), ImagePool([data]), torch.device("cpu"), init=weights)
    clean, mask = grown.batch()
    with torch.no_grad():
        before, _, _ = trained.model.eval()(clean, mask, "mean")
        after, _, moments = grown.model.eval()(clean, mask, "mean")
    assert grown.model.decoder.bridge is not None and moments["prior_mean"].shape[1] == TINY.latent_channels
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    grown.train_step()  # and the new paths train: the bridge leaves zero
    assert grown.model.decoder.bridge.weight.abs().sum() > 0


def test_widths_and_bridge_are_chosen_on_the_command_line_and_recorded(data, tmp_path, invoke):
    import json

    result = invoke("train", "inpaint", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32",
                    "--widths", "8,16,16,24", "--bridge", "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors", "-q")
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "w.json").read_text())
    assert card["model_config"]["widths"] == [8, 16, 16, 24] and card["model_config"]["bridge"] is True
    from imgedit_vae.inpaint import load_inpainter

    assert load_inpainter(weights=tmp_path / "w.safetensors").decoder.bridge is not None  # the verb loads it as it trained
    result = invoke("train", "inpaint", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32", "--widths", "8,16,16,24",
                    "--no-bridge", "--out", tmp_path / "r3", "--export", tmp_path / "n.safetensors", "-q")
    assert result.exit_code == 0 and json.loads((tmp_path / "n.json").read_text())["model_config"]["bridge"] is False
    result = invoke("train", "inpaint", "--data", data, "--widths", "8,16", "--out", tmp_path / "r2")
    assert result.exit_code == 2 and "--widths" in result.output and not (tmp_path / "r2").exists()


def test_a_deeper_decoder_is_chosen_on_the_command_line_grows_from_shallower_weights_and_loads(data, tmp_path, invoke):
    import json

    from imgedit_vae.inpaint import load_inpainter

    common = ("--data", data, "--steps", "1", "--batch", "2", "--patch", "32", "--widths", "8,16,16,24", "-q")
    assert invoke("train", "inpaint", *common, "--out", tmp_path / "a", "--export", tmp_path / "a.safetensors").exit_code == 0
    result = invoke("train", "inpaint", *common, "--decoder-blocks", "1,2,2,3", "--init", tmp_path / "a.safetensors",
                    "--out", tmp_path / "b", "--export", tmp_path / "b.safetensors")
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "b.json").read_text())
    assert card["model_config"]["decoder_blocks"] == [1, 2, 2, 3] and card["model_config"]["blocks"] == [1, 2, 2, 2]
    model = load_inpainter(weights=tmp_path / "b.safetensors")  # the verb loads it as it trained
    assert [len(s) for s in model.decoder.stages] == [1, 2, 2, 3] and [len(s) for s in model.encoder.stages] == [1, 2, 2, 2]
    assert "decoder_blocks" not in json.loads((tmp_path / "a.json").read_text())["model_config"]
    result = invoke("train", "inpaint", *common, "--init", tmp_path / "b.safetensors", "--out", tmp_path / "c",
                    "--export", tmp_path / "c.safetensors")
    assert result.exit_code == 2 and "residual blocks this model lacks" in result.output and "Traceback" not in result.output
    result = invoke("train", "inpaint", "--data", data, "--decoder-blocks", "1,2,0,2", "--out", tmp_path / "d")
    assert result.exit_code == 2 and "--decoder-blocks" in result.output and not (tmp_path / "d").exists()


def test_between_full_steps_only_the_default_fill_trains(data):
    trainer = InpaintTrainer(tiny_config(lr=3e-3, sample_every=3), ImagePool([data]), torch.device("cpu"))

    def snapshot() -> dict:
        return {name: p.detach().clone() for name, p in
                [*trainer.model.named_parameters(), *(("critic." + n, p) for n, p in trainer.critic.named_parameters())]}

    def changed(before: dict) -> set:
        now = snapshot()
        return {name.split(".")[0] for name in before if not torch.equal(before[name], now[name])}

    seen = []
    real = trainer._reconstruction
    trainer._reconstruction = lambda raw, clean, mask, kind: seen.append(kind) or real(raw, clean, mask, kind)
    before = snapshot()
    full = trainer.train_step()  # step 0: posterior fill, KL and critic too
    assert changed(before) == {"encoder", "decoder", "posterior", "critic"} and {"kl", "critic"} <= set(full)
    for step in (1, 2):  # the steps between: the prior-mean fill alone, its loss lowered on its batch
        clean, mask = trainer.batch()
        trainer.batch = lambda: (clean, mask)
        with torch.no_grad():
            error_before = float(real(trainer.model.eval()(clean, mask, "mean")[1], clean, mask, "l1"))
        before, seen[:] = snapshot(), []
        metrics = trainer.train_step()
        assert seen == ["l1"] and set(metrics) == {"loss", "fill"} and trainer.step == step + 1
        assert changed(before) == {"encoder", "decoder"}
        with torch.no_grad():
            assert float(real(trainer.model.eval()(clean, mask, "mean")[1], clean, mask, "l1")) < error_before
        del trainer.batch
    assert {"kl", "critic"} <= set(trainer.train_step())  # step 3: a full step again


def test_sample_every_is_chosen_on_the_command_line_and_recorded(data, tmp_path, invoke):
    import json

    result = invoke("train", "inpaint", "--data", data, "--steps", "2", "--batch", "2", "--patch", "32", "--sample-every", "2",
                    "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors", "-q")
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "w.json").read_text())
    assert card["training"]["train_config"]["sample_every"] == 2 and "--sample-every 2" in card["training"]["commands"][-1]
    last = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and "kl" not in last  # the second step fit the default fill alone...
    assert last["val_kl"] >= 0 and last["val_psnr"] > 0  # ...but validation still says whether the latent is live
    result = invoke("train", "inpaint", "--data", data, "--sample-every", "0", "--out", tmp_path / "r2")
    assert result.exit_code == 2 and "--sample-every" in result.output and not (tmp_path / "r2").exists()
