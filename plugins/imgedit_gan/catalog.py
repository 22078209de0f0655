"""The GAN models this plugin knows: the shipped ``faces64-gan`` and every
generator a user exported with ``imgedit train gan`` (found in the user
weights folder by the ``architecture`` in its card).

Cheap to import (no torch): the registry is built for ``imgedit --help``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Union

from imgedit.latents import LatentModelSpec
from imgedit.models import ModelSpec, shipped_weights_dir, user_models, user_weights_dir

MODEL_NAME = "faces64-gan"
ARCHITECTURE = "imgedit_gan.model.Generator"
DESCRIPTION = "64x64 face GAN (UTKFace; non-commercial research use only)"


def shipped_spec() -> ModelSpec:
    return ModelSpec(MODEL_NAME, shipped_weights_dir() / "imgedit_gan" / f"{MODEL_NAME}.safetensors", DESCRIPTION)


def user_specs() -> list[ModelSpec]:
    """Generators the user trained (any other plugin's user weights are left alone)."""
    return [spec for spec in user_models() if spec.extra.get("architecture") == ARCHITECTURE]


def default_export_path(name: str) -> Path:
    return user_weights_dir() / "imgedit_gan" / f"{name}.safetensors"


def spec_for_file(path: Union[str, Path]) -> ModelSpec:
    """A ``.safetensors`` file given on the command line instead of a name."""
    path = Path(path).expanduser()
    return ModelSpec(path.stem, path, plugin="user")


def _load(spec: ModelSpec, device: Any):
    from imgedit_gan.sampler import load_gan

    return load_gan(spec, device)


def latent_spec(spec: ModelSpec) -> LatentModelSpec:
    return LatentModelSpec(spec.name, spec.description, load=partial(_load, spec))


def latent_specs() -> list[LatentModelSpec]:
    """The shipped model, then the user's (a user model named like the shipped one is shadowed)."""
    specs = [shipped_spec()] + [s for s in user_specs() if s.name != MODEL_NAME]
    return [latent_spec(s) for s in specs]
