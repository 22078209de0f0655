"""A plugin's family of latent models: the one it ships and every one the
user trained with its ``train`` verb, told apart from other plugins' user
weights by the ``architecture`` in their cards.

Cheap to import (no torch): catalogs are read while the registry is built
for ``imgedit --help``; the loader is imported only when a model is used.

    >>> CATALOG = LatentCatalog("imgedit_gan", "faces64-gan", "imgedit_gan.model.Generator",
    ...                         "64x64 face GAN", loader="imgedit_gan.sampler:load_gan")
    >>> CATALOG.latent_specs()        # for the register_latent_models hook
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Collection, Optional, Union

from imgedit.atomic import check_name_lengths, name_windows_refuses
from imgedit.checkpoint import is_checkpoint, recorded_progress, recorded_weights
from imgedit.errors import UsageError, did_you_mean  # did_you_mean: still part of this module's API
from imgedit.latents import LatentModelSpec
from imgedit.models import ModelSpec, is_safetensors_file, shipped_weights_dir, user_models, user_weights_dir
from imgedit.shell import quote_arg

__all__ = [
    "LatentCatalog",
    "UserLatentModelSpec",
    "check_model_name",
    "did_you_mean",
    "is_file_argument",
    "shipped_model_names",
    "spec_for_file",
    "weights_spec",
]


def spec_for_file(path: Union[str, Path]) -> ModelSpec:
    """A ``.safetensors`` file given on the command line instead of a name
    (``--model``, ``--weights``, ``--init``, ``--style``). A missing file is
    reported when the model loads.

    Raises:
        UsageError: the file is not a safetensors file (a photo, say): its
            card would otherwise be reported missing, which misleads; or it
            is a training checkpoint (the message names its run's weights);
            or one of its names is longer than a file name can be; or its
            card is there but unreadable (not a JSON object, nested too
            deeply, too large): read as no card, it would be reported
            missing or, worse, pass an architecture check it cannot answer.
    """
    check_name_lengths(path, "model file")  # before the stat below, which such a name fails
    path = Path(path).expanduser()
    if path.is_file() and not is_safetensors_file(path):
        raise UsageError(f"{path} is not a .safetensors model file")
    if path.is_file() and is_checkpoint(path):
        raise UsageError(_checkpoint_given_as_weights(path))
    spec = ModelSpec(path.stem, path, plugin="user")
    problem = spec.read_card()[1]
    if problem:
        raise UsageError(problem)
    return spec


def _checkpoint_given_as_weights(path: Path) -> str:
    """What to say of a training checkpoint given where model weights go:
    the weights its run exported, or (none yet: a run stopped before its
    last step) how to export them."""
    said = f"{path} is a training checkpoint (for 'imgedit train ... --resume'), not model weights"
    try:
        weights, progress = recorded_weights(path), recorded_progress(path)
    except (RecursionError, TypeError, KeyError, ValueError, AttributeError):  # a record nested too deeply, or of odd
        weights, progress = None, None  # types: said as of a record that names nothing, not as a crash
    if weights is None:
        return f"{said}: use the file named after 'weights:' when its training ended, the weights its run exported"
    if weights.is_file():
        return f"{said}: use {weights}, the weights its run exported"
    if progress is None:
        return f"{said}, and its run has exported no weights yet (to {weights}): resume it to the end with --resume"
    kind, step = progress
    resume = f"imgedit train {kind} --data DATA --resume {quote_arg(str(path))}"
    return (f"{said}, and its run has exported no weights yet (it stopped at step {step}): '{resume} --steps {step}' "
            f"exports them as they are, a larger --steps trains on first")


def check_model_name(name: str, shipped: Collection[str] = (), what: str = "model", said: str = "") -> None:
    """Refuse, before any training, a name a model could not have in the
    weights folder, where it is found by name: the model is written as
    ``<folder>/<name>.safetensors``, so a path separator or a leading dot
    would put it elsewhere or hide it, a ``.safetensors`` ending makes
    ``x.safetensors.safetensors`` (and the name then reads as a file), on
    Windows a name it cannot have (``v1:final``, ``con``) would fail only at
    the export, and a shipped model's name is taken, in any case (the shipped
    one would hide it).

    Args:
        shipped: the names of the shipped models of this kind.
        what: what the model is, for the message ("style").
        said: how the name came (default ``--name NAME``).

    Raises:
        UsageError: the name, what is wrong with it and what to do instead.
    """
    said = said or f"--name {name}"
    if not name.strip():
        raise UsageError(f"--name is empty: give the {what} a name")
    if "/" in name or "\\" in name:  # either separator: a name must mean the same file on every system
        raise UsageError(f"{said}: a name cannot hold '/' or '\\' (the {what} goes into your weights folder; "
                         "--export PATH writes it elsewhere)")
    if name.startswith("."):  # '..', '.hidden'
        raise UsageError(f"{said}: a name cannot begin with '.'")
    if name.lower().endswith(".safetensors"):
        raise UsageError(f"{said}: give the name without .safetensors (--name {name[: -len('.safetensors')]}); "
                         "--export PATH names the file")
    problem = name_windows_refuses(name)
    if problem:  # else it fails only at the export, after the training
        raise UsageError(f"{said}: {problem}")
    taken = next((other for other in shipped if other.casefold() == name.casefold()), None)
    if taken == name:
        raise UsageError(f"{said} is a shipped model's name: choose another --name (or --export into the shipped "
                         "weights folder)")
    if taken is not None:  # two names for one file where names ignore case (macOS, Windows), and confusing anywhere
        raise UsageError(f"{said} differs from the shipped model {taken} only in case: choose another --name")


def shipped_model_names() -> set[str]:
    """Every plugin's shipped models' names. A model trained under one of them
    would be hidden wherever models are found by name (``sample --model
    faces64-vae`` takes the shipped VAE over a GAN of that name), so no train
    verb takes one, whichever plugin shipped it."""
    from imgedit.registry import get_registry

    return {name for name, spec in get_registry().models.items() if spec.plugin != "user"}




def is_file_argument(model: str) -> bool:
    """Whether ``--model`` names a weights file rather than a registered model."""
    return model.endswith(".safetensors") or Path(model).expanduser().is_file()


def weights_spec(model: str) -> Optional[ModelSpec]:
    """The weights and card behind ``--model`` (a file or a registered name);
    None for a name with no weights registered (a latent model without a card)."""
    from imgedit.registry import get_registry

    return spec_for_file(model) if is_file_argument(model) else get_registry().models.get(model)


@dataclass(frozen=True)
class UserLatentModelSpec(LatentModelSpec):
    """A latent model from a file in the user weights folder. The registry
    gives its name to any plugin's shipped model of that name, whichever
    plugin registers first: older versions let ``train gan --name
    faces64-vae`` write one, which must not take the shipped VAE's place.

    Attributes:
        weights: the file, to pass as ``--model`` instead of the name.
    """

    weights: Optional[Path] = None


@dataclass(frozen=True)
class LatentCatalog:
    """Attributes:
        folder: the plugin's folder under the shipped and user weights folders.
        name: the shipped model's name.
        architecture: ``module.Class`` of the network, as the cards record it.
        description: the shipped model's one-line description.
        loader: ``"module:function"``; ``function(spec, device)`` returns a latent model.
    """

    folder: str
    name: str
    architecture: str
    description: str
    loader: str

    def shipped_spec(self) -> ModelSpec:
        return ModelSpec(self.name, shipped_weights_dir() / self.folder / f"{self.name}.safetensors", self.description)

    def user_specs(self) -> list[ModelSpec]:
        """Models the user trained with this plugin (other plugins' user weights are left alone)."""
        return [spec for spec in user_models() if spec.extra.get("architecture") == self.architecture]

    def default_export_path(self, name: str) -> Path:
        return user_weights_dir() / self.folder / f"{name}.safetensors"

    def export_target(self, name: Optional[str], export_path: Optional[Path], fallback: str) -> tuple[str, Path]:
        """(name, file) of a model being trained: ``--name`` and ``--export``
        agree (a model is named after its file); without ``--export`` it goes
        to the user weights folder, where it is found by name.

        Raises:
            UsageError: a name no model can have (:func:`check_model_name`;
                the shipped model's, unless ``--export`` says where), or
                ``--name`` differs from the ``--export`` file's name.
        """
        if name is not None:
            check_model_name(name, shipped=shipped_model_names() if export_path is None else ())
        if export_path is not None and name and name != export_path.stem:
            raise UsageError(f"--name {name} differs from the --export file's name {export_path.stem}: "
                             "a model is named after its file")
        name = name or (export_path.stem if export_path is not None else fallback)
        return name, export_path or self.default_export_path(name)

    def load(self, spec: ModelSpec, device: Any) -> Any:
        module, function = self.loader.split(":")
        return getattr(importlib.import_module(module), function)(spec, device)

    def latent_specs(self) -> list[LatentModelSpec]:
        """The shipped model, then the user's, marked as such: the registry
        leaves out a user model named like any plugin's shipped model (this
        one's or another's), which is then listed as shadowed."""
        shipped = self.shipped_spec()
        return [LatentModelSpec(shipped.name, shipped.description, load=partial(self.load, shipped))] + [
            UserLatentModelSpec(s.name, s.description, load=partial(self.load, s), weights=s.weights)
            for s in self.user_specs()]
