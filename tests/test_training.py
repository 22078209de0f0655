"""The training machinery plugins share: checkpoint files, the fit loop
(SIGTERM, validation metrics), the progress bar."""

import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import TINY_TRAIN_ARGS
from imgedit.checkpoint import load_checkpoint, save_checkpoint
from imgedit.training import ProgressBar, fit


class CountingTrainer:
    """The smallest trainer ``fit`` accepts."""

    def __init__(self, steps=10, val_every=100, validation=None):
        self.cfg = SimpleNamespace(steps=steps, val_every=val_every, checkpoint_every=100)
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.validation = validation

    def train_step(self):
        self.step += 1
        return {"loss": 1.0 / self.step}

    def validate(self):
        return self.validation

    def state(self):
        return {"kind": "count", "step": self.step}


def test_checkpoint_file_round_trips_without_pickle(tmp_path):
    state = {"kind": "denoise", "step": 3, "t": torch.arange(4.0), "nested": {1: {"betas": (0.9, 0.99), "x": [torch.ones(2)]}}}
    save_checkpoint(state, tmp_path / "c.safetensors")
    back = load_checkpoint(tmp_path / "c.safetensors", kind="denoise")
    assert back["step"] == 3 and torch.equal(back["t"], state["t"])
    assert back["nested"][1]["betas"] == (0.9, 0.99) and torch.equal(back["nested"][1]["x"][0], torch.ones(2))


@pytest.mark.parametrize("signum, said, exit_code, warned", [
    (signal.SIGTERM, "stopped by SIGTERM at step 3 of ", 143, "SIGTERM: stopping after this step"),  # a scheduler pre-empting the job
    (signal.SIGINT, "interrupted at step 3 of ", 130, "press Ctrl-C again"),  # Ctrl-C
])
def test_a_signal_saves_a_checkpoint_before_stopping(tmp_path, caplog, signum, said, exit_code, warned):
    class Preempted(CountingTrainer):
        def train_step(self):
            metrics = super().train_step()
            if self.step == 3:
                os.kill(os.getpid(), signum)
            return metrics

    from imgedit.errors import Interrupted

    before = signal.getsignal(signum)
    with pytest.raises(Interrupted) as stopped:
        fit(Preempted(), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoint.safetensors", kind="count")["step"] == 3
    assert said in str(stopped.value)
    assert f"add --resume {tmp_path / 'checkpoint.safetensors'} to go on" in str(stopped.value)  # what to do next
    assert stopped.value.exit_code == exit_code  # 128 + the signal, as the shell reports a process it ended
    assert [r.getMessage() for r in caplog.records if warned in r.getMessage()]
    assert signal.getsignal(signum) == before


def test_a_second_sigterm_stops_at_once_with_the_sigterm_exit_code(tmp_path):
    class Killed(CountingTrainer):
        def train_step(self):
            if self.step == 2:
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGTERM)  # the second, in the middle of the step
            return super().train_step()

    from imgedit.errors import Interrupted

    with pytest.raises(Interrupted) as stopped:
        fit(Killed(), tmp_path)
    assert "stopped at once in step 3" in str(stopped.value) and stopped.value.exit_code == 143


@pytest.mark.parametrize("validation, logged", [(31.5, {"val_psnr": 31.5}), ({"d_loss": 0.5, "g_loss": 1.5}, {"d_loss": 0.5, "g_loss": 1.5}),
                                                (None, {"val_psnr": None})])
def test_fit_logs_what_validate_returns(tmp_path, validation, logged):
    fit(CountingTrainer(steps=4, val_every=2, validation=validation), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all(r.items() >= logged.items() for r in records)
    assert load_checkpoint(tmp_path / "checkpoint.safetensors", kind="count")["step"] == 4


def test_progress_bar_shows_the_chosen_metrics_and_starts_where_a_run_resumed(capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a bar is drawn on a terminal only
    with ProgressBar(10, {"loss": ".2f", "val": ".1f"}):
        pass  # no step: the data failed to load, say
    assert capsys.readouterr().err == ""  # no empty bar left behind
    with ProgressBar(10, {"loss": ".2f", "val": ".1f"}) as bar:
        bar(4, {"loss": 0.123, "other": 1})  # a run resumed after step 3
        bar(5, {"loss": 0.5, "val": 20.0})
        bar(6, {"loss": 0.25, "val": None})
        assert bar.bar.n == 6
        assert bar.last == {"loss": 0.25, "val": 20.0}
        assert bar.bar.format_dict["initial"] == 3  # rate and ETA count only the 3 steps run now
    shown = capsys.readouterr().err
    assert "6/10" in shown and "loss=0.25, val=20.0" in shown and "other" not in shown


def test_progress_piped_to_a_file_is_a_line_every_few_seconds(capsys, monkeypatch):
    import sys

    import imgedit.training as training

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    now = [0.0]
    monkeypatch.setattr(training.time, "monotonic", lambda: now[0])
    with ProgressBar(10, {"loss": ".2f"}) as bar:
        for step in range(4, 11):  # a run resumed after step 3
            now[0] += 3  # each step takes 3 s
            bar(step, {"loss": 1 / step})
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    assert lines == ["step 8/10 (80%), 3.0 s/step, ETA 6s, loss=0.12",  # 12 s after the first step
                     "step 10/10 (100%), 3.0 s/step, ETA 0s, loss=0.10"]  # and the last step, whenever it comes


def test_kept_settings_names_only_real_differences():
    from imgedit.training import kept_settings

    # a checkpoint's tuple against the command line's JSON list is the same setting
    assert kept_settings({"betas": [0.5, 0.999], "lr": 0.001, "steps": 9}, {"betas": (0.5, 0.999), "lr": 0.001, "steps": 5}) == ""
    assert kept_settings({"betas": [0.5, 0.9], "lr": 0.002}, {"betas": (0.5, 0.999), "lr": 0.001}) == "betas [0.5, 0.999], lr 0.001"


def test_kept_settings_names_only_the_settings_typed_each_where_it_is():
    from imgedit.training import kept_settings

    given = {"batch": 32, "lr": 0.002, "model": {"image_size": 32, "z_dim": 128}}
    saved = {"batch": 8, "lr": 0.001, "model": {"image_size": 16, "z_dim": 64}}
    assert kept_settings(given, saved) == "batch 8, lr 0.001, model.image_size 16, model.z_dim 64"  # outside the CLI: all
    assert kept_settings(given, saved, typed={"lr", "model.image_size"}) == "lr 0.001, model.image_size 16"
    assert kept_settings(given, saved, typed=set()) == ""  # a plain --resume: nothing the user said is overruled




@pytest.mark.parametrize("verb", sorted(TINY_TRAIN_ARGS))
def test_a_new_run_refuses_to_replace_an_earlier_one_unless_overwrite(verb, tmp_path, invoke):
    from conftest import smooth_images

    data = smooth_images(tmp_path / "data", count=8)
    args = ["train", verb, "--data", data, *TINY_TRAIN_ARGS[verb], "-q"]
    if verb == "style":
        args += ["--style-image", data / "0.png"]
    run, weights = tmp_path / "run", tmp_path / "w.safetensors"
    result = invoke(*args, "--steps", 2, "--out", run, "--export", weights)
    assert result.exit_code == 0, result.output
    (run / "notes.txt").write_text("mine")
    log = (run / "log.jsonl").read_text()

    result = invoke(*args, "--steps", 1, "--out", run, "--export", tmp_path / "other.safetensors")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert str(run) in result.output and f"--resume {run / 'checkpoint.safetensors'}" in result.output
    assert "--overwrite" in result.output
    assert (run / "log.jsonl").read_text() == log and not (tmp_path / "other.safetensors").exists()

    # a new run into a new folder would still replace the exported model
    result = invoke(*args, "--steps", 1, "--out", tmp_path / "run2", "--export", weights)
    assert result.exit_code == 2 and str(weights) in result.output and "--overwrite" in result.output
    assert not (tmp_path / "run2").exists()

    result = invoke(*args, "--steps", 1, "--out", run, "--export", weights, "--overwrite")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1]
    assert load_checkpoint(run / "checkpoint.safetensors", kind=verb)["step"] == 1  # checkpoint kinds are named as the verbs
    if verb in ("gan", "interp-vae", "style"):  # the VAEs write no sample sheets
        assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_000001.png"]  # none left of the old run
    assert (run / "notes.txt").read_text() == "mine"  # not a file the run writes: kept
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["training"]["steps"] == 1


@pytest.mark.parametrize("verb", sorted(TINY_TRAIN_ARGS))
def test_a_model_folder_that_cannot_be_written_is_refused_before_training(verb, tmp_path, invoke, monkeypatch):
    from conftest import smooth_images

    data = smooth_images(tmp_path / "data", count=8)
    (tmp_path / "home").write_text("a file, not a folder")
    monkeypatch.setenv("IMGEDIT_HOME", str(tmp_path / "home"))  # the default --export goes under it
    args = ["train", verb, "--data", data, *TINY_TRAIN_ARGS[verb], "-q", "--steps", 1, "--out", tmp_path / "run"]
    if verb == "style":
        args += ["--style-image", data / "0.png"]
    result = invoke(*args)
    assert result.exit_code == 2 and "the trained model: " in result.output, result.output
    assert str(tmp_path / "home") in result.output and not (tmp_path / "run").exists()  # no step was spent


def _tiny_train_args(verb, data):
    args = ["train", verb, "--data", data, *TINY_TRAIN_ARGS[verb], "-q"]
    return args + (["--style-image", data / "0.png"] if verb == "style" else [])


def _card_steps(weights):
    return json.loads(weights.with_suffix(".json").read_text())["training"]["steps"]


@pytest.mark.parametrize("verb", sorted(TINY_TRAIN_ARGS))
def test_a_resumed_run_exports_to_its_own_model_and_replaces_no_other(verb, tmp_path, invoke, user_home):
    from conftest import smooth_images

    args = _tiny_train_args(verb, smooth_images(tmp_path / "data", count=8))
    own = tmp_path / "own.safetensors"
    assert invoke(*args, "--steps", 1, "--out", tmp_path / "a", "--export", own).exit_code == 0
    result = invoke(*args, "--steps", 1, "--out", tmp_path / "b")  # another run's model, at the default place
    assert result.exit_code == 0, result.output
    other = Path(result.output.split("weights: ")[1].split()[0])
    checkpoint = tmp_path / "a" / "checkpoint.safetensors"

    result = invoke(*args, "--steps", 2, "--out", tmp_path / "a", "--resume", checkpoint)  # no --export: its own
    assert result.exit_code == 0, result.output
    assert f"weights: {own.resolve()}" in result.output
    assert _card_steps(own) == 2 and _card_steps(other) == 1

    result = invoke(*args, "--steps", 3, "--out", tmp_path / "a", "--resume", checkpoint, "--export", other)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert str(other) in result.output and "--overwrite" in result.output
    assert _card_steps(other) == 1 and load_checkpoint(checkpoint, kind=verb)["step"] == 2

    # a run past --steps is refused; at --steps exactly it exports its weights as they are, and trains nothing
    log, exported = (tmp_path / "a" / "log.jsonl").read_text(), own.stat().st_mtime_ns
    result = invoke(*args, "--steps", 1, "--resume", tmp_path / "a")  # the run's folder will do
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "already at step 2; give a --steps larger than 2 to go on (or --steps 2 to export" in result.output
    assert own.stat().st_mtime_ns == exported
    result = invoke(*args, "--steps", 2, "--resume", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert "already at step 2: exporting its weights as they are, without training" in result.output
    assert (tmp_path / "a" / "log.jsonl").read_text() == log and _card_steps(own) == 2
    assert load_checkpoint(checkpoint, kind=verb)["step"] == 2


@pytest.mark.parametrize("make, message", [(lambda p: p.mkdir(), "is a folder"),
                                           (lambda p: None, "the file name is too long")])
def test_an_export_path_that_cannot_be_a_file_is_refused_before_training(tmp_path, invoke, make, message):
    from conftest import smooth_images

    args = _tiny_train_args("denoise", smooth_images(tmp_path / "data", count=3))
    export = tmp_path / "x" if message == "is a folder" else tmp_path / ("x" * 250 + ".safetensors")
    make(export)
    result = invoke(*args, "--steps", 1, "--out", tmp_path / "run", "--export", export)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output and "unexpected" not in result.output and not (tmp_path / "run").exists()


def test_an_out_folder_that_cannot_be_written_is_refused_before_training(tmp_path, invoke):
    from conftest import smooth_images

    args = _tiny_train_args("denoise", smooth_images(tmp_path / "data", count=3))
    (tmp_path / "out").write_text("a file")
    result = invoke(*args, "--steps", 1, "--out", tmp_path / "out" / "run", "--export", tmp_path / "w.safetensors")
    assert result.exit_code == 2 and "--out: " in result.output and "unexpected" not in result.output, result.output


def test_resuming_from_exported_weights_says_they_are_not_a_checkpoint(tmp_path):
    from imgedit.errors import UsageError
    from imgedit.models import save_weights

    weights = tmp_path / "candy.safetensors"
    save_weights({"w": torch.ones(2)}, weights, {"architecture": "imgedit_style.model.StyleNet"})
    with pytest.raises(UsageError, match="exported model weights, not a training checkpoint") as caught:
        load_checkpoint(weights, kind="style")
    assert "--out folder" in str(caught.value) and "structure" not in str(caught.value)


def test_the_closing_line_counts_steps_in_english():
    from types import SimpleNamespace

    from imgedit.training import trained_line

    assert trained_line(SimpleNamespace(step=1, elapsed=6.0), Path("w.safetensors")) == \
        "Trained 1 step (0.1 min); weights: w.safetensors"
    assert trained_line(SimpleNamespace(step=3, elapsed=0.0), Path("w")).startswith("Trained 3 steps (0.0 min)")


def test_export_model_writes_the_shared_card_fields_and_stores_floats_as_asked(tmp_path):
    from safetensors.torch import load_file

    from imgedit.training import TrainingDiverged, export_model

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    path = tmp_path / "net.safetensors"
    export_model(net, path, name="net", description="a test", config={"width": 4}, step=7,
                 training={"steps": 7}, metrics={})
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["name"] == "net" and card["description"] == "a test"
    assert card["training"] == {"steps": 7} and card["metrics"] == {}
    assert card["architecture"] == "torch.nn.modules.container.Sequential" and card["model_config"] == {"width": 4}
    assert card["parameters"] == 3 * 4 * 9 + 4 + 4 + 4 and card["storage_dtype"] == "float16"
    tensors = load_file(path)
    assert tensors["0.weight"].dtype == torch.float16 and tensors["1.num_batches_tracked"].dtype == torch.int64
    export_model(net, path, name="net", description="a test", config={}, step=7, storage="float32")
    assert load_file(path)["0.weight"].dtype == torch.float32
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="0.weight"):
        export_model(net, tmp_path / "nan.safetensors", name="nan", description="", config={}, step=8)
    assert not (tmp_path / "nan.safetensors").exists()
