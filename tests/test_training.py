"""The training machinery plugins share: checkpoint files, the fit loop
(SIGTERM, validation metrics), the progress bar."""

import json
import logging
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
    monkeypatch.setenv("TERM", "xterm")  # that can redraw it
    with ProgressBar(10, {"loss": ".2f", "val": ".1f"}):
        pass  # no step: the data failed to load, say
    assert capsys.readouterr().err == ""  # no empty bar left behind
    with ProgressBar(10, {"loss": ".2f", "val": ".1f"}) as bar:
        bar(4, {"loss": 0.123, "other": 1})  # a run resumed after step 3
        bar(5, {"loss": 0.5, "val": 20.0})
        bar(6, {"loss": 0.25, "val": None})
        assert bar.bar.n == 6
        bar(7, {"loss": 0.5, "val": 30.0})
        # a batch's loss is shown as the mean of the recent steps', a validation metric as measured
        assert bar.last == {"loss": pytest.approx((0.123 + 0.5 + 0.25 + 0.5) / 4), "val": 30.0}
        assert bar.bar.n == 7
        assert bar.bar.format_dict["initial"] == 3  # rate and ETA count only the 4 steps run now
        bar.smoothing = 2
        bar.recent.clear()
        for step, loss in ((8, 9.0), (9, 1.0), (10, 3.0)):
            bar(step, {"loss": loss})
        assert bar.last["loss"] == 2.0  # the last two steps' mean
    shown = capsys.readouterr().err
    assert "10/10" in shown and "loss=2.00, val=30.0" in shown and "other" not in shown


@pytest.mark.parametrize("terminal", [None, "dumb"], ids=["piped", "TERM=dumb"])
def test_progress_piped_to_a_file_is_a_line_every_few_seconds(capsys, monkeypatch, terminal):
    import sys

    import imgedit.training as training

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal is not None)
    monkeypatch.setenv("TERM", terminal or "xterm")
    now = [0.0]
    monkeypatch.setattr(training.time, "monotonic", lambda: now[0])
    with ProgressBar(10, {"loss": ".2f"}) as bar:
        for step in range(4, 11):  # a run resumed after step 3
            now[0] += 3  # each step takes 3 s
            bar(step, {"loss": 1 / step})
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    assert lines == ["step 8/10 (80%), 3.0 s/step, ETA 6s, loss=0.18",  # 12 s after the first step
                     "step 10/10 (100%), 3.0 s/step, ETA 0s, loss=0.16"]  # and the last step, whenever it comes


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
    assert f"Exported the checkpoint's 2 steps (nothing left to train); weights: {own.resolve()}" in result.output
    assert "Trained" not in result.output  # nothing was, this time
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


def test_a_session_resumed_at_its_last_step_says_it_only_exported(tmp_path):
    from imgedit.training import trained_line

    done = CountingTrainer(steps=9000)
    done.step, done.elapsed = 9000, 4356.0  # 72.6 min, all of it in earlier sessions
    save_checkpoint({"kind": "count", "step": 9000}, tmp_path / "checkpoint.safetensors")
    fit(done, tmp_path, resumed_from=tmp_path)
    assert trained_line(done, Path("w.safetensors")) == \
        "Exported the checkpoint's 9000 steps (nothing left to train); weights: w.safetensors"
    resumed = CountingTrainer(steps=9001)
    resumed.step, resumed.elapsed = 9000, 4356.0
    fit(resumed, tmp_path, resumed_from=tmp_path)
    assert trained_line(resumed, Path("w.safetensors")).startswith("Trained 9001 steps (72.6 min)")


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


def _no_space_at_save(monkeypatch, failing):
    """Make checkpoint saves number ``failing`` (counted from 1) fail as a full disk does."""
    import errno

    import imgedit.checkpoint as checkpoint_module

    write, saves = checkpoint_module.write_bytes_atomic, []

    def full_disk(path, data, *args, **kwargs):
        saves.append(path)
        if len(saves) in failing:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(path, data, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "write_bytes_atomic", full_disk)


def _every_third_step_checkpointed(trainer):
    trainer.cfg.checkpoint_every = 3
    return trainer


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one_and_says_how_to_go_on(tmp_path, monkeypatch):
    from imgedit.errors import ImgeditError
    from imgedit.training import RunWriteError

    _no_space_at_save(monkeypatch, failing={2})
    with pytest.raises(RunWriteError) as failed:
        fit(_every_third_step_checkpointed(CountingTrainer(steps=10)), tmp_path)
    checkpoint = tmp_path / "checkpoint.safetensors"
    assert isinstance(failed.value, ImgeditError) and failed.value.exit_code == 1
    assert str(failed.value) == (f"cannot write the checkpoint {checkpoint} (No space left on device); the checkpoint "
                                 f"of step 3 is kept: free some space, then add --resume {checkpoint} to go on")
    assert load_checkpoint(checkpoint, kind="count")["step"] == 3


@pytest.mark.parametrize("val_every, then", [(100, "run the command again"), (1, "start over with --overwrite")])
def test_a_full_disk_at_the_first_checkpoint_says_none_was_saved(tmp_path, monkeypatch, val_every, then):
    from imgedit.training import RunWriteError

    _no_space_at_save(monkeypatch, failing={1})
    with pytest.raises(RunWriteError) as failed:
        fit(_every_third_step_checkpointed(CountingTrainer(steps=10, val_every=val_every)), tmp_path)
    # a log of this run in the folder makes a plain rerun refuse it: the way on is --overwrite
    assert str(failed.value).endswith(f"(No space left on device); no checkpoint was saved yet: free some space, then {then}")
    assert not (tmp_path / "checkpoint.safetensors").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, which is always full")
def test_a_log_that_cannot_be_written_ends_the_run_in_one_line(tmp_path, monkeypatch):
    import imgedit.training as training
    from imgedit.training import RunWriteError

    # the log opened on /dev/full (a link there is refused: see the test below)
    monkeypatch.setattr(training, "_open_no_link", lambda path, flags: os.open("/dev/full", os.O_WRONLY))
    with pytest.raises(RunWriteError) as failed:
        fit(_every_third_step_checkpointed(CountingTrainer(steps=10, val_every=4)), tmp_path)
    assert str(failed.value).startswith(f"cannot write the training log {tmp_path / 'log.jsonl'} (No space left on device); "
                                        "the checkpoint of step 3 is kept")


def test_a_sample_sheet_that_cannot_be_written_says_which_checkpoint_is_kept(tmp_path):
    from imgedit.errors import DiskFullError
    from imgedit.training import RunWriteError

    class SheetOnAFullDisk(CountingTrainer):
        def validate(self):  # as write_image says it
            raise DiskFullError("samples/step_000004.png: cannot write (No space left on device)")

    with pytest.raises(RunWriteError) as failed:
        fit(_every_third_step_checkpointed(SheetOnAFullDisk(steps=10, val_every=4)), tmp_path)
    assert str(failed.value) == ("samples/step_000004.png: cannot write (No space left on device); the checkpoint of "
                                 f"step 3 is kept: free some space, then add --resume {tmp_path / 'checkpoint.safetensors'} "
                                 "to go on")


def test_a_checkpoint_that_cannot_be_saved_on_sigterm_still_ends_in_one_line(tmp_path, monkeypatch):
    from imgedit.errors import Interrupted

    class Preempted(CountingTrainer):
        def train_step(self):
            metrics = super().train_step()
            if self.step == 4:
                os.kill(os.getpid(), signal.SIGTERM)
            return metrics

    _no_space_at_save(monkeypatch, failing={2})  # the save on SIGTERM, after step 4
    with pytest.raises(Interrupted) as stopped:
        fit(_every_third_step_checkpointed(Preempted(steps=10)), tmp_path)
    checkpoint = tmp_path / "checkpoint.safetensors"
    assert str(stopped.value) == (f"stopped by SIGTERM at step 4 of 10, but cannot write the checkpoint {checkpoint} "
                                  f"(No space left on device); the checkpoint of step 3 is kept: free some space, "
                                  f"then add --resume {checkpoint} to go on")
    assert stopped.value.exit_code == 143 and load_checkpoint(checkpoint, kind="count")["step"] == 3


def test_a_full_disk_on_the_command_line_is_one_line_naming_the_checkpoint(tmp_path, invoke, monkeypatch):
    from conftest import smooth_images

    _no_space_at_save(monkeypatch, failing={1})
    args = _tiny_train_args("denoise", smooth_images(tmp_path / "data", count=3))
    result = invoke(*args, "--steps", 1, "--out", tmp_path / "run", "--export", tmp_path / "w.safetensors")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"cannot write the checkpoint {tmp_path / 'run' / 'checkpoint.safetensors'} (No space left" in result.output
    assert "unexpected" not in result.output and "plugin" not in result.output
    assert not (tmp_path / "w.safetensors").exists()


class _Said(logging.Handler):
    """The messages of the ``imgedit`` logger, however the CLI's tests left its propagation."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def said(caplog):
    handler = _Said()
    caplog.set_level(logging.INFO, logger="imgedit")  # restored after the test
    logging.getLogger("imgedit").addHandler(handler)
    yield handler.messages
    logging.getLogger("imgedit").removeHandler(handler)


def test_a_resumed_run_cuts_the_log_back_to_its_checkpoint(tmp_path, said):
    checkpoint = tmp_path / "checkpoint.safetensors"
    save_checkpoint({"kind": "count", "step": 3}, checkpoint)
    # a run killed in step 6, its last checkpoint of step 3: steps 4 and 5 logged, the record of 6 cut short
    before = [json.dumps({"step": step, "loss": 9.0}) for step in range(1, 6)]
    (tmp_path / "log.jsonl").write_text("\n".join([*before[:2], "# a note", *before[2:]]) + '\n{"step": 6, "lo')

    resumed = CountingTrainer(steps=7, val_every=1)
    resumed.step = 3
    fit(resumed, tmp_path, resumed_from=checkpoint)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert lines[:4] == [*before[:2], "# a note", before[2]]  # kept as they were, the note too
    steps = [json.loads(line)["step"] for line in lines if line.startswith("{")]
    assert steps == [1, 2, 3, 4, 5, 6, 7]  # each once: the killed run's 4 and 5 are gone
    assert json.loads(lines[4])["loss"] == 0.25  # the resumed run's record, not the killed run's
    assert [m for m in said if m.startswith("resuming")] == [f"resuming from step 3 ({checkpoint})"]


def test_resuming_at_the_checkpoints_last_record_leaves_the_log_as_it_was(tmp_path, said):
    save_checkpoint({"kind": "count", "step": 2}, tmp_path / "checkpoint.safetensors")
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n')
    written = log.stat().st_mtime_ns
    done = CountingTrainer(steps=2)
    done.step = 2
    fit(done, tmp_path, resumed_from=tmp_path)  # a run at its last step: it trains nothing, and says nothing of resuming
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n' and log.stat().st_mtime_ns == written
    assert not [m for m in said if m.startswith("resuming")]


def test_a_last_record_without_its_newline_is_kept_on_a_line_of_its_own(tmp_path):
    save_checkpoint({"kind": "count", "step": 2}, tmp_path / "checkpoint.safetensors")
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}')  # killed between a record and its newline
    resumed = CountingTrainer(steps=3, val_every=1)
    resumed.step = 2
    fit(resumed, tmp_path, resumed_from=tmp_path)  # the run's folder will do
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3]


@pytest.mark.parametrize("linked", ["log.jsonl", "samples"])
def test_a_run_folder_never_writes_through_a_planted_link(linked, tmp_path):
    """A run folder may come with a downloaded checkpoint: its log or samples
    folder, a link, would have the run append to or write into another file."""
    from imgedit.errors import UsageError
    from imgedit.training import _Log, check_fresh_run

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir()
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("precious")
    (run / linked).symlink_to(elsewhere / "notes.txt" if linked == "log.jsonl" else elsewhere)
    save_checkpoint({"kind": "count", "step": 2}, run / "checkpoint.safetensors")
    class SheetWriter(CountingTrainer):
        def validate(self):  # as the trainers write their sample sheets
            (run / "samples").mkdir(exist_ok=True)
            (run / "samples" / f"step_{self.step:06d}.png").write_bytes(b"a sheet")

    for resumed_from in (None, run):
        with pytest.raises(UsageError) as refused:
            fit(SheetWriter(steps=4, val_every=1), run, resumed_from=resumed_from)
        assert str(refused.value) == (f"{run / linked} is a symbolic link: a training run writes its log and samples "
                                      "in its own folder, never through a link; remove it")
    with pytest.raises(UsageError, match="is a symbolic link"):  # before the data loads, even with --overwrite
        check_fresh_run(run, None, overwrite=True)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["notes.txt"]
    assert (elsewhere / "notes.txt").read_text() == "precious"

    if linked == "log.jsonl":  # a link planted after that check is not followed either
        with pytest.raises(OSError):
            _Log(run / "log.jsonl").write('{"step": 3}\n')
        with pytest.raises(OSError):
            _Log(run / "log.jsonl").drop_after(1)
        assert (elsewhere / "notes.txt").read_text() == "precious"
