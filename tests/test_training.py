"""The training machinery plugins share: checkpoint files, the fit loop
(SIGTERM, validation metrics), the progress bar."""

import json
import os
import signal
from types import SimpleNamespace

import pytest
import torch

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


def test_sigterm_saves_a_checkpoint_before_stopping(tmp_path):
    class Preempted(CountingTrainer):
        def train_step(self):
            metrics = super().train_step()
            if self.step == 3:
                os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler pre-empting the job
            return metrics

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        fit(Preempted(), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoint.safetensors", kind="count")["step"] == 3
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize("validation, logged", [(31.5, {"val_psnr": 31.5}), ({"d_loss": 0.5, "g_loss": 1.5}, {"d_loss": 0.5, "g_loss": 1.5}),
                                                (None, {"val_psnr": None})])
def test_fit_logs_what_validate_returns(tmp_path, validation, logged):
    fit(CountingTrainer(steps=4, val_every=2, validation=validation), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all(r.items() >= logged.items() for r in records)
    assert load_checkpoint(tmp_path / "checkpoint.safetensors", kind="count")["step"] == 4


def test_progress_bar_shows_the_chosen_metrics_and_starts_where_a_run_resumed(capsys):
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


def test_kept_settings_names_only_real_differences():
    from imgedit.training import kept_settings

    # a checkpoint's tuple against the command line's JSON list is the same setting
    assert kept_settings({"betas": [0.5, 0.999], "lr": 0.001, "steps": 9}, {"betas": (0.5, 0.999), "lr": 0.001, "steps": 5}) == ""
    assert kept_settings({"betas": [0.5, 0.9], "lr": 0.002}, {"betas": (0.5, 0.999), "lr": 0.001}) == "betas [0.5, 0.999], lr 0.001"
