"""Turn a training run into shipped weights: a ``.safetensors`` file and its
JSON model card (config, data, command, steps, wall time, validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from imgedit.models import user_weights_dir
from imgedit.training import export_weights, training_summary
from imgedit_vae.model import count_parameters


def default_export_path(name: str) -> Path:
    return user_weights_dir() / "imgedit_vae" / f"{name}.safetensors"


def export_model(trainer: Any, path: Path, *, name: str, description: str, sources: list, session_seconds: float,
                 storage: torch.dtype = torch.float32) -> None:
    """Write the model's weights (stored as ``storage``; loading casts them back to float32) and its card."""
    model = trainer.model
    card: dict[str, Any] = {
        "name": name,
        "description": description,
        "architecture": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_config": trainer.cfg.model.to_dict(),
        "parameters": count_parameters(model),
        "storage_dtype": str(storage).replace("torch.", ""),
        "training": {
            **training_summary(trainer, sources, len(trainer.train_pool), session_seconds),
            "validation": trainer.history[-1] if trainer.history else None,
        },
        # The weights inherit the terms of their training images: name them.
        "data_licence": "the licences of the training images listed under training.data apply",
    }
    tensors = {k: v.to(storage) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    export_weights(tensors, Path(path), card, trainer.step)
