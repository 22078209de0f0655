"""Load a shipped or user-trained VAE once per (version of its file, device): the card's
``model_config`` builds the network, the sha256 is checked first."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

import torch

from imgedit.catalog import spec_for_file
from imgedit.errors import UsageError, WeightsError
from imgedit.models import LoadedModels, ModelSpec, load_model, load_weights
from imgedit_vae.model import VAEConfig
from imgedit_vae.weight_surgery import gray_from_colour, grow_from
from imgedit_vae.operations import NETWORKS

_models = LoadedModels()


def load_vae(spec: ModelSpec, build: Callable[[VAEConfig], torch.nn.Module], device: Union[str, torch.device]) -> torch.nn.Module:
    """The model of ``spec`` in eval mode on ``device`` (cached).

    Raises:
        WeightsError: missing file or card, sha256 mismatch, weights whose
            card names another network (a GAN's given to the denoiser), or
            weights that do not fit the card's ``model_config``.
    """
    return load_cached(spec, lambda config: build(VAEConfig.from_dict(config)), device, build)


def load_cached(spec: ModelSpec, build: Callable[[dict], torch.nn.Module], device: Union[str, torch.device],
                network: type) -> torch.nn.Module:
    """The model of ``spec``, built by ``build`` from its card's
    ``model_config`` as a ``network``, in eval mode on ``device``: once per
    (file, network, device). Weights whose card names another network are
    refused first, saying what they are ("model 'faces64-gan' is not a
    denoiser: its card says ...") rather than failing on a config key.

    Raises:
        WeightsError: as :func:`imgedit.models.load_model`.
    """
    def load() -> torch.nn.Module:
        architecture = f"{network.__module__}.{network.__name__}"
        model = load_model(spec, build, architecture=architecture, kind=NETWORKS[architecture]).to(device)
        if torch.device(device).type == "cpu":
            # oneDNN's channels-last convolutions: 1.5x faster on a 1600x1200 photo (2 cores)
            model = model.to(memory_format=torch.channels_last)
        return model.eval().requires_grad_(False)

    return _models.get(spec.weights, (network.__name__, str(torch.device(device))), load)


def start_from_weights(model: torch.nn.Module, path: Path) -> str:
    """Start a new training run's ``model`` from trained, verified weights of
    the same kind (possibly narrower: see :func:`imgedit_vae.weight_surgery.grow_from`;
    a grayscale model may start from a colour one: see
    :func:`imgedit_vae.weight_surgery.gray_from_colour`); returns the line the model card records about where the run started.

    Raises:
        UsageError: the file, its card or its sha256 is wrong, or the weights do not fit.
    """
    spec = spec_for_file(path)
    try:
        tensors = load_weights(spec)
        if model.cfg.image_channels == 1 and tensors.get("decoder.head.bias", torch.empty(0)).numel() == 12:
            tensors = gray_from_colour(tensors)
        grow_from(model, tensors)
    except (WeightsError, ValueError) as exc:
        raise UsageError(f"--init {path}: {exc}{_wider_hint(spec, model)}") from None
    card = spec.card()
    trained = card.get("training", {})
    return (f"(started from {path}, sha256 {card.get('sha256', '?')[:12]}, {trained.get('steps', '?')} steps, "
            f"{trained.get('wall_time_s', '?')} s, trained by: {' ; '.join(trained.get('commands', []))})")


def _wider_hint(spec: ModelSpec, model: torch.nn.Module) -> str:
    """What to pass when the weights are wider than ``model`` (a network only grows from them)."""
    widths = (spec.card().get("model_config") or {}).get("widths")
    if not isinstance(widths, list) or len(widths) != len(model.cfg.widths):
        return ""
    if all(theirs <= ours for theirs, ours in zip(widths, model.cfg.widths)):
        return ""
    return (f"; the weights are wider than --widths {','.join(map(str, model.cfg.widths))}: pass --widths "
            f"{','.join(map(str, widths))} (or wider), or leave --widths out to take theirs")

