"""The training loop every plugin's trainer can share: steps, validation,
the JSON-lines log, checkpoints (every ``checkpoint_every`` steps, at the end,
on Ctrl-C and on SIGTERM), the checkpoint state of a run, and a progress bar.

A trainer is any object with ``cfg`` (``steps``, ``val_every``,
``checkpoint_every``; ``to_dict()`` for :func:`run_state`; ``lr``,
``warmup``, ``min_lr_ratio`` for :func:`learning_rate`), ``step``,
``elapsed``, ``history``, ``commands``, ``generator`` (the run's
``torch.Generator``: all its randomness), ``train_step() -> metrics``,
``validate()`` and ``state() -> dict``. ``validate()`` returns a dict of
metrics to log, or a number (logged as ``val_psnr``), or None.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import platform
import re
import shlex
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from imgedit import distributed
from imgedit.atomic import check_writable_folder
from imgedit.checkpoint import load_checkpoint, save_checkpoint
from imgedit.errors import Interrupted, UsageError


logger = logging.getLogger("imgedit")

PRECISIONS = ("fp32", "bf16")
# What a resumed run takes from its command line rather than its checkpoint: where it ends and how it computes.
SESSION_FIELDS = ("steps", "precision")


def kept_settings(given: dict, checkpoint: dict) -> str:
    """The settings a resumed run takes from its checkpoint although its
    command line (defaults included) says otherwise, as ``"lr 0.0005, seed 2"``.
    Both are compared as JSON has them (a checkpoint may hold a tuple where
    the command line's config, through JSON, holds a list)."""
    checkpoint = json.loads(json.dumps(checkpoint))
    return ", ".join(f"{k} {v}" for k, v in checkpoint.items()
                     if k not in SESSION_FIELDS and k in given and given[k] != v)


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


RUN_FILES = ("checkpoint.safetensors", "log.jsonl")
SAMPLE_NAME = re.compile(r"step_\d{6,}\.png")  # samples/step_NNNNNN.png, as the trainers name their sheets


def run_outputs(out_dir: Path) -> list[Path]:
    """The files of an earlier run in ``out_dir`` that a new run writes too:
    its checkpoint, its log and its sample sheets (other files are not ours)."""
    out_dir = Path(out_dir)
    found = [out_dir / name for name in RUN_FILES if (out_dir / name).is_file()]
    samples = out_dir / "samples"
    if samples.is_dir():
        found += sorted(p for p in samples.iterdir() if SAMPLE_NAME.fullmatch(p.name) and p.is_file())
    return found


def check_fresh_run(out_dir: Path, resume: Optional[Path], overwrite: bool, export: Optional[Path] = None) -> None:
    """Refuse a new run (no ``resume``) that would replace an earlier run in
    ``out_dir``, or the model at ``export``, unless ``overwrite``: a fresh
    run would otherwise append to the old log beside the old samples.

    Also refuses, before any training, a run whose model could not be
    written at the end (``IMGEDIT_HOME`` a file, a read-only folder).

    Raises:
        UsageError: what would be replaced, and how to continue or start
            over; or the folder the model goes to cannot be written.
    """
    if export is not None:
        check_writable_folder(Path(export).parent, "the trained model")
    if resume is not None or overwrite:
        return
    if run_outputs(out_dir):
        checkpoint = Path(out_dir) / "checkpoint.safetensors"
        continue_with = checkpoint if checkpoint.is_file() else "<checkpoint>"
        raise UsageError(f"{out_dir} already holds a training run: pass --resume {continue_with} to continue it, "
                         "or --overwrite to start over")
    if export is not None and Path(export).is_file():
        raise UsageError(f"a model already exists at {export}: pass --overwrite to replace it, --resume <checkpoint> "
                         "to continue its run, or give another --export path")


def _remove_run_outputs(out_dir: Path) -> None:
    for path in run_outputs(out_dir):
        path.unlink()


def fit(trainer: Any, out_dir: Path, on_progress: Optional[Callable[[int, dict], None]] = None) -> None:
    """Run ``trainer`` until ``trainer.cfg.steps``, logging and checkpointing
    into ``out_dir``. Under torchrun every process steps, rank 0 alone
    validates, logs and checkpoints (:mod:`imgedit.distributed`)."""
    cfg = trainer.cfg
    main = distributed.is_main()
    if str(getattr(trainer, "device", "")).startswith("cuda"):
        import torch

        torch.backends.cudnn.benchmark = True  # every batch has one shape: time cuDNN's kernels once, use the fastest
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    log = (out_dir / "log.jsonl").open("a") if main else None
    stop_on_term = threading.current_thread() is threading.main_thread()
    if stop_on_term:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while trainer.step < cfg.steps:
            start = time.perf_counter()
            metrics = distributed.average(trainer.train_step())
            trainer.elapsed += time.perf_counter() - start
            if not main:
                continue
            if trainer.step % cfg.val_every == 0 or trainer.step == cfg.steps:
                result = trainer.validate()
                metrics.update(result if isinstance(result, dict) else {"val_psnr": result})
                record = {"step": trainer.step, "elapsed": round(trainer.elapsed, 1), **metrics}
                trainer.history.append(record)
                log.write(json.dumps(record) + "\n")
                log.flush()
            if trainer.step % cfg.checkpoint_every == 0 or trainer.step == cfg.steps:
                save_checkpoint(trainer.state(), out_dir / "checkpoint.safetensors")
            if on_progress:
                on_progress(trainer.step, metrics)
    except KeyboardInterrupt:
        if not main:
            raise
        checkpoint = out_dir / "checkpoint.safetensors"
        save_checkpoint(trainer.state(), checkpoint)
        raise Interrupted(f"interrupted at step {trainer.step} of {cfg.steps}; the checkpoint is saved: "
                          f"add --resume {shlex.quote(str(checkpoint))} to go on") from None
    finally:
        if log is not None:
            log.close()
        if stop_on_term:
            signal.signal(signal.SIGTERM, previous)


def train_or_resume(build: Callable[[Any], Any], cfg: Any, kind: str, out_dir: Path, resume: Optional[Path] = None,
                    on_progress: Optional[Callable[[int, dict], None]] = None, command: str = "",
                    overwrite: bool = False) -> Any:
    """What every plugin's ``train`` function does around its trainer.

    Args:
        build: ``build(cfg) -> trainer`` (loads the data, makes the networks).
        cfg: the run's config; when resuming, the checkpoint's config is used
            instead (``type(cfg).from_dict``), except :data:`SESSION_FIELDS`.
        kind: the checkpoint kind (``"denoise"``, ``"gan"``): a checkpoint of
            another kind is refused.
        out_dir: folder for ``checkpoint.safetensors`` and ``log.jsonl``.
        resume: checkpoint to continue from, exactly where it stopped.
        on_progress: called after each step with (step, metrics).
        command: the command line, recorded in checkpoints and the model card.
        overwrite: a new run may replace an earlier run's checkpoint, log and
            samples in ``out_dir`` (removed once the data has loaded).

    Returns:
        The trainer, trained until ``cfg.steps``.

    Raises:
        UsageError: the checkpoint is missing, unreadable or of another kind;
            a new run into a folder with an earlier run, without ``overwrite``.
    """
    check_fresh_run(out_dir, resume, overwrite)
    state = None
    if resume is not None:
        state = load_checkpoint(resume, kind=kind)
        given = json.loads(json.dumps(cfg.to_dict()))  # tuples as lists, as the checkpoint has them
        saved = type(cfg).from_dict(state["config"]).to_dict()  # a setting newer than the checkpoint: its default
        cfg = type(cfg).from_dict({**saved, **{k: given[k] for k in SESSION_FIELDS if k in given}})
        kept = kept_settings(given, saved)
        if kept:
            logger.warning("resuming with the checkpoint's settings, not the command line's: %s", kept)
            command = command and f"{command}  (resumed with the checkpoint's {kept})"
    distributed.check_batch(cfg.batch)
    trainer = build(cfg)
    if state is not None:
        trainer.load_state(state)
    elif overwrite and distributed.is_main():
        _remove_run_outputs(Path(out_dir))  # only now that the data has loaded: a failed start loses nothing
    if command:
        trainer.commands.append(command)
    fit(trainer, Path(out_dir), on_progress)
    distributed.stop()
    if not distributed.is_main():
        raise distributed.WorkerDone()  # rank 0 alone exports the weights and reports
    return trainer


def training_summary(trainer: Any, sources: list, images: int, session_seconds: float) -> dict[str, Any]:
    """The ``training`` block of a model card: how the weights were made."""
    import torch

    return {
        "commands": trainer.commands,
        "data": [str(s) for s in sources],
        "images": images,
        "steps": trainer.step,
        "train_config": trainer.cfg.to_dict(),
        "wall_time_s": round(trainer.elapsed, 1),
        "last_session_s": round(session_seconds, 1),
        "device": str(trainer.device),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_state(trainer: Any, kind: str, version: int, parts: dict[str, Any]) -> dict:
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
    }


def load_run_state(trainer: Any, state: dict, parts: dict[str, Any]) -> None:
    """Restore what :func:`run_state` saved."""
    for name, part in parts.items():
        part.load_state_dict(state[name])
    trainer.generator.set_state(state["generator"])
    trainer.step, trainer.elapsed = int(state["step"]), float(state["elapsed"])
    trainer.history = json.loads(state["history"])
    trainer.commands = json.loads(state.get("commands", "[]"))


class ProgressBar:
    """A tqdm bar to pass as ``fit``'s ``on_progress``: it counts steps (a
    resumed run starts where it stopped) and shows the latest value of the
    chosen metrics (``{"loss": ".4f", "val_psnr": ".2f"}``); a metric logged
    only at validation steps keeps its last value. Use it as a context manager.
    """

    def __init__(self, total: int, shown: dict[str, str], quiet: bool = False):
        self.total, self.shown, self.last = total, shown, {}
        self.enabled = not quiet and distributed.is_main()
        self.bar: Any = None

    def __call__(self, step: int, metrics: dict) -> None:
        if self.bar is None:
            from tqdm import tqdm

            # Made at the first step, not before: no empty bar while the data loads (or when
            # loading fails), and a resumed run's rate and ETA count only the steps run now.
            self.bar = tqdm(total=self.total, initial=step - 1, disable=not self.enabled, unit="step", dynamic_ncols=True)
        self.last.update({k: v for k, v in metrics.items() if k in self.shown and v is not None})
        self.bar.set_postfix({k: format(self.last[k], f) for k, f in self.shown.items() if k in self.last})
        self.bar.update(1)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
