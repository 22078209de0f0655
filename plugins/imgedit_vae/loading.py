"""Load a shipped or user-trained VAE once per (file, device): the card's
``model_config`` builds the network, the sha256 is checked first."""

from __future__ import annotations

import threading
from typing import Callable, Union

import torch

from imgedit.errors import WeightsError
from imgedit.models import ModelSpec, load_weights
from imgedit_vae.model import VAEConfig

_cache: dict[tuple, torch.nn.Module] = {}
_lock = threading.Lock()


def load_vae(spec: ModelSpec, build: Callable[[VAEConfig], torch.nn.Module], device: Union[str, torch.device]) -> torch.nn.Module:
    """The model of ``spec`` in eval mode on ``device`` (cached).

    Raises:
        WeightsError: missing file or card, sha256 mismatch, or weights that
            do not fit the card's ``model_config`` (e.g. a denoiser's
            weights given to the inpainter).
    """
    key = (str(spec.weights.resolve()), build.__name__, str(torch.device(device)))
    with _lock:
        if key not in _cache:
            tensors = load_weights(spec)  # checks the file and its sha256 first
            config = spec.card().get("model_config")
            if not config:
                raise WeightsError(f"model '{spec.name}': its card {spec.card_path} has no model_config")
            try:
                model = build(VAEConfig.from_dict(config))
                model.load_state_dict(tensors)
            except (RuntimeError, ValueError) as exc:
                raise WeightsError(f"model '{spec.name}': weights do not fit this model: {str(exc).splitlines()[0]}") from None
            _cache[key] = model.to(device).eval().requires_grad_(False)
        return _cache[key]
