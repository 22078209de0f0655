"""Resuming a training run from the command line, for every train verb
(shared code: imgedit.training): a resumed run goes on in its own folder
unless --out names another, never over another run; a run at --steps
exports its weights without training; only the options typed are warned
about and recorded."""

import json

import pytest
import torch

from imgedit.checkpoint import load_checkpoint

TINY_TRAIN_ARGS = {
    "gan": ["--size", 16, "--batch", 2],
    "style": ["--patch", 16, "--style-size", 32, "--batch", 1, "--preview-every", 1, "--no-skips"],
    "denoise": ["--patch", 32, "--widths", "8,16,16,16", "--batch", 2],
}


@pytest.fixture
def data(tmp_path):
    from conftest import smooth_images

    return smooth_images(tmp_path / "data", count=8)


def _args(verb, data, painting=None):
    args = ["train", verb, "--data", data, *TINY_TRAIN_ARGS[verb], "-q"]
    return args + (["--style-image", painting or data / "0.png"] if verb == "style" else [])


def _steps_logged(folder):
    return [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]


def _step(folder, verb):
    return load_checkpoint(folder / "checkpoint.safetensors", kind=verb)["step"]


@pytest.mark.parametrize("verb", sorted(TINY_TRAIN_ARGS))
def test_a_resumed_run_without_out_goes_on_in_its_own_folder(verb, data, tmp_path, invoke, user_home, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run A goes to the verb's default folder, runs/<verb>
    default = tmp_path / "runs" / verb
    result = invoke(*_args(verb, data), "--steps", 3, "--export", tmp_path / "a.safetensors")
    assert result.exit_code == 0, result.output
    result = invoke(*_args(verb, data, data / "1.png"), "--steps", 1, "--out", "b", "--export", tmp_path / "b.safetensors")
    assert result.exit_code == 0, result.output
    a_log, a_checkpoint = (default / "log.jsonl").read_text(), (default / "checkpoint.safetensors").read_bytes()

    result = invoke(*_args(verb, data)[:-2] if verb == "style" else _args(verb, data), "--steps", 2, "--resume", "b")
    assert result.exit_code == 0, result.output
    assert _step(tmp_path / "b", verb) == 2 and _steps_logged(tmp_path / "b")[-1] == 2
    assert (default / "log.jsonl").read_text() == a_log  # run A untouched
    assert (default / "checkpoint.safetensors").read_bytes() == a_checkpoint
    if verb == "style":
        assert "Previews: b/samples" in result.output and (tmp_path / "b" / "samples" / "step_000002.png").is_file()
    if verb != "denoise":  # the denoiser writes no sample sheets
        assert sorted(p.name for p in (default / "samples").iterdir())[-1] == "step_000003.png"
        assert "step_000002.png" in {p.name for p in (tmp_path / "b" / "samples").iterdir()}


@pytest.mark.parametrize("verb", sorted(TINY_TRAIN_ARGS))
def test_a_resumed_run_refuses_an_out_folder_holding_another_run_unless_overwrite(verb, data, tmp_path, invoke,
                                                                                 user_home):
    args = _args(verb, data)
    assert invoke(*args, "--steps", 3, "--out", tmp_path / "a", "--export", tmp_path / "a.safetensors").exit_code == 0
    assert invoke(*args, "--steps", 1, "--out", tmp_path / "b", "--export", tmp_path / "b.safetensors").exit_code == 0
    a_log = (tmp_path / "a" / "log.jsonl").read_text()

    result = invoke(*args, "--steps", 2, "--resume", tmp_path / "b", "--out", tmp_path / "a")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"--out {tmp_path / 'a'} holds another training run" in result.output and "--overwrite" in result.output
    assert (tmp_path / "a" / "log.jsonl").read_text() == a_log and _step(tmp_path / "a", verb) == 3
    assert _step(tmp_path / "b", verb) == 1

    # its own folder, named by --out, is no other run's; an empty folder is fine too
    assert invoke(*args, "--steps", 2, "--resume", tmp_path / "b", "--out", tmp_path / "b").exit_code == 0
    result = invoke(*args, "--steps", 3, "--resume", tmp_path / "b", "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert _step(tmp_path / "c", verb) == 3 and _step(tmp_path / "b", verb) == 2

    result = invoke(*args, "--steps", 4, "--resume", tmp_path / "b", "--out", tmp_path / "a", "--overwrite")
    assert result.exit_code == 0, result.output
    assert _step(tmp_path / "a", verb) == 4 and _steps_logged(tmp_path / "a")[-1] == 4
    assert not (tmp_path / "a" / "log.jsonl").read_text().startswith(a_log)  # run A's log replaced, not appended to


@pytest.mark.parametrize("verb", ["gan", "denoise"])
def test_a_plain_resume_warns_of_no_setting_it_was_not_given(verb, data, tmp_path, invoke, user_home):
    args = ["train", verb, "--data", data, "-q", "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors"]
    tiny = TINY_TRAIN_ARGS[verb]
    assert invoke(*args, *tiny, "--steps", 1).exit_code == 0
    no_batch = [a for i, a in enumerate(tiny) if a != "--batch" and (i == 0 or tiny[i - 1] != "--batch")]

    result = invoke(*args[:-4], "--steps", 2, "--resume", tmp_path / "run")  # no --batch, --size or --patch
    assert result.exit_code == 0, result.output
    assert "checkpoint's settings" not in result.output
    commands = json.loads((tmp_path / "w.json").read_text())["training"]["commands"]
    assert "resumed with" not in commands[-1] and "--batch" not in commands[-1] and "--lr" not in commands[-1]
    assert f"--resume {tmp_path / 'run'}" in commands[-1] and "--steps 2" in commands[-1]

    result = invoke(*args[:-4], *no_batch, "--batch", 5, "--seed", 0, "--steps", 3, "--resume", tmp_path / "run")
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if "checkpoint's settings" in line]
    assert warning == ["Warning: resuming with the checkpoint's settings, not the command line's: batch 2"]
    commands = json.loads((tmp_path / "w.json").read_text())["training"]["commands"]
    assert commands[-1].endswith("  (resumed with the checkpoint's batch 2)")
    assert "--batch 5" in commands[-1] and "--seed 0" in commands[-1] and "--lr" not in commands[-1]


def test_a_typed_option_named_otherwise_in_the_config_is_warned_about(data, tmp_path, invoke, user_home):
    args = ["train", "gan", "--data", data, "--batch", 2, "-q", "--out", tmp_path / "run",
            "--export", tmp_path / "w.safetensors"]
    assert invoke(*args, "--size", 16, "--steps", 1).exit_code == 0
    result = invoke(*args, "--size", 32, "--steps", 2, "--resume", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "not the command line's: model.image_size 16" in result.output


def test_a_checkpoint_whose_run_exported_nothing_yet_says_how_to_export(data, tmp_path, invoke, user_home):
    from imgedit.catalog import spec_for_file
    from imgedit.errors import UsageError
    from imgedit_gan.train import GANTrainConfig, train_gan
    from imgedit_gan.model import GANConfig

    weights = tmp_path / "g2.safetensors"  # where the run would export at its end, which it never reached
    cfg = GANTrainConfig(steps=2, batch=2, model=GANConfig(image_size=16))
    train_gan(cfg, [data], tmp_path / "g2", torch.device("cpu"), export=("g2", weights))
    checkpoint = tmp_path / "g2" / "checkpoint.safetensors"
    with pytest.raises(UsageError) as caught:
        spec_for_file(checkpoint)
    said = str(caught.value)
    assert "is a training checkpoint" in said and "no weights yet (it stopped at step 2)" in said
    assert f"'imgedit train gan --data DATA --resume {checkpoint} --steps 2' exports them as they are" in said
    assert f"use {weights}" not in said

    # as it says: the weights of step 2, without training
    result = invoke("train", "gan", "--data", data, "-q", "--resume", checkpoint, "--steps", 2)
    assert result.exit_code == 0, result.output
    assert "already at step 2: exporting its weights as they are, without training" in result.output
    assert weights.is_file() and _step(tmp_path / "g2", "gan") == 2
    with pytest.raises(UsageError, match=f"use {weights}, the weights its run exported"):
        spec_for_file(checkpoint)
