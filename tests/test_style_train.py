"""Training a fast style network on tiny data: a step lowers the loss, a
resumed run matches an uninterrupted one bit for bit, the export is a
verified model with a complete card, and ``imgedit train style`` makes the
style usable by name at once."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from imgedit.checkpoint import load_checkpoint
from imgedit.errors import UsageError
from imgedit.imagepool import ImagePool
from imgedit.models import verify
from imgedit_style.catalog import resolve_style, styles
from imgedit_style.lossnet import LossNetConfig
from imgedit_style.model import StyleNetConfig
from imgedit_style.stylize import load_style_net, read_style_image
from imgedit_style.train import StyleTrainConfig, StyleTrainer, export_style, train_style


@pytest.fixture
def data(tmp_path):
    """Small textured photos: coarse colour blocks under fine noise."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        rgb = np.kron(rng.random((5, 5, 3)), np.ones((8, 8, 1))) * 0.7 + rng.random((40, 40, 3)) * 0.3
        Image.fromarray((rgb * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def painting(tmp_path):
    """Bold diagonal stripes: a style nothing like the blobs."""
    y, x = np.mgrid[0:48, 0:48]
    stripes = ((x + y) // 6 % 2).astype(np.float32)[..., None]
    rgb = stripes * np.array([0.9, 0.2, 0.1]) + (1 - stripes) * np.array([0.1, 0.3, 0.9])
    path = tmp_path / "stripes.png"
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
    return path


def tiny_config(painting, **kw):
    base = dict(style_image=str(painting), steps=2, batch=2, patch=16, style_size=32, val=2, val_every=1,
                checkpoint_every=1, warmup=1, model=StyleNetConfig(widths=(4, 8, 8), res_blocks=1),
                loss_net=LossNetConfig(widths=(8, 16), convs=1))
    return StyleTrainConfig(**{**base, **kw})


def test_a_training_step_lowers_the_loss(data, painting):
    cfg = tiny_config(painting, lr=1e-3, warmup=0)
    trainer = StyleTrainer(cfg, ImagePool([data], min_side=16), read_style_image(painting, 32), torch.device("cpu"))
    photos = trainer.pool.patches(2, 16, torch.Generator().manual_seed(3))
    assert photos.shape == (2, 3, 16, 16)
    trainer.pool.patches = lambda *args, **kwargs: photos  # the same batch every step

    def loss():
        with torch.no_grad():
            return trainer.objective(trainer.model(photos), photos)["loss"].item()

    before = loss()
    metrics = trainer.train_step()
    assert trainer.step == 1 and metrics["loss"] == pytest.approx(before, rel=1e-5)
    after_one = loss()
    assert after_one < before
    for _ in range(5):
        trainer.train_step()
    assert loss() < after_one


def test_resume_matches_an_uninterrupted_run(tmp_path, data, painting):
    cfg = tiny_config(painting, steps=3)
    whole = train_style(cfg, [data], tmp_path / "whole", torch.device("cpu"))
    train_style(tiny_config(painting, steps=2), [data], tmp_path / "part", torch.device("cpu"))
    state = load_checkpoint(tmp_path / "part" / "checkpoint.safetensors", kind="style")
    assert state["step"] == 2 and state["config"]["style_image"] == str(painting)
    resumed = train_style(tiny_config(painting, steps=3), [data], tmp_path / "part", torch.device("cpu"),
                          resume=tmp_path / "part" / "checkpoint.safetensors")
    assert resumed.step == 3
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [h["loss"] for h in whole.history] == [h["loss"] for h in resumed.history]
    assert sorted(p.name for p in (tmp_path / "part" / "samples").iterdir()) == [f"step_00000{i}.png" for i in (1, 2, 3)]


def test_export_is_a_verified_fp16_model_with_a_complete_card(tmp_path, data, painting):
    trainer = train_style(tiny_config(painting), [data], tmp_path / "run", torch.device("cpu"), command="imgedit train style ...")
    spec_path = tmp_path / "out" / "stripes.safetensors"
    export_style(trainer, spec_path, name="stripes", description="tiny", sources=[str(data)], session_seconds=1.0)
    card = json.loads(spec_path.with_suffix(".json").read_text())
    assert card["architecture"] == "imgedit_style.model.StyleNet" and card["storage_dtype"] == "float16"
    assert card["style"]["image"] == str(painting) and len(card["style"]["image_sha256"]) == 64
    assert card["style"]["loss_net"]["kind"] == "random" and "seed 1" in card["style"]["loss_net_recipe"]
    assert card["training"]["steps"] == 2 and card["training"]["commands"] == ["imgedit train style ..."]
    assert card["training"]["wall_time_s"] >= 0 and card["training"]["data"] == [str(data)]
    spec = resolve_style(str(spec_path))
    assert verify(spec) == (True, "ok")
    net = load_style_net(spec)
    assert next(net.parameters()).dtype == torch.float32
    for (name, a), b in zip(net.state_dict().items(), trainer.model.state_dict().values()):
        assert torch.allclose(a, b.float(), atol=1e-2, rtol=1e-3), name


def test_bad_settings_are_usage_errors(tmp_path, data, painting):
    with pytest.raises(UsageError, match="multiple of 8"):
        train_style(tiny_config(painting, patch=20), [data], tmp_path / "run", torch.device("cpu"))
    with pytest.raises(UsageError, match="does not exist"):
        train_style(tiny_config(tmp_path / "nope.jpg"), [data], tmp_path / "run", torch.device("cpu"))


def test_train_verb_makes_the_style_usable_at_once(invoke, user_home, data, painting, tmp_path):
    result = invoke("train", "style", "--style-image", painting, "--data", data, "--name", "my-stripes", "--steps", 2,
                    "--batch", 1, "--patch", 16, "--style-size", 32, "--preview-every", 1, "--out", tmp_path / "run",
                    "--no-skips", "-q")
    assert result.exit_code == 0, result.output
    target = user_home / "weights" / "imgedit_style" / "my-stripes.safetensors"
    assert target.is_file() and "--style my-stripes" in result.output
    card = json.loads(target.with_suffix(".json").read_text())
    assert card["training"]["commands"][0].startswith("imgedit train style ")
    assert card["model_config"]["skips"] is False  # and the style below loads and runs without them
    assert "my-stripes" in styles()
    assert (tmp_path / "run" / "samples" / "step_000002.png").is_file()
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((21, 17, 3), 120, np.uint8)).save(photo)
    result = invoke("style", photo, "--style", "my-stripes", "-o", tmp_path / "styled.png")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "styled.png").size == (17, 21)


def test_a_style_exported_elsewhere_is_named_by_its_path(invoke, user_home, data, painting, tmp_path):
    target = tmp_path / "elsewhere" / "st.safetensors"  # outside the weights folders: the name 'st' is unknown
    result = invoke("train", "style", "--style-image", painting, "--data", data, "--export", target, "--steps", 1,
                    "--batch", 1, "--patch", 16, "--style-size", 32, "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    hint = result.output.strip().splitlines()[-1]
    assert hint == f"Use it: imgedit style photo.jpg --style {target}"
    assert "st" not in styles()
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((21, 17, 3), 120, np.uint8)).save(photo)
    result = invoke("style", photo, "--style", hint.split("--style ")[1], "-o", tmp_path / "styled.png")
    assert result.exit_code == 0, result.output


def test_train_verb_refuses_bad_input(invoke, user_home, data, painting, tmp_path):
    result = invoke("train", "style", "--style-image", tmp_path / "missing.jpg", "--data", data)
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0 and "does not exist" in result.output
    result = invoke("train", "style", "--style-image", painting, "--data", data, "--name", "mosaic")
    assert result.exit_code == 2 and "shipped model's name" in result.output
    shouty = painting.with_name("MOSAIC.png")  # named after its painting, differing from a shipped style in case
    shouty.write_bytes(painting.read_bytes())
    result = invoke("train", "style", "--style-image", shouty, "--data", data, "--out", tmp_path / "r")
    assert result.exit_code == 2 and result.output.strip() == (
        "Error: the style's name MOSAIC (after its painting MOSAIC.png; give --name) differs from the shipped model "
        "mosaic only in case: choose another --name"), result.output
    result = invoke("train", "style", "--style-image", painting, "--data", data, "--patch", 20, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "multiple of 8" in result.output


def test_a_resumed_run_keeps_its_own_name_whatever_the_painting_is_called(invoke, user_home, data, painting, tmp_path):
    candy = tmp_path / "candy.png"  # a painting named like a shipped style: the run is named otherwise
    candy.write_bytes(painting.read_bytes())
    args = ["train", "style", "--style-image", candy, "--data", data, "--batch", 1, "--patch", 16, "--style-size", 32,
            "--out", tmp_path / "run", "--no-skips", "-q"]
    result = invoke(*args, "--steps", 1)
    assert result.exit_code == 2 and "name candy (after its painting candy.png; give --name) is a shipped model's name" in result.output
    assert invoke(*args, "--steps", 1, "--name", "mine").exit_code == 0
    result = invoke(*args, "--steps", 2, "--resume", tmp_path / "run" / "checkpoint.safetensors")
    assert result.exit_code == 0, result.output
    assert "--style mine" in result.output
    assert json.loads((user_home / "weights" / "imgedit_style" / "mine.json").read_text())["training"]["steps"] == 2


def test_eval_style_refuses_a_sheet_it_could_not_write_before_measuring(invoke, user_home, data, tmp_path, monkeypatch):
    import imgedit_style.report as report

    def measured(*args, **kwargs):
        raise AssertionError("measured before the sheet was checked")

    monkeypatch.setattr(report, "load_photos", measured)
    (tmp_path / "file").write_text("a file, not a folder")
    result = invoke("eval", "style", "--style", "mosaic", "--data", data, "--sheet", tmp_path / "file" / "sheet.png")
    assert result.exit_code == 2 and "is a file" in result.output, result.output


def test_photos_smaller_than_the_patch_are_warned_about(tmp_path, data, painting, caplog):
    train_style(tiny_config(painting, steps=1, patch=48), [data], tmp_path / "run", torch.device("cpu"))  # 40-px photos
    assert any("6 of the 6 training images are smaller than 48x48 px" in r.getMessage() for r in caplog.records)


def test_a_tiny_or_see_through_painting_is_warned_about(tmp_path, painting, caplog):
    """A 48-px painting at --style-size 512 is learned as blur, and the black under a
    cut-out's transparent pixels as paint: say so before minutes of training."""
    read_style_image(painting, 96)  # enlarged 2x: fine
    assert not caplog.records
    read_style_image(painting, 512)
    assert any("only 48 px on its long side: enlarged 10.7x" in r.getMessage() for r in caplog.records)
    caplog.clear()
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[:, :24] = (200, 40, 20, 255)  # a cut-out: the right half transparent black
    Image.fromarray(rgba).save(tmp_path / "cutout.png")
    read_style_image(tmp_path / "cutout.png", 48)
    assert [r.getMessage() for r in caplog.records] == [
        "style image cutout.png is 50% transparent: the colours hidden under its transparent pixels are learned "
        "as painting; flatten it onto a background first"]
    caplog.clear()
    rgba[:, :, 3] = 255  # opaque, with an alpha plane: nothing to warn of
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    read_style_image(tmp_path / "opaque.png", 48)
    assert not caplog.records


def test_a_resumed_run_keeps_its_painting_wherever_the_file_went(tmp_path, data, painting):
    from imgedit.models import sha256_file

    whole = train_style(tiny_config(painting, steps=3), [data], tmp_path / "whole", torch.device("cpu"))
    original = sha256_file(painting)
    train_style(tiny_config(painting, steps=2), [data], tmp_path / "part", torch.device("cpu"))
    moved = painting.rename(tmp_path / "moved.png")  # the run's painting is no longer where it was
    resumed = train_style(tiny_config("", steps=3), [data], tmp_path / "part", torch.device("cpu"),
                          resume=tmp_path / "part")  # no painting given: the checkpoint's
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.painting_sha256 == original
    resumed = train_style(tiny_config(moved, steps=4), [data], tmp_path / "part", torch.device("cpu"),
                          resume=tmp_path / "part")  # given where it is now: the same painting
    assert resumed.step == 4 and resumed.cfg.style_image == str(moved)


def test_a_resumed_run_refuses_an_edited_painting_and_trains_on_its_own(invoke, user_home, data, painting, tmp_path):
    from imgedit.models import sha256_file

    args = ["train", "style", "--data", data, "--batch", 1, "--patch", 16, "--style-size", 32, "--preview-every", 1,
            "-q", "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors"]
    whole = ["train", "style", "--data", data, "--batch", 1, "--patch", 16, "--style-size", 32, "--preview-every", 1,
             "-q", "--out", tmp_path / "whole", "--export", tmp_path / "whole.safetensors", "--style-image", painting]
    assert invoke(*whole, "--steps", 3).exit_code == 0
    assert invoke(*args, "--steps", 2, "--style-image", painting).exit_code == 0
    original = sha256_file(painting)
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(painting)  # edited in place

    result = invoke(*args, "--steps", 3, "--resume", tmp_path / "run", "--style-image", painting)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"--style-image {painting} is not the painting this run trains on (stripes.png" in result.output
    assert "its content differs" in result.output and load_checkpoint(tmp_path / "run", kind="style")["step"] == 2
    result = invoke(*args, "--steps", 3, "--resume", tmp_path / "run", "--style-image", tmp_path)
    assert result.exit_code == 2 and "is a folder, not an image" in result.output

    result = invoke(*args, "--steps", 3, "--resume", tmp_path / "run")  # no --style-image: the checkpoint's painting
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "w.json").read_text())
    assert card["style"]["image_sha256"] == original  # what it trained on, not what the file holds now
    ours = load_checkpoint(tmp_path / "run", kind="style")["model"]
    theirs = load_checkpoint(tmp_path / "whole", kind="style")["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # exactly as if never stopped


def test_a_new_run_needs_a_painting(invoke, user_home, data, tmp_path):
    result = invoke("train", "style", "--data", data, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "--style-image: give the painting to train on" in result.output
    with pytest.raises(UsageError, match="give the painting"):
        train_style(tiny_config(""), [data], tmp_path / "run", torch.device("cpu"))
