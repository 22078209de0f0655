"""Training checkpoints: one self-describing file (weights, optimizer,
step, random state, configs), written atomically and read back without
unpickling code (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from imgedit.atomic import write_bytes_atomic
from imgedit.errors import UsageError


def save_checkpoint(state: dict, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(Path(path), buffer.getvalue())


def load_checkpoint(path: Path, kind: str) -> dict:
    """Load a checkpoint of the given kind ("denoise", "inpaint").

    Raises:
        UsageError: the file is missing, unreadable or of another kind.
    """
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"no such checkpoint: {path}") from None
    except Exception as exc:  # torch raises many types for a bad file
        raise UsageError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise UsageError(f"{path} is a {got!r} checkpoint, not {kind!r}")
    return state
