"""The training loop every plugin's trainer can share: steps, validation,
the JSON-lines log, checkpoints (every ``checkpoint_every`` steps, at the end,
on Ctrl-C and on SIGTERM), the checkpoint state of a run, and a progress bar.

A trainer (what ``build(cfg)`` returns to :func:`train_or_resume`) is any
object with what :class:`Trainer` lists. Its config has ``steps``, ``batch`` (checked to split over ``--nproc``
processes), ``val_every``, ``checkpoint_every``, ``to_dict()`` (JSON-able:
checkpoints and model cards keep it) and a classmethod ``from_dict(d)``
that rebuilds it from ``to_dict()``'s output, giving a field the dict lacks
its default (a resumed run's config is the checkpoint's); ``lr``,
``warmup`` and ``min_lr_ratio`` for :func:`learning_rate`; ``precision``
where the verb has ``--precision`` (a resumed run takes it and ``steps``
from its command line); optionally ``OPTION_FIELDS``
(:func:`imgedit.options.typed_settings`).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Optional, Protocol, Sequence

from imgedit import distributed
from imgedit.atomic import NO_FOLLOW, NO_SPACE, write_bytes_atomic
from imgedit.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from imgedit.errors import DiskFullError, ImageWriteError, ImgeditError, Interrupted, UsageError
from imgedit.options import typed_command, typed_settings
# a run's folder and its model: re-exported, as plugins have long imported them from here
from imgedit.run_folder import (check_export_path, check_fresh_run, check_run_folder, export_target,
                                remove_run_outputs, resolved, run_export, run_folder, run_outputs, same_run)
from imgedit.shell import quote_arg
from imgedit.progress import duration, pace, redraws_in_place

__all__ = [
    "PRECISIONS",
    "ProgressBar",
    "RunWriteError",
    "Trainer",
    "TrainingDiverged",
    "autocast",
    "check_export_path",
    "check_finite_tensors",
    "check_fresh_run",
    "check_run_folder",
    "export_model",
    "export_target",
    "export_weights",
    "fit",
    "learning_rate",
    "load_run_state",
    "run_export",
    "run_folder",
    "run_licence",
    "run_state",
    "train_or_resume",
    "trained_line",
    "training_summary",
]


logger = logging.getLogger("imgedit")


class Trainer(Protocol):
    """What the loop needs of a plugin's trainer (no base class to inherit:
    any object with these will do)."""

    cfg: Any  # the run's config (the module's docstring says what it has)
    step: int  # 0 at the start; train_step adds one
    elapsed: float  # seconds trained, over every session (0.0 at the start)
    history: list  # the logged records; fit appends, run_state saves
    commands: list  # each session's command line; train_or_resume appends
    generator: Any  # the run's torch.Generator: all its random draws
    device: Any  # where it trains (training_summary records it); optionally ``data_licence`` too

    def train_step(self) -> dict:
        """One optimisation step, advancing ``step`` by one: a dict of floats
        (a loss that is not finite ends the run)."""

    def validate(self) -> Any:
        """A dict of metrics to log, a number (logged as ``val_psnr``) or None;
        run every ``cfg.val_every`` steps and at the end."""

    def state(self) -> dict:
        """Its checkpoint: :func:`run_state` plus whatever else it needs."""

    def load_state(self, state: dict) -> None:
        """Restore a checkpoint (:func:`load_run_state`); called on ``--resume`` after ``build``."""

PRECISIONS = ("fp32", "bf16")
# What a resumed run takes from its command line rather than its checkpoint: where it ends and how it computes.
SESSION_FIELDS = ("steps", "precision")


def kept_settings(given: dict, checkpoint: dict, typed: Optional[Collection[str]] = None) -> str:
    """The settings a resumed run takes from its checkpoint although its
    command line says otherwise, as ``"lr 0.0005, model.z_dim 64"``: those of
    ``typed`` (settings by their dotted path, :func:`imgedit.options.typed_settings`), or
    all of them where it is None. Both are compared as JSON has them (a
    checkpoint may hold a tuple where the command line's config, through
    JSON, holds a list)."""
    given, checkpoint = _leaves(json.loads(json.dumps(given))), _leaves(json.loads(json.dumps(checkpoint)))
    return ", ".join(f"{k} {v}" for k, v in checkpoint.items()
                     if k not in SESSION_FIELDS and k in given and given[k] != v and (typed is None or k in typed))


def _leaves(settings: dict, prefix: str = "") -> dict:
    """A nested config as ``{"model.z_dim": 64, ...}``: a difference is named where it is."""
    found: dict = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            found.update(_leaves(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def autocast(device: Any, precision: str) -> contextlib.AbstractContextManager:
    """The context for a training step's forward passes and losses.

    ``bf16`` runs convolutions and matrix products in bfloat16 (torch's
    autocast) while weights, optimizer state and reductions stay fp32; bf16
    has fp32's range, so no loss scaling is needed. On CPUs with AMX or
    AVX512-BF16 (and on GPUs with bf16 tensor cores) a VAE step is about 2.5x
    faster; on CPUs without them it is slower than fp32.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def learning_rate(cfg: Any, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def fit(trainer: Trainer, out_dir: Path, on_progress: Optional[Callable[[int, dict], None]] = None,
        resumed_from: Optional[Path] = None) -> None:
    """Run ``trainer`` until ``trainer.cfg.steps``, logging and checkpointing
    into ``out_dir``. Under torchrun every process steps, rank 0 alone
    validates, logs and checkpoints (:mod:`imgedit.distributed`).

    The first Ctrl-C or SIGTERM lets the current step finish, then saves the
    checkpoint and raises :class:`Interrupted`: a checkpoint saved in the
    middle of a step (the random state drawn, the weights not yet updated)
    would not resume bit for bit. A second one stops at once and keeps the
    last checkpoint saved (``resumed_from`` where none was saved yet).

    A step whose loss is not finite, or a checkpoint whose numbers are not,
    ends the run with :class:`TrainingDiverged`, keeping the last checkpoint
    saved: a diverged run only goes on diverging.

    A checkpoint, log record or sample sheet that cannot be written (a full
    disk) ends the run with :class:`RunWriteError`, keeping the last
    checkpoint saved (on a signal: :class:`Interrupted`, saying the same).

    The log is opened at its first record: a run that fails before it (a
    batch too large for memory) leaves no log that would pass for a run. A
    resumed run first cuts it back to its checkpoint's step: the steps run
    after that checkpoint are run, and logged, again.
    """
    cfg = trainer.cfg
    main = distributed.is_main()
    if str(getattr(trainer, "device", "")).startswith("cuda"):
        import torch

        torch.backends.cudnn.benchmark = True  # every batch has one shape: time cuDNN's kernels once, use the fastest
    if main:
        check_run_folder(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    trainer.started_at_step = trainer.step  # a session that trains nothing says so (trained_line)
    checkpoint = out_dir / "checkpoint.safetensors"
    last_saved = (resumed_from, trainer.step) if resumed_from is not None else None
    log = _Log(out_dir / "log.jsonl") if main else None
    if log is not None and resumed_from is not None:
        with _writing("the training log", log.path, last_saved):
            log.drop_after(trainer.step)
        if trainer.step < cfg.steps:  # a run at its last step says it only exports (check_steps_left)
            logger.info("resuming from step %d (%s)", trainer.step, _checkpoint_named(resumed_from))
    stop = StopRequest()
    try:
        with stop.catching_signals():
            while trainer.step < cfg.steps:
                start = time.perf_counter()
                # the stop request travels with the metrics: every process stops after the same step
                metrics = distributed.average({**trainer.train_step(), STOP_METRIC: float(stop.requested)})
                stopping = metrics.pop(STOP_METRIC) > 0
                check_finite_loss(metrics, trainer.step)  # on every process: all see the averaged metrics
                trainer.elapsed += time.perf_counter() - start
                if main:
                    _after_step(trainer, metrics, log, checkpoint, on_progress, last_saved)
                    if trainer.step % cfg.checkpoint_every == 0 or trainer.step == cfg.steps:
                        last_saved = (checkpoint, trainer.step)
                if stopping and trainer.step < cfg.steps:
                    if not main:
                        raise KeyboardInterrupt  # rank 0 says what was saved
                    if last_saved != (checkpoint, trainer.step):
                        _save_on_stop(trainer, checkpoint, last_saved, stop)
                    raise stop.error(f"{stop.stopped} at step {trainer.step} of {cfg.steps}; the checkpoint is saved: "
                                     f"add --resume {quote_arg(str(checkpoint))} to go on")
    except KeyboardInterrupt:  # a second Ctrl-C: the step under way is half done, so nothing of it is saved
        if not main:
            raise
        raise stop.error(_stopped_at_once(trainer, last_saved)) from None
    finally:
        if log is not None:
            log.close()


STOP_METRIC = "__stop__"


def _checkpoint_named(resume: Path) -> Path:
    """The checkpoint file ``--resume`` names (it may name the run's folder)."""
    resume = Path(resume)
    return resume / CHECKPOINT_NAME if resume.is_dir() else resume


def _log_up_to(text: str, step: int) -> str:
    """The log ``text`` without the records of steps after ``step`` and
    without a last line cut short (no newline, and not a whole record)."""
    *lines, last = text.split("\n")  # last: "" where the text ends with its newline
    kept = [line for line in lines if not _logged_after(line, step)]
    if last and _parsed(last) is not _NOT_JSON and not _logged_after(last, step):
        kept.append(last)  # a whole record that lacks only its newline
    return "".join(f"{line}\n" for line in kept)


def _logged_after(line: str, step: int) -> bool:
    """Whether a log line is the record of a step after ``step``."""
    record = _parsed(line)
    logged = record.get("step") if isinstance(record, dict) else None
    return isinstance(logged, (int, float)) and not isinstance(logged, bool) and logged > step


_NOT_JSON = object()


def _parsed(line: str) -> Any:
    """The JSON value of a log line, or :data:`_NOT_JSON`."""
    try:
        return json.loads(line)
    except ValueError:
        return _NOT_JSON


class _Log:
    """The run's JSON-lines log, appended to; the file is opened at the first record.

    Records go to the file as they are written, unbuffered: one that cannot
    be written (a full disk) fails there, and no part of it waits in a buffer
    that closing the file would try again, failing once more.
    """

    def __init__(self, path: Path):
        self.path, self.file = path, None

    def write(self, text: str) -> None:
        if self.file is None:
            self.file = open(_open_no_link(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab", buffering=0)
        data = text.encode()
        while data:  # an unbuffered write may take only part of it
            data = data[self.file.write(data):]

    def drop_after(self, step: int) -> None:
        """Cut the log back to ``step``, the checkpoint a resumed run goes on
        from: the records of later steps (a killed run logged them, and the
        resumed run logs them again) and a last line a crash cut short go;
        every other line stays. Rewritten atomically, and only if a line goes.
        """
        try:
            with open(_open_no_link(self.path, os.O_RDONLY), "rb") as fh:
                text = fh.read().decode("utf-8", "surrogateescape")  # any line not ours stays as it was
        except FileNotFoundError:
            return
        kept = _log_up_to(text, step)
        if kept != text:
            write_bytes_atomic(self.path, kept.encode("utf-8", "surrogateescape"))

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _open_no_link(path: Path, flags: int) -> int:
    """``os.open`` of a file in the run folder that fails where ``path`` is a
    symbolic link: :func:`check_run_folder` refuses one before the run, and
    this refuses one planted after that check."""
    return os.open(path, flags | NO_FOLLOW, 0o666)


class RunWriteError(ImgeditError):
    """A file of a training run (its checkpoint, its log, a sample sheet)
    cannot be written, a full disk say: the run stops, and the last
    checkpoint saved, untouched, is where it can go on from."""


class TrainingDiverged(ImgeditError):
    """Training produced numbers that are not finite (a learning rate too
    large, say): nothing of it is saved or exported."""

    same_in_every_process = True  # the processes check the same averaged losses and the same weights


def check_finite_loss(metrics: dict, step: int) -> None:
    """Refuse a step whose loss (any metric of ``train_step``) is not finite.

    Raises:
        TrainingDiverged: which metrics, at which step.
    """
    bad = [name for name, value in metrics.items() if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        raise TrainingDiverged(f"training diverged at step {step}: the loss is not finite ({', '.join(bad)}); "
                               "lower --lr")


def check_finite_tensors(tensors: Any, step: int, what: str) -> None:
    """Refuse to save ``tensors`` (a checkpoint's state, a model's weights:
    nested dicts, lists and tensors) where a float in them is NaN or infinite.

    Raises:
        TrainingDiverged: the first such tensor's name, the step and ``what`` was refused.
    """
    bad = next(_non_finite(tensors), None)
    if bad is not None:
        raise TrainingDiverged(f"training diverged by step {step}: {bad} is not finite (NaN or too large); "
                               f"{what}; lower --lr")


def trained_line(trainer: Trainer, target: Path) -> str:
    """What every train verb says at the end: ``Trained 1 step (0.0 min); weights: PATH``,
    or, for a run resumed at its last step, which :func:`fit` trained no further,
    ``Exported the checkpoint's 9000 steps (nothing left to train); weights: PATH``."""
    steps = f"{trainer.step} step{'' if trainer.step == 1 else 's'}"
    if getattr(trainer, "started_at_step", None) == trainer.step:
        return f"Exported the checkpoint's {steps} (nothing left to train); weights: {target}"
    return f"Trained {steps} ({trainer.elapsed / 60:.1f} min); weights: {target}"


def export_weights(tensors: "dict[str, Any]", path: Path, card: dict, step: int) -> Any:
    """Write a trained model's ``tensors`` (as stored: fp16 makes finite
    weights past 65504 infinite) with its ``card``, unless a float in them
    is not finite: NaN weights would load and fill, paint or sample black.

    Raises:
        TrainingDiverged: a weight is NaN or infinite; nothing is written.
    """
    from imgedit.models import save_weights

    check_finite_tensors(tensors, step, "nothing is exported")
    return save_weights(tensors, Path(path), card)


def export_model(model: Any, path: Path, *, name: str, description: str, config: dict, step: int,
                 storage: str = "float16", **card: Any) -> Any:
    """Write a trained ``model`` (a torch module) with its model card, as
    :func:`export_weights` does: floats stored as ``storage`` (``float16``
    halves the file, and loading casts back to float32; the outputs of the
    shipped models move by well under 1/255), and the card's fields every
    model has (name, description, the model's class, ``config``, parameter
    count, storage) with those of ``card`` (training, licence, metrics...).

    Raises:
        TrainingDiverged: a weight is NaN or infinite; nothing is written.
    """
    import torch

    dtype = getattr(torch, storage)
    header = {
        "name": name,
        "description": description,
        "architecture": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_config": config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "storage_dtype": storage,
    }
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    return export_weights(tensors, Path(path), {**header, **card}, step)


def _non_finite(value: Any, name: str = "") -> Any:
    """The names of the float tensors in ``value`` holding NaN or infinity."""
    import torch

    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and not torch.isfinite(value).all():
            yield name or "a tensor"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _non_finite(item, f"{name}[{index}]")


def _after_step(trainer: Trainer, metrics: dict, log: Any, checkpoint: Path,
                on_progress: Optional[Callable[[int, dict], None]], last_saved: Optional[tuple[Path, int]]) -> None:
    """Rank 0's part of a step: validate and log, checkpoint, report progress.
    A file that cannot be written ends the run, saying that ``last_saved``
    (the checkpoint path and its step) is kept."""
    cfg = trainer.cfg
    if trainer.step % cfg.val_every == 0 or trainer.step == cfg.steps:
        with _sheet_written(last_saved, checkpoint.parent):
            result = trainer.validate()
        metrics.update(result if isinstance(result, dict) else {"val_psnr": result})
        record = {"step": trainer.step, "elapsed": round(trainer.elapsed, 1), **metrics}
        trainer.history.append(record)
        with _writing("the training log", log.path, last_saved):
            log.write(json.dumps(record) + "\n")
            log.flush()
    if trainer.step % cfg.checkpoint_every == 0 or trainer.step == cfg.steps:
        with _writing("the checkpoint", checkpoint, last_saved):
            _save_checkpoint(trainer, checkpoint)
    if on_progress:
        on_progress(trainer.step, metrics)


def _save_checkpoint(trainer: Trainer, checkpoint: Path) -> None:
    """Save the trainer's state, unless training diverged: a checkpoint
    with NaN weights would replace the last good one."""
    state = trainer.state()
    check_finite_tensors(state, trainer.step, "the checkpoint of this step is not saved")
    save_checkpoint(state, checkpoint)


def _save_on_stop(trainer: Trainer, checkpoint: Path, last_saved: Optional[tuple[Path, int]], stop: "StopRequest") -> None:
    """Save the checkpoint of a run a signal stops; where it cannot be
    written, the run ends as stopped all the same, saying what is kept."""
    try:
        with _writing("the checkpoint", checkpoint, last_saved):
            _save_checkpoint(trainer, checkpoint)
    except RunWriteError as failed:
        raise stop.error(f"{stop.stopped} at step {trainer.step} of {trainer.cfg.steps}, but {failed}") from None


@contextlib.contextmanager
def _writing(what: str, path: Path, last_saved: Optional[tuple[Path, int]]) -> Iterator[None]:
    """Turn an OSError writing ``what`` at ``path`` (a full disk) into a
    :class:`RunWriteError` saying which checkpoint is kept and how to go on."""
    try:
        yield
    except OSError as exc:
        raise RunWriteError(f"cannot write {what} {path} ({exc.strerror or exc}); "
                            f"{_kept(last_saved, path.parent, exc.errno in NO_SPACE)}") from None


@contextlib.contextmanager
def _sheet_written(last_saved: Optional[tuple[Path, int]], out_dir: Path) -> Iterator[None]:
    """As :func:`_writing`, for a sample sheet that ``validate()`` writes:
    its :class:`ImageWriteError` names the file and the OSError already."""
    try:
        yield
    except ImageWriteError as exc:
        raise RunWriteError(f"{exc}; {_kept(last_saved, out_dir, isinstance(exc, DiskFullError))}") from None


def _kept(last_saved: Optional[tuple[Path, int]], out_dir: Path, no_space: bool) -> str:
    """What a run that cannot write its files in ``out_dir`` keeps, and how to go on."""
    fix = "free some space" if no_space else "fix that"
    if last_saved is None:  # a rerun into a folder with a log of this run must say it starts over
        again = "start over with --overwrite" if run_outputs(out_dir) else "run the command again"
        return f"no checkpoint was saved yet: {fix}, then {again}"
    path, step = last_saved
    return f"the checkpoint of step {step} is kept: {fix}, then add --resume {quote_arg(str(path))} to go on"


def _stopped_at_once(trainer: Trainer, last_saved: Optional[tuple[Path, int]]) -> str:
    said = f"stopped at once in step {trainer.step + 1} of {trainer.cfg.steps}, which is not saved"
    if last_saved is None:
        return f"{said}; no checkpoint was saved yet"
    path, step = last_saved
    return f"{said}; the checkpoint of step {step} is kept: add --resume {quote_arg(str(path))} to go on"


class StopRequest:
    """Ctrl-C and SIGTERM while :meth:`catching_signals`: the first one sets
    ``requested`` (the loop stops between steps), a second one raises
    KeyboardInterrupt at once. Outside the main thread signals are not ours
    to catch, and the default behaviour stays."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: Optional[int] = None  # the last signal received

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if signum == signal.SIGTERM:  # a scheduler or `kill`: nobody may be at a keyboard
            logger.warning("SIGTERM: stopping after this step to save the checkpoint (a second SIGTERM or Ctrl-C "
                           "stops at once, keeping the last checkpoint saved)")
        else:
            logger.warning("stopping after this step to save the checkpoint (press Ctrl-C again to stop at once, "
                           "keeping the last checkpoint saved)")

    @property
    def stopped(self) -> str:
        return "stopped by SIGTERM" if self.signum == signal.SIGTERM else "interrupted"

    def error(self, message: str) -> Interrupted:
        """The error that ends the run, exiting as a process killed by the
        signal would: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
        error = Interrupted(message)
        if self.signum == signal.SIGTERM:
            error.exit_code = 128 + signal.SIGTERM
        return error

    @contextlib.contextmanager
    def catching_signals(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def train_or_resume(build: Callable[[Any], Trainer], cfg: Any, kind: str, out_dir: Path, resume: Optional[Path] = None,
                    on_progress: Optional[Callable[[int, dict], None]] = None, command: str = "",
                    overwrite: bool = False, sources: Sequence = (), export: Optional[tuple[str, Path]] = None) -> Any:
    """What every plugin's ``train`` function does around its trainer.

    Args:
        build: ``build(cfg) -> trainer`` (loads the data, makes the networks).
            The trainer may set ``data_licence``: the terms of this session's
            images, which the run's record keeps with those of earlier sessions.
        cfg: the run's config; when resuming, the checkpoint's config is used
            instead (``type(cfg).from_dict``), except :data:`SESSION_FIELDS`.
        kind: the checkpoint kind (``"denoise"``, ``"gan"``): a checkpoint of
            another kind is refused.
        out_dir: folder for ``checkpoint.safetensors`` and ``log.jsonl``; a
            resumed run given no ``--out`` on the command line goes on in its
            checkpoint's folder instead (:func:`run_folder`).
        resume: checkpoint to continue from, exactly where it stopped (or its run folder).
        on_progress: called after each step with (step, metrics).
        command: the command line, recorded in checkpoints and the model card
            (resumed on the CLI: the options typed alone, :func:`resumed_config`).
        overwrite: a run may replace another run's checkpoint, log and
            samples in its folder (removed once the data has loaded).
        sources: this session's training data, added to the run's record.
        export: (name, weights file) the run exports to, recorded so that a
            resumed run goes on exporting there (:func:`export_target`).

    Returns:
        The trainer, trained until ``cfg.steps`` (a run resumed at ``cfg.steps``: as it was).

    Raises:
        UsageError: the checkpoint is missing, unreadable or of another kind,
            or already past ``cfg.steps``; a run into a folder with another
            run, without ``overwrite``.
    """
    out_dir = run_folder(out_dir, resume)
    check_fresh_run(out_dir, resume, overwrite)
    state = None
    if resume is not None:
        state = load_checkpoint(resume, kind=kind)
        check_steps_left(state, cfg.steps)
        cfg, command = resumed_config(cfg, state["config"], command)
    distributed.check_batch(cfg.batch)
    trainer = build(cfg)
    _train_bf16_where_it_runs(trainer)
    if state is not None:
        trainer.load_state(state)
    if overwrite and distributed.is_main() and not same_run(out_dir, resume):
        remove_run_outputs(out_dir)  # only now that the data has loaded: a failed start loses nothing
    if command:
        trainer.commands.append(command)
    record_session(trainer, sources, export)
    fit(trainer, out_dir, on_progress, resumed_from=resume)
    distributed.stop()
    if not distributed.is_main():
        raise distributed.WorkerDone()  # rank 0 alone exports the weights and reports
    return trainer


def _train_bf16_where_it_runs(trainer: Trainer) -> None:
    """A bf16 run on a GPU that has no bf16 (MPS before macOS 14 or torch
    2.6, NVIDIA before Ampere) trains in fp32, saying so; its records say
    fp32 too. (On the CPU bf16 is what was asked for, native or not.)"""
    import dataclasses

    from imgedit.devices import gpu_bf16_problem

    if getattr(trainer.cfg, "precision", "fp32") != "bf16":
        return
    problem = gpu_bf16_problem(getattr(trainer, "device", "cpu"))
    if problem:
        logger.warning("%s; training in fp32", problem)
        trainer.cfg = dataclasses.replace(trainer.cfg, precision="fp32")


def resumed_config(cfg: Any, saved: dict, command: str) -> tuple[Any, str]:
    """The config a resumed run goes on with, the checkpoint's ``saved`` one
    but for :data:`SESSION_FIELDS`, and the command it records: on the CLI
    the options typed alone (:func:`imgedit.options.typed_command`). Only options typed that
    differ from the run's settings are warned about and noted in the record."""
    given = json.loads(json.dumps(cfg.to_dict()))  # tuples as lists, as the checkpoint has them
    saved = type(cfg).from_dict(saved).to_dict()  # a setting newer than the checkpoint: its default
    resumed = type(cfg).from_dict({**saved, **{k: given[k] for k in SESSION_FIELDS if k in given}})
    command = typed_command(command)
    kept = kept_settings(given, saved, typed_settings(cfg))
    if kept:
        logger.warning("resuming with the checkpoint's settings, not the command line's: %s", kept)
        command = command and f"{command}  (resumed with the checkpoint's {kept})"
    return resumed, command


def check_steps_left(state: dict, steps: int) -> None:
    """Refuse to resume a run that is already past ``steps``. A run at
    ``steps`` exactly trains no more and only exports its weights, as they
    are: the way to get the weights of a run stopped early (said).

    Raises:
        UsageError: the run's step is more than ``steps``.
    """
    done = int(state["step"])
    if done > steps:
        raise UsageError(f"the run is already at step {done}; give a --steps larger than {done} to go on "
                         f"(or --steps {done} to export its weights as they are)")
    if done == steps:
        logger.warning("the run is already at step %d: exporting its weights as they are, without training", done)


def record_session(trainer: Trainer, sources: Sequence, export: Optional[tuple[str, Path]]) -> None:
    """Add this session's data, its terms (``trainer.data_licence``) and the
    model it exports to the run's record, which its checkpoints carry: a
    model card then names the data and terms of every session, not the
    last one's alone."""
    record = provenance(trainer)
    record["data"] = _unique(record.get("data", []) + [str(s) for s in sources])
    licence = getattr(trainer, "data_licence", None)
    if licence:
        record["licences"] = _unique(record.get("licences", []) + [licence])
    if export is not None:
        name, path = export
        record["export"] = {"name": name, "path": str(resolved(Path(path)))}


def provenance(trainer: Trainer) -> dict:
    """The run's record across its sessions: ``run`` (an id it gives itself
    and its model cards: a name another run took over is not its own to
    replace), ``data`` (every source it trained on), ``licences`` (their
    terms, where known) and ``export`` (its model)."""
    if not isinstance(getattr(trainer, "provenance", None), dict):
        trainer.provenance = {}
    trainer.provenance.setdefault("run", os.urandom(8).hex())
    return trainer.provenance


def run_licence(trainer: Trainer, session_licence: str) -> str:
    """The terms a model card states: those of every session's data (a
    resumed run on other images keeps a restriction an earlier session's
    images carry), ``session_licence`` among them."""
    return " ".join(_unique([*provenance(trainer).get("licences", []), session_licence]))


def _unique(items: list) -> list:
    return list(dict.fromkeys(items))


def training_summary(trainer: Trainer, sources: list, images: int, session_seconds: float) -> dict[str, Any]:
    """The ``training`` block of a model card: how the weights were made."""
    import torch

    return {
        "commands": trainer.commands,
        "run": provenance(trainer)["run"],
        "data": _unique(provenance(trainer).get("data", []) + [str(s) for s in sources]),  # every session's
        "images": images,
        "steps": trainer.step,
        "train_config": trainer.cfg.to_dict(),
        "wall_time_s": round(trainer.elapsed, 1),
        "last_session_s": round(session_seconds, 1),
        "device": str(trainer.device),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }


def run_state(trainer: Trainer, kind: str, version: int, parts: dict[str, Any]) -> dict:
    """A trainer's checkpoint: its progress, config, random state, and
    ``state_dict()`` of each of ``parts`` (networks and optimizers)."""
    return {
        "version": version,
        "kind": kind,
        "step": trainer.step,
        "elapsed": trainer.elapsed,
        "config": trainer.cfg.to_dict(),
        **{name: part.state_dict() for name, part in parts.items()},
        "generator": trainer.generator.get_state(),
        "history": json.dumps(trainer.history),
        "commands": json.dumps(trainer.commands),
        "provenance": json.dumps(provenance(trainer)),
    }


def load_run_state(trainer: Trainer, state: dict, parts: dict[str, Any]) -> None:
    """Restore what :func:`run_state` saved."""
    for name, part in parts.items():
        part.load_state_dict(state[name])
    trainer.generator.set_state(state["generator"])
    trainer.step, trainer.elapsed = int(state["step"]), float(state["elapsed"])
    trainer.history = json.loads(state["history"])
    trainer.commands = json.loads(state.get("commands", "[]"))
    trainer.provenance = json.loads(state.get("provenance", "{}"))  # none in checkpoints made before it


class ProgressBar:
    """Training progress to pass as ``fit``'s ``on_progress``: a tqdm bar on a
    terminal, and where stderr is a file or a pipe (a log, ``nohup``) a plain
    line every ``interval`` seconds and at the last step, as the eval verbs
    report theirs (:class:`imgedit.progress.StageProgress`): a bar's redraws would
    be one endless line there. It counts steps (a resumed run starts where it
    stopped) and shows the chosen metrics (``{"loss": ".4f", "val_psnr":
    ".2f"}``): a training metric as its mean over the last
    :attr:`smoothing` steps, since one batch's loss jumps about too much to
    read a trend from; a validation metric (its name starts with ``val``),
    logged only at validation steps, as last measured. Use it as a context
    manager.
    """

    interval = 10.0  # seconds between plain progress lines
    smoothing = 50  # steps a training metric shown is the mean of

    def __init__(self, total: int, shown: dict[str, str], quiet: bool = False):
        self.total, self.shown, self.last = total, shown, {}
        self.recent: dict[str, collections.deque] = {}
        self.enabled = not quiet and distributed.is_main()
        self.bar: Any = None
        self.first: Optional[int] = None  # the first step of this session, and when it ended
        self.started = self.reported = 0.0

    def __call__(self, step: int, metrics: dict) -> None:
        for key, value in metrics.items():
            if key not in self.shown or value is None:
                continue
            if key.startswith("val"):
                self.last[key] = value
            else:
                recent = self.recent.setdefault(key, collections.deque(maxlen=self.smoothing))
                recent.append(float(value))
                self.last[key] = sum(recent) / len(recent)
        if not self.enabled:
            return
        if self.first is None:  # at the first step, not before: nothing shown while the data loads (or fails to)
            self.first, self.started = step, time.monotonic()
            self.reported = self.started
            if redraws_in_place():
                from tqdm import tqdm

                # a resumed run's rate and ETA count only the steps run now
                self.bar = tqdm(total=self.total, initial=step - 1, unit="step", dynamic_ncols=True)
        if self.bar is not None:
            self.bar.set_postfix(self._metrics())
            self.bar.update(1)
        elif time.monotonic() - self.reported >= self.interval or step == self.total:
            self.reported = time.monotonic()
            self._line(step)

    def _metrics(self) -> dict[str, str]:
        return {k: format(self.last[k], f) for k, f in self.shown.items() if k in self.last}

    def _line(self, step: int) -> None:
        parts = [f"step {step}/{self.total} ({math.floor(100 * step / max(self.total, 1))}%)"]
        rate = (step - self.first) / max(self.reported - self.started, 1e-9)  # timed from the first step's end
        if step > self.first:
            parts.append(f"{pace(rate, 'step')}, ETA {duration((self.total - step) / rate)}")  # as the other verbs say it
        parts += [f"{k}={v}" for k, v in self._metrics().items()]
        try:  # a line that cannot be written (stderr gone) must not end the run
            print(", ".join(parts), file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
