"""Turn a training run into shipped weights: a ``.safetensors`` file and its
JSON model card (config, data, command, steps, wall time, validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgedit.models import user_weights_dir
from imgedit.training import export_model, training_summary


def default_export_path(name: str) -> Path:
    return user_weights_dir() / "imgedit_vae" / f"{name}.safetensors"


def export_vae(trainer: Any, path: Path, *, name: str, description: str, sources: list, session_seconds: float,
               storage: str = "float32") -> None:
    """Write the model's weights (stored as ``storage``; loading casts them back to float32) and its card."""
    export_model(
        trainer.model, path, name=name, description=description, config=trainer.cfg.model.to_dict(),
        step=trainer.step, storage=storage,
        training={
            **training_summary(trainer, sources, len(trainer.train_pool), session_seconds),
            "validation": trainer.history[-1] if trainer.history else None,
        },
        # The weights inherit the terms of their training images: name them.
        data_licence="the licences of the training images listed under training.data apply",
    )
