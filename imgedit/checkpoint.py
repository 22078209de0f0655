"""Training checkpoints of any plugin: one self-describing ``.safetensors``
file (weights, optimizers, step, random state, configs), written atomically
and read back without unpickling anything.

The checkpoint dict is flattened: every tensor becomes an entry named by its
path (``model/encoder.stem.weight``, ``optimizer/state/3/exp_avg``) and the
rest of the structure (numbers, strings, lists, dict keys) is stored as JSON
in the file's metadata, with each tensor's place marked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from imgedit.atomic import write_bytes_atomic
from imgedit.errors import UsageError

_TENSOR = "__tensor__"


def _flatten(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().contiguous().cpu()
        return {_TENSOR: path}
    if isinstance(value, dict):
        # keys become strings in JSON; remember which were ints (optimizer state ids)
        return {"__dict__": [[k, isinstance(k, int), _flatten(v, f"{path}/{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    return value


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict) and _TENSOR in value:
        return tensors[value[_TENSOR]]
    if isinstance(value, dict) and "__dict__" in value:
        return {int(k) if is_int else k: _unflatten(v, tensors) for k, is_int, v in value["__dict__"]}
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(_unflatten(v, tensors) for v in value["__tuple__"])
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def save_checkpoint(state: dict, path: Path) -> None:
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, "", tensors)
    write_bytes_atomic(Path(path), save(tensors, metadata={"structure": json.dumps(structure)}))


def load_checkpoint(path: Path, kind: str) -> dict:
    """Load a checkpoint of the given kind ("denoise", "inpaint", "gan": the
    ``kind`` entry its trainer saved).

    Raises:
        UsageError: the file is missing, unreadable or of another kind.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such checkpoint: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if "structure" not in metadata:  # a readable .safetensors without it: weights from export/save_weights
                raise UsageError(f"{path} holds exported model weights, not a training checkpoint: --resume takes "
                                 "the checkpoint.safetensors that training writes in its --out folder")
            structure = json.loads(metadata["structure"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        state = _unflatten(structure, tensors)
    except UsageError:
        raise
    except Exception as exc:  # safetensors and json raise many types for a bad file
        raise UsageError(f"cannot read checkpoint {path}: {(str(exc).splitlines() or [type(exc).__name__])[0]}") from None
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise UsageError(f"{path} is a {got!r} checkpoint, not {kind!r}")
    return state
