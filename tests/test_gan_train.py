"""Training the GAN on tiny generated data: a real step changes the weights,
a resumed run continues bit for bit, the CLI exports a model that is usable
by name at once, held-out images stay out of training."""

import json

import pytest
import torch

from imgedit.checkpoint import load_checkpoint
from imgedit.errors import UsageError
from imgedit.imageset import UTKFACE_SUFFIX, held_out_names, load_squares, split_holdout
from imgedit_gan.model import GANConfig
from imgedit_gan.train import GANTrainConfig, GANTrainer, train_gan

from conftest import TINY_GAN, blob_images


def tiny_config(**kw):
    base = dict(steps=2, batch=4, val_every=1, checkpoint_every=1, grid=4, model=GANConfig(**TINY_GAN))
    return GANTrainConfig(**{**base, **kw})


@pytest.fixture
def data(tmp_path):
    return blob_images(tmp_path / "data")


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_one_real_step_changes_every_network(data):
    trainer = GANTrainer(tiny_config(), load_squares([data], 16), torch.device("cpu"))
    before = {name: _weights(getattr(trainer, name)) for name in ("G", "D", "G_ema")}
    metrics = trainer.train_step()
    assert trainer.step == 1 and {"d_loss", "g_loss"} <= set(metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    for name, old in before.items():
        new = getattr(trainer, name).state_dict()
        assert any(not torch.equal(old[k], new[k]) for k in old), f"{name} did not change"
    assert trainer.opt_d.state and trainer.opt_g.state


def test_real_batches_are_in_range_and_come_from_the_generator(data):
    trainer = GANTrainer(tiny_config(), load_squares([data], 16), torch.device("cpu"))
    state = trainer.generator.get_state()
    a = trainer.real_batch()
    trainer.generator.set_state(state)
    assert torch.equal(a, trainer.real_batch())
    assert a.shape == (4, 3, 16, 16) and -1 <= a.min() and a.max() <= 1


def test_resume_continues_bit_for_bit(data, tmp_path):
    straight = train_gan(tiny_config(steps=2), [data], tmp_path / "a", torch.device("cpu"))
    train_gan(tiny_config(steps=1), [data], tmp_path / "b", torch.device("cpu"))
    checkpoint = tmp_path / "b" / "checkpoint.safetensors"
    state = load_checkpoint(checkpoint, kind="gan")
    assert state["step"] == 1 and {"G", "D", "G_ema", "opt_g", "opt_d", "generator", "config"} <= set(state)
    resumed = train_gan(tiny_config(steps=2), [data], tmp_path / "b", torch.device("cpu"), resume=checkpoint)
    assert resumed.step == 2
    for name in ("G", "D", "G_ema"):
        for (key, p), q in zip(getattr(straight, name).state_dict().items(), getattr(resumed, name).state_dict().values()):
            assert torch.equal(p, q), f"{name}.{key}"
    for opt in ("opt_g", "opt_d"):
        a, b = getattr(straight, opt).state_dict()["state"], getattr(resumed, opt).state_dict()["state"]
        assert all(torch.equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"]) for i in a)
    assert torch.equal(straight.generator.get_state(), resumed.generator.get_state())
    assert straight.history[-1]["d_loss"] == resumed.history[-1]["d_loss"]
    assert (tmp_path / "b" / "samples" / "step_000002.png").is_file()


def test_holdout_rule_depends_only_on_names(data):
    names = [f"{i:02d}.png" for i in range(12)]
    assert held_out_names(names, 3) == held_out_names(list(reversed(names)), 3)
    assert len(held_out_names(names, 3)) == 3
    assert set(held_out_names(names, 3)) <= set(held_out_names(names, 5))  # growing N keeps the first ones
    images = load_squares([data], 16)
    training, held = split_holdout(images, 3)
    assert len(training) == 9 and not set(held) & set(training.names)
    with pytest.raises(UsageError, match="too few"):
        split_holdout(images, 11)


def test_train_command_exports_a_model_usable_by_name(data, tmp_path, invoke, user_home):
    result = invoke("train", "gan", "--data", data, "--size", "16", "--steps", "2", "--batch", "4", "--holdout", "3",
                    "--name", "blobs", "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    weights = user_home / "weights" / "imgedit_gan" / "blobs.safetensors"
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["architecture"] == "imgedit_gan.model.Generator" and card["model_config"]["image_size"] == 16
    assert card["training"]["steps"] == 2 and "train gan" in card["training"]["commands"][0]
    assert card["training"]["holdout"]["count"] == 3 and len(card["training"]["holdout"]["files"]) == 3
    assert card["training"]["images"] == 9 and card["storage_dtype"] == "float16"
    assert "imgedit sample --model blobs" in result.output

    result = invoke("sample", "--model", "blobs", "-n", "3", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("blobs-seed0-*.png"))) == 3
    listed = {row["name"]: row for row in json.loads(invoke("models", "--json").stdout)}
    assert listed["blobs"]["verified"] is True


def test_utkface_training_data_gets_the_non_commercial_licence(tmp_path, invoke):
    folder = blob_images(tmp_path / "faces", count=4)
    for path in folder.iterdir():
        path.rename(path.with_name(f"2{path.stem}_0_1_2017{UTKFACE_SUFFIX}"))
    weights = tmp_path / "faces.safetensors"
    result = invoke("train", "gan", "--data", folder, "--size", "16", "--steps", "1", "--batch", "2",
                    "--out", tmp_path / "run", "--export", weights, "-q")
    assert result.exit_code == 0, result.output
    assert "NON-COMMERCIAL RESEARCH USE ONLY" in json.loads(weights.with_suffix(".json").read_text())["data_licence"]


def test_a_run_resumed_on_other_data_keeps_the_licence_and_data_of_every_session(data, tmp_path, invoke):
    faces = blob_images(tmp_path / "faces", count=4)
    for path in faces.iterdir():
        path.rename(path.with_name(f"2{path.stem}_0_1_2017{UTKFACE_SUFFIX}"))
    weights, run = tmp_path / "faces.safetensors", tmp_path / "run"
    args = ["train", "gan", "--size", "16", "--batch", "2", "--out", run, "-q"]
    assert invoke(*args, "--data", faces, "--steps", 1, "--export", weights).exit_code == 0
    result = invoke(*args, "--data", data, "--steps", 2, "--resume", run / "checkpoint.safetensors")
    assert result.exit_code == 0, result.output
    card = json.loads(weights.with_suffix(".json").read_text())
    assert "NON-COMMERCIAL RESEARCH USE ONLY" in card["data_licence"]  # the first session's images still bind the weights
    assert card["training"]["data"] == [str(faces), str(data)] and card["training"]["steps"] == 2


def test_bad_training_input_is_one_line_and_exit_2(data, tmp_path, invoke):
    result = invoke("train", "gan", "--data", data, "--size", "48", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "power of two" in result.output
    result = invoke("train", "gan", "--data", data, "--resume", tmp_path / "nope.safetensors", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "no such checkpoint" in result.output
    result = invoke("train", "gan", "--data", tmp_path / "empty", "--out", tmp_path / "r")
    assert result.exit_code == 2
    result = invoke("train", "gan", "--data", data, "--name", "a", "--export", tmp_path / "b.safetensors")
    assert result.exit_code == 2 and "differs" in result.output


def test_train_command_takes_the_augmentation_policy(data, tmp_path, invoke):
    default = tmp_path / "default.safetensors"
    result = invoke("train", "gan", "--data", data, "--size", "16", "--steps", "1", "--batch", "2", "--out", tmp_path / "d",
                    "--export", default, "-q")
    assert result.exit_code == 0, result.output
    # the CLI's default (kept torch-free for --help) is the trainer's
    assert json.loads(default.with_suffix(".json").read_text())["training"]["train_config"]["augment"] == GANTrainConfig().augment

    weights = tmp_path / "plain.safetensors"
    result = invoke("train", "gan", "--data", data, "--size", "16", "--steps", "1", "--batch", "2", "--out", tmp_path / "a",
                    "--export", weights, "--augment", "translation", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(weights.with_suffix(".json").read_text())["training"]["train_config"]["augment"] == "translation"
    assert load_checkpoint(tmp_path / "a" / "checkpoint.safetensors", kind="gan")["config"]["augment"] == "translation"

    result = invoke("train", "gan", "--data", data, "--size", "16", "--steps", "1", "--batch", "2", "--out", tmp_path / "b",
                    "--export", tmp_path / "b.safetensors", "--augment", "color,sparkle", "-q")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "unknown augmentation sparkle" in result.output
    assert not (tmp_path / "b.safetensors").exists()


def test_the_closing_hint_quotes_a_name_with_a_space(data, tmp_path, invoke, user_home):
    result = invoke("train", "gan", "--data", data, "--size", "16", "--steps", "1", "--batch", "2",
                    "--out", tmp_path / "run", "--name", "my gan", "-q")
    assert result.exit_code == 0, result.output
    assert "imgedit sample --model 'my gan' -n 16" in result.output  # pasted into a shell, it stays one argument


def test_images_smaller_than_the_training_size_are_warned_about(data, tmp_path, invoke, caplog):
    result = invoke("train", "gan", "--data", data, "--size", "32", "--steps", "1", "--batch", "2",  # 24-px blobs
                    "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors", "-q")
    assert result.exit_code == 0, result.output
    assert any("12 of the 12 training images are smaller than 32x32 px, scaled up to it (blurred)" in r.getMessage()
               for r in caplog.records)


def test_evaluating_on_training_data_is_warned_of_from_anywhere_and_through_a_glob(tmp_path, monkeypatch):
    from imgedit.imageset import overlap_warning

    checkout = tmp_path / "checkout"
    card_path = checkout / "weights" / "imgedit_gan" / "m.json"
    train = tmp_path / "shared" / "data" / "train" / "faces"
    blob_images(train, count=2)
    card = {"training": {"data": ["../shared/data/train/faces"]}}  # relative to the checkout it was trained in
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the old check read the card's path from here and found nothing
    for sources in ([train], [str(train / "*.png")], [train / "00.png"], [tmp_path / "shared" / "data"]):
        said = overlap_warning(card, sources, held_out=False, card_path=card_path)
        assert len(said) == 1 and str(train) in said[0] and "use images it was not trained on" in said[0], sources
    assert overlap_warning(card, [train], held_out=True, card_path=card_path) == []
    (tmp_path / "eval").mkdir()
    assert overlap_warning(card, [tmp_path / "eval"], held_out=False, card_path=card_path) == []


def test_a_held_out_picture_that_is_also_a_training_picture_is_not_held_out(caplog):
    # UTKFace holds some photos under two names; the split is by name, so one copy was trained on
    from imgedit.imageset import ImageSet, held_out_of

    pictures = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).reshape(4, 3, 2, 2)
    pictures[3] = pictures[0]  # d.jpg is a.jpg under another name
    images = ImageSet(["a.jpg", "b.jpg", "c.jpg", "d.jpg"], pictures)
    held = held_out_of(images, {"training": {"holdout": {"files": ["c.jpg", "d.jpg"]}}})
    assert held.names == ["c.jpg"] and torch.equal(held.images[0], pictures[2])
    assert "left out 1 held-out image whose picture is also a training image's" in caplog.text
