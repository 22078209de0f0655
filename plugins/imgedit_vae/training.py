"""The training loop shared by the plugin's models: schedule, steps,
validation, the JSON-lines log, checkpoints (every ``checkpoint_every``
steps, at the end and on Ctrl-C).

A trainer is any object with ``cfg`` (``steps``, ``val_every``,
``checkpoint_every``, ``lr``, ``warmup``, ``min_lr_ratio``), ``step``,
``elapsed``, ``history``, ``train_step() -> metrics``, ``validate() ->
float | None`` and ``state() -> dict``.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from imgedit_vae.checkpoint import save_checkpoint


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def fit(trainer: Any, out_dir: Path, on_progress: Optional[Callable[[int, dict], None]] = None) -> None:
    """Run ``trainer`` until ``trainer.cfg.steps``, logging and checkpointing into ``out_dir``."""
    cfg = trainer.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    log = (out_dir / "log.jsonl").open("a")
    stop_on_term = threading.current_thread() is threading.main_thread()
    if stop_on_term:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while trainer.step < cfg.steps:
            start = time.perf_counter()
            metrics = trainer.train_step()
            trainer.elapsed += time.perf_counter() - start
            if trainer.step % cfg.val_every == 0 or trainer.step == cfg.steps:
                metrics["val_psnr"] = trainer.validate()
                record = {"step": trainer.step, "elapsed": round(trainer.elapsed, 1), **metrics}
                trainer.history.append(record)
                log.write(json.dumps(record) + "\n")
                log.flush()
            if trainer.step % cfg.checkpoint_every == 0 or trainer.step == cfg.steps:
                save_checkpoint(trainer.state(), out_dir / "checkpoint.safetensors")
            if on_progress:
                on_progress(trainer.step, metrics)
    except KeyboardInterrupt:
        save_checkpoint(trainer.state(), out_dir / "checkpoint.safetensors")
        raise
    finally:
        log.close()
        if stop_on_term:
            signal.signal(signal.SIGTERM, previous)


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
