"""Model weights: where they live, how they are verified and loaded.

Shipped weights are ``weights/<plugin>/<name>.safetensors`` with a model card
``<name>.json`` beside them (architecture, config, data and licence, training
command, metrics, sha256). Weights a user trains go to the user weights
directory and are found there automatically. Nothing is ever unpickled:
tensors load through safetensors, and the sha256 in the card must match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from imgedit.atomic import write_bytes_atomic
from imgedit.errors import UsageError, WeightsError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "LoadedModels",
    "ModelSpec",
    "check_architecture",
    "describe",
    "is_safetensors_file",
    "load_model",
    "load_weights",
    "record_metrics",
    "safetensors_metadata",
    "save_weights",
    "sha256_file",
    "shipped_weights_dir",
    "user_models",
    "user_weights_dir",
    "verify",
]


def _installed_weights_dir(beside: Path = Path(__file__).resolve().parent.parent) -> Path:
    """The shipped weights: the ``imgedit_weights`` data package a wheel
    installs beside the ``imgedit`` package (``beside``: the folder holding
    it), else the top-level ``weights/`` folder of the checkout it is
    (installed editable, or not at all); else wherever the installer maps
    ``imgedit_weights``.

    Found beside the package, not by importing: ``imgedit_weights`` is a
    namespace package (data, no code), of which any folder of that name on
    the path is a part (one in the current folder: every model failed).
    In a checkout (``beside`` holds ``weights/imgedit_vae``), ``weights/``
    comes first: a folder of a user's named ``imgedit_weights`` at its top,
    the folder commands are run from, hid it the same way; a project's own
    ``weights/`` beside a ``pip install --target`` does not count."""
    import importlib.util

    checkout = (beside / "weights" / "imgedit_vae").is_dir()
    names = ("weights", "imgedit_weights") if checkout else ("imgedit_weights", "weights")
    for folder in (beside / name for name in names):
        if folder.is_dir():
            return folder
    spec = importlib.util.find_spec("imgedit_weights")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location).is_dir() and next(Path(location).glob("*/*.safetensors"), None):  # an editable install
            return Path(location)  # also lists its path hook
    return beside / "weights"


WEIGHTS_DIR = _installed_weights_dir()
# A card is KBs (a long --holdout list of file names, a few MB): a bigger file
# is no card, and is neither read into memory whole nor parsed.
CARD_MAX_BYTES = 16 << 20

logger = logging.getLogger("imgedit")


@dataclass(frozen=True)
class ModelSpec:
    """A model's weights file and its card.

    Attributes:
        name: unique model name ("denoise-vae").
        weights: path of the ``.safetensors`` file.
        description: one line for listings.
        plugin: filled in by the host: who registered it.
        extra: free-form plugin data (architecture name, ...).
    """

    name: str
    weights: Path
    description: str = ""
    plugin: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def card_path(self) -> Path:
        return self.weights.with_suffix(".json")

    def card(self) -> dict[str, Any]:
        """The model card, or {} when there is none or it is unreadable."""
        return self.read_card()[0]

    def read_card(self) -> tuple[dict[str, Any], str]:
        """(card, problem): the card's JSON object and "", or {} and why the
        card there cannot be used ("" too where there is no card at all)."""
        path = self.card_path
        try:
            with open(path, "rb") as fh:
                data = fh.read(CARD_MAX_BYTES + 1)
        except FileNotFoundError:
            return {}, ""
        except OSError as exc:  # a folder of that name, no permission
            return {}, f"model card {path} cannot be read ({exc.strerror or type(exc).__name__})"
        if len(data) > CARD_MAX_BYTES:
            return {}, f"model card {path} is larger than {CARD_MAX_BYTES >> 20} MB: not a model card"
        try:
            card = json.loads(data)
        except RecursionError:  # '[' * 200000: the parser's recursion, not the program's, must end here
            return {}, f"model card {path} is nested too deeply to read"
        except ValueError as exc:  # bad JSON, or bytes that are no text
            return {}, f"model card {path} is not valid JSON ({str(exc).splitlines()[0]})"
        if not isinstance(card, dict):  # every reader does card.get(...)
            return {}, f"model card {path} is not a JSON object (it holds a {type(card).__name__})"
        return card, ""


def shipped_weights_dir() -> Path:
    """Folder of the weights shipped with imgedit (``IMGEDIT_WEIGHTS`` overrides)."""
    return Path(os.environ.get("IMGEDIT_WEIGHTS", WEIGHTS_DIR)).expanduser()  # "~/w" as a .env file writes it


def in_site_packages(path: Path) -> bool:
    """Whether ``path`` lies in a folder installed packages live in
    (site-packages): a file an installer owns and will replace."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths().get(k) for k in ("purelib", "platlib")} | set(site.getsitepackages())
    roots.add(site.getusersitepackages())
    resolved = path.resolve()
    return any(resolved.is_relative_to(Path(root).resolve()) for root in roots if root)


def user_weights_dir() -> Path:
    """Folder for weights the user trains (``IMGEDIT_HOME``/weights, else the
    XDG data folder).

    Raises:
        UsageError: no such folder can be named: no home folder (``docker run
            --user 12345``: no HOME, and no account entry) and neither variable set.
    """
    home = os.environ.get("IMGEDIT_HOME")
    if home:
        return Path(home).expanduser() / "weights"
    data = os.environ.get("XDG_DATA_HOME", "")
    if os.path.isabs(data):  # the XDG spec: a relative path is to be ignored
        return Path(data) / "imgedit" / "weights"
    try:
        return Path.home() / ".local" / "share" / "imgedit" / "weights"
    except RuntimeError:  # Path.home(): "Could not determine home directory"
        raise UsageError("there is no home folder to keep trained weights in (HOME is unset and this user has no "
                         "account entry): set IMGEDIT_HOME") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_safetensors_file(path: Path) -> bool:
    """Whether ``path`` begins as a safetensors file does: its header's length
    (8 bytes, little-endian) and then the header's JSON. A cheap look at 9
    bytes, to tell a photo given as weights from a model (an unreadable file
    passes: loading it says why)."""
    try:
        with open(path, "rb") as fh:
            head, size = fh.read(9), os.fstat(fh.fileno()).st_size
    except OSError:
        return True
    return len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


SAFETENSORS_HEADER_MAX = 16 << 20  # the metadata of a checkpoint of ours is KBs (the format allows 100 MB)


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (no torch, no
    tensors read); empty for a file that is not one or cannot be read."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            # not a header: a photo's bytes, or a length the file does not hold (never allocated);
            # nor one larger than ours can be, whose parsing could take GBs of memory
            if size > min(SAFETENSORS_HEADER_MAX, os.fstat(fh.fileno()).st_size - 8):
                return {}
            header = json.loads(fh.read(size))
    except (OSError, ValueError, RecursionError):  # RecursionError: a header nested too deeply
        return {}
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        return {}
    return {key: value for key, value in metadata.items() if isinstance(value, str)}  # the format's str -> str


def verify(spec: ModelSpec, actual: Optional[str] = None) -> tuple[bool, str]:
    """Check a model's file against its card. Returns (ok, reason).

    Args:
        actual: the file's sha256 if the caller has it already.
    """
    if not spec.weights.is_file():
        return False, f"missing file {spec.weights}"
    if not spec.card_path.is_file():  # weights copied without their card, most often
        return False, f"{spec.card_path}: model card not found beside {spec.weights.name} (copy it with the weights)"
    card, problem = spec.read_card()
    if problem:
        return False, problem
    expected = card.get("sha256")
    if not expected:
        return False, f"no sha256 in model card {spec.card_path}"
    if not isinstance(expected, str):
        return False, f"the sha256 in model card {spec.card_path} is not a string"
    actual = actual or sha256_file(spec.weights)
    if actual != expected:
        return False, f"sha256 mismatch for {spec.weights}: card says {expected[:12]}..., file is {actual[:12]}..."
    return True, "ok"


def load_weights(spec: ModelSpec, device: "Optional[torch.device]" = None) -> "dict[str, torch.Tensor]":
    """Verify and load a model's tensors (no unpickling).

    Raises:
        WeightsError: missing file, missing card or sha256 mismatch.
    """
    ok, reason = verify(spec)
    if not ok:
        raise WeightsError(f"model '{spec.name}': {reason}")
    from safetensors.torch import load_file

    return load_file(str(spec.weights), device=str(device or "cpu"))


def check_architecture(spec: ModelSpec, architecture: str, kind: str) -> None:
    """Refuse weights whose card names another network than ``architecture``
    (``module.Class``, as cards record it), saying what the card says they are;
    otherwise they would fail later on a config key the network does not know.
    A card that names no architecture passes (the weights may still fit).

    Raises:
        WeightsError: e.g. "model 'mosaic' is not a GAN generator: its card says imgedit_style.model.StyleNet (...)".
    """
    card = spec.card()
    theirs = card.get("architecture")
    if theirs and theirs != architecture:
        about = f" ({card['description']})" if card.get("description") else ""
        raise WeightsError(f"model '{spec.name}' is not {kind}: its card says {theirs}{about}")


def load_model(spec: ModelSpec, build: "Callable[[dict], torch.nn.Module]", train_verb: str = "",
               architecture: str = "", kind: str = "") -> "torch.nn.Module":
    """Build a network from its card's ``model_config`` and load its verified
    weights into it (stored fp16 tensors are cast to the network's dtypes).

    Args:
        build: ``build(model_config) -> nn.Module``.
        train_verb: the command that trains such weights (``imgedit train
            gan``), for the message when the file is missing.
        architecture: the network's ``module.Class``: weights whose card names
            another are refused first (see :func:`check_architecture`).
        kind: what such weights are, for that message (``"a GAN generator"``).

    Raises:
        WeightsError: missing file (saying how to train it) or card, sha256
            mismatch, another architecture, no ``model_config``, or weights
            that do not fit the network built (e.g. another model's weights).
    """
    if train_verb and not spec.weights.is_file():
        raise WeightsError(f"model '{spec.name}' has no weights yet (expected {spec.weights}); train them with "
                           f"'{train_verb} --data DIR --export {spec.weights}' or pick another with --model")
    if architecture:
        check_architecture(spec, architecture, kind or f"a {architecture}")
    tensors = load_weights(spec)  # checks the file and its sha256 first
    config = spec.card().get("model_config")
    if not config:
        raise WeightsError(f"model '{spec.name}': its card {spec.card_path} has no model_config")
    try:
        with _keeping_rng_state():  # the random init is overwritten by the weights: the caller's seed stays as it was
            model = build(config)
        model.load_state_dict(tensors)
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise WeightsError(f"model '{spec.name}': weights do not fit this model: {str(exc).splitlines()[0]}") from None
    return model


def _keeping_rng_state():
    """Restore torch's CPU random state afterwards, and the default
    device's where modules are built on a GPU by default (the plugins
    build on the CPU: forking every GPU's state would only cost time)."""
    import torch

    device = torch.get_default_device()
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    index = device.index if device.index is not None else torch.get_device_module(device.type).current_device()
    return torch.random.fork_rng(devices=[index], device_type=device.type)


def save_weights(tensors: "dict[str, torch.Tensor]", path: Path, card: dict[str, Any]) -> ModelSpec:
    """Write ``path`` (.safetensors) and its card atomically; the card gets the
    file's sha256 and size. Returns the new model's spec (named after the file)."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})  # a few MB: in memory, then atomic
    card = {**card, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
    write_bytes_atomic(path.with_suffix(".json"), (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    write_bytes_atomic(path, data)
    return ModelSpec(name=path.stem, weights=path, description=card.get("description", ""))


def record_metrics(spec: ModelSpec, key: str, report: dict[str, Any]) -> None:
    """Write ``report`` into the ``metrics`` block of ``spec``'s card under
    ``key`` (atomically; the weights and their sha256 are untouched).

    Raises:
        WeightsError: the card there is unreadable (rewriting it would lose it).
    """
    card, problem = spec.read_card()
    if problem:
        raise WeightsError(f"model '{spec.name}': {problem}")
    card.setdefault("metrics", {})[key] = report
    write_bytes_atomic(spec.card_path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())


def user_models() -> list[ModelSpec]:
    """Models found in the user weights directory (trained by the user)."""
    try:
        root = user_weights_dir()
    except UsageError:  # no home folder: nothing trained can be kept, and editing needs none
        return []
    if not root.is_dir():
        return []
    specs = []
    try:
        paths = sorted(root.rglob("*.safetensors"))
    except OSError as exc:  # a folder that cannot be walked: the shipped models and every verb go on
        logger.warning("%s: user models left out: %s", root, exc)
        return []
    for path in paths:
        # read while the registry is built, for every verb: one bad model must cost only itself
        try:
            card = ModelSpec(path.stem, path).card()  # unreadable: {}, and listed as not verifying, saying why
            description = card.get("description")
            specs.append(ModelSpec(path.stem, path, description if isinstance(description, str) else "",
                                   plugin="user", extra=card))
        except Exception as exc:  # noqa: BLE001 -- whatever it is, the other models and every verb go on
            logger.warning("%s: left out of the user models: %s: %s", path, type(exc).__name__, exc)
    return specs


def user_models_to_remove(names: Iterable[str]) -> list[ModelSpec]:
    """The user's models that ``imgedit models remove NAMES`` deletes, each
    named by its name or its weights file.

    Raises:
        UsageError: a name that is a shipped model's, that no model of the
            user's has (with the names they have), or that two of them share.
    """
    from imgedit.registry import get_registry

    mine = user_models()
    doomed: list[ModelSpec] = []
    for name in names:
        given = Path(name).expanduser()
        file = given.resolve() if name.endswith(".safetensors") and given.exists() else None
        found = [spec for spec in mine if spec.name == name or file is not None and spec.weights.resolve() == file]
        if not found:
            shipped = get_registry().models.get(name)
            if shipped is not None and shipped.plugin != "user":
                raise UsageError(f"{name} is a shipped model ({shipped.weights}): only models you trained can be removed")
            known = sorted({spec.name for spec in mine})
            raise UsageError(f"no model of yours is named {name}{did_you_mean(name, known)} "
                             f"(yours: {', '.join(known) or 'none'})")
        if len(found) > 1:
            raise UsageError(f"{len(found)} of your models are named {name}: give the file of the one to remove "
                             f"({', '.join(str(spec.weights) for spec in found)})")
        if found[0] not in doomed:
            doomed.append(found[0])
    return doomed


def describe(spec: ModelSpec) -> dict[str, Any]:
    """One row of ``imgedit models``."""
    exists = spec.weights.is_file()
    digest = sha256_file(spec.weights) if exists else None
    ok, reason = verify(spec, digest)
    return {
        "name": spec.name,
        "plugin": spec.plugin,
        "weights": str(spec.weights),
        "size_bytes": spec.weights.stat().st_size if exists else None,
        "sha256": digest,
        "verified": ok,
        "status": reason,
        "description": spec.description,
    }


class LoadedModels:
    """Models loaded from weights files, kept for the next call: a batch or
    a service loads each once. Kept per version of the file (its path as
    resolved, size, modification time and inode), so weights replaced at the
    same path are loaded again rather than served stale, and at most
    ``keep`` of them, the least recently used dropped first, so a service
    naming many files does not hold them all. Thread-safe.

        >>> models = LoadedModels()
        >>> net = models.get(spec.weights, ("cpu",), lambda: load_model(spec, build))  # doctest: +SKIP
    """

    def __init__(self, keep: int = 8):
        self.keep = keep
        self._models: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, weights: Path, extra: tuple, load: Callable[[], Any]) -> Any:
        """The model ``load()`` makes of ``weights``, loaded once per version
        of the file and ``extra`` (a device, a network class); ``load``'s
        errors (a missing file, a checksum that fails) pass through."""
        path = os.path.realpath(weights)
        try:
            info = os.stat(path)
            version: tuple = (path, info.st_size, info.st_mtime_ns, info.st_ino)
        except OSError:
            version = (path,)  # load() says what is wrong
        key = (*version, *extra)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = load()
            self._models[key] = model
            while len(self._models) > self.keep:
                self._models.popitem(last=False)
            return model

    def clear(self) -> None:
        """Forget every model kept (their memory is freed once no caller holds them)."""
        with self._lock:
            self._models.clear()
