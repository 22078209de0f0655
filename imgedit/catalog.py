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
from typing import Any, Optional, Union

from imgedit.checkpoint import is_checkpoint, recorded_weights
from imgedit.errors import UsageError
from imgedit.latents import LatentModelSpec
from imgedit.models import ModelSpec, is_safetensors_file, shipped_weights_dir, user_models, user_weights_dir


def spec_for_file(path: Union[str, Path]) -> ModelSpec:
    """A ``.safetensors`` file given on the command line instead of a name
    (``--model``, ``--weights``, ``--init``, ``--style``). A missing file is
    reported when the model loads.

    Raises:
        UsageError: the file is not a safetensors file (a photo, say): its
            card would otherwise be reported missing, which misleads; or it
            is a training checkpoint (the message names its run's weights).
    """
    path = Path(path).expanduser()
    if path.is_file() and not is_safetensors_file(path):
        raise UsageError(f"{path} is not a .safetensors model file")
    if path.is_file() and is_checkpoint(path):
        raise UsageError(_checkpoint_given_as_weights(path))
    return ModelSpec(path.stem, path, plugin="user")


def _checkpoint_given_as_weights(path: Path) -> str:
    """What to say of a training checkpoint given where model weights go."""
    weights = recorded_weights(path)
    use = f"use {weights}" if weights else "use the file named after 'weights:' when its training ended"
    return (f"{path} is a training checkpoint (for 'imgedit train ... --resume'), not model weights: "
            f"{use}, the weights its run exported")


def is_file_argument(model: str) -> bool:
    """Whether ``--model`` names a weights file rather than a registered model."""
    return model.endswith(".safetensors") or Path(model).expanduser().is_file()


def weights_spec(model: str) -> Optional[ModelSpec]:
    """The weights and card behind ``--model`` (a file or a registered name);
    None for a name with no weights registered (a latent model without a card)."""
    from imgedit.registry import get_registry

    return spec_for_file(model) if is_file_argument(model) else get_registry().models.get(model)


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
            UsageError: ``--name`` differs from the ``--export`` file's name.
        """
        if export_path is not None and name and name != export_path.stem:
            raise UsageError(f"--name {name} differs from the --export file's name {export_path.stem}: "
                             "a model is named after its file")
        name = name or (export_path.stem if export_path is not None else fallback)
        return name, export_path or self.default_export_path(name)

    def load(self, spec: ModelSpec, device: Any) -> Any:
        module, function = self.loader.split(":")
        return getattr(importlib.import_module(module), function)(spec, device)

    def latent_specs(self) -> list[LatentModelSpec]:
        """The shipped model, then the user's (a user model named like the shipped one is shadowed)."""
        specs = [self.shipped_spec()] + [s for s in self.user_specs() if s.name != self.name]
        return [LatentModelSpec(s.name, s.description, load=partial(self.load, s)) for s in specs]
