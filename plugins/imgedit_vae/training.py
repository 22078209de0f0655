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
