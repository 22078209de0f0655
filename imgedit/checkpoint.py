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
from typing import TYPE_CHECKING, Any, Optional

from imgedit.atomic import write_bytes_atomic
from imgedit.errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHECKPOINT_NAME",
    "checkpoint_file",
    "checkpoint_info",
    "is_checkpoint",
    "load_checkpoint",
    "recorded_export",
    "recorded_progress",
    "recorded_weights",
    "save_checkpoint",
]

_TENSOR = "__tensor__"


def _flatten(value: Any, path: str, tensors: dict[str, "torch.Tensor"]) -> Any:
    import torch  # here, not at the top: the catalog reads checkpoints' records without loading torch

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


def _unflatten(value: Any, tensors: dict[str, "torch.Tensor"]) -> Any:
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

    tensors: dict[str, "torch.Tensor"] = {}
    structure = _flatten(state, "", tensors)
    write_bytes_atomic(Path(path), save(tensors, metadata={"structure": json.dumps(structure)}))


CHECKPOINT_NAME = "checkpoint.safetensors"  # what training writes in its --out folder


def checkpoint_file(path: Path) -> Path:
    """The checkpoint ``--resume`` names: the file itself, or a run folder's
    ``checkpoint.safetensors``.

    Raises:
        UsageError: no such file, or a folder without a checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        if (path / CHECKPOINT_NAME).is_file():
            return path / CHECKPOINT_NAME
        raise UsageError(f"{path} is a folder with no {CHECKPOINT_NAME}: --resume takes the checkpoint that training "
                         "writes in its --out folder")
    if not path.is_file():
        raise UsageError(f"no such checkpoint: {path}")
    return path


def load_checkpoint(path: Path, kind: str) -> dict:
    """Load a checkpoint of the given kind ("denoise", "inpaint", "gan": the
    ``kind`` entry its trainer saved); ``path`` may be the run's folder.

    Raises:
        UsageError: the file is missing, unreadable or of another kind.
    """
    return _read(checkpoint_file(path), kind, with_tensors=True)


def checkpoint_info(path: Path, kind: str) -> dict:
    """What :func:`load_checkpoint` returns, without reading the tensors
    (each is None): the step, config and record of a run, read at once
    before a resumed run loads its data."""
    return _read(checkpoint_file(path), kind, with_tensors=False)


def _read(path: Path, kind: str, with_tensors: bool) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if "structure" not in metadata:  # a readable .safetensors without it: weights from export/save_weights
                raise UsageError(f"{path} holds exported model weights, not a training checkpoint: --resume takes "
                                 "the checkpoint.safetensors that training writes in its --out folder")
            structure = json.loads(metadata["structure"])
            names = list(f.keys())
        tensors = _load_tensors(path) if with_tensors else dict.fromkeys(names)
        state = _unflatten(structure, tensors)
    except UsageError:
        raise
    except Exception as exc:  # safetensors and json raise many types for a bad file
        raise UsageError(f"cannot read checkpoint {path}: {(str(exc).splitlines() or [type(exc).__name__])[0]}") from None
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise UsageError(f"{path} is a {got!r} checkpoint, not {kind!r}")
    return state


def _load_tensors(path: Path) -> dict[str, "torch.Tensor"]:
    """The file's tensors in memory of their own. ``get_tensor`` maps them
    from the file, which then stays mapped while they live; Windows refuses
    to replace a mapped file, so a resumed run could not save its next
    checkpoint over the one it started from."""
    from safetensors.torch import load

    return load(path.read_bytes())


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a training checkpoint (given where exported weights are expected)."""
    from imgedit.models import safetensors_metadata

    return "structure" in safetensors_metadata(Path(path))


def recorded_weights(path: Path) -> Optional[Path]:
    """The weights file the run of checkpoint ``path`` exports to, as it
    records it (None where it does not: a checkpoint older than the record)."""
    export = recorded_export(_record(path))
    return export[1] if export else None


def recorded_export(state: dict) -> Optional[tuple[str, Path]]:
    """(name, weights file) of the model a checkpoint's run exports to, as
    its record (``provenance``) says, from ``state`` as read (tensors or not);
    None where it names none, or not as a run writes it: a checkpoint is
    anyone's file, and an odd record must not crash the run that reads it.
    Where that file may be written is for the caller to judge."""
    export = _provenance(state).get("export")
    if not isinstance(export, dict):
        return None
    name, path = export.get("name"), export.get("path")
    if not isinstance(name, str) or not isinstance(path, str) or not path or "\0" in path:  # no file has a NUL
        return None
    return name, Path(path)


def recorded_run(state: dict) -> Optional[str]:
    """The id a checkpoint's run gave itself (its record's ``run``), from
    ``state`` as read; None where it names none (checkpoints made before runs
    were named, or an odd record)."""
    run = _provenance(state).get("run")
    return run if isinstance(run, str) and run else None


def _provenance(state: dict) -> dict:
    """A checkpoint's record of its run (``provenance``), {} where it is
    missing or not a JSON object: a checkpoint is anyone's file."""
    try:
        record = json.loads(state.get("provenance", "{}"))
    except (ValueError, TypeError, AttributeError, RecursionError):
        return {}
    return record if isinstance(record, dict) else {}


def recorded_progress(path: Path) -> Optional[tuple[str, int]]:
    """(kind, step) of checkpoint ``path`` (``("gan", 149)``), read without its
    tensors; None where the file does not say."""
    record = _record(path)
    try:
        return str(record["kind"]), int(record["step"])
    except (KeyError, TypeError, ValueError):
        return None


def _record(path: Path) -> dict:
    """A checkpoint's structure with every tensor None ({} for a file that is not one)."""
    from collections import defaultdict

    from imgedit.models import safetensors_metadata

    try:
        state = _unflatten(json.loads(safetensors_metadata(Path(path))["structure"]), defaultdict(lambda: None))
    except (KeyError, ValueError, AttributeError, TypeError):
        return {}
    return state if isinstance(state, dict) else {}
