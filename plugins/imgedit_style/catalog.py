"""The styles this plugin knows: the shipped ones (``weights/imgedit_style/
<name>.safetensors`` with a ``.json`` card beside each) and every style a
user trained with ``imgedit train style``, found in the user weights folder
by the ``architecture`` its card names.

Cheap to import (no torch): the registry reads it for ``imgedit --help``.
"""

from __future__ import annotations

from pathlib import Path

from imgedit.atomic import check_name_lengths
from imgedit.catalog import spec_for_file
from imgedit.errors import UsageError, WeightsError, did_you_mean
from imgedit.models import ModelSpec, shipped_weights_dir, user_models, user_weights_dir

FOLDER = "imgedit_style"
ARCHITECTURE = "imgedit_style.model.StyleNet"
SHIPPED = ("candy", "mosaic", "udnie", "starry_night")
SOURCE_IMAGES = "../shared/data/styles"  # where the shipped styles' paintings are, for the training hint


def shipped_specs() -> list[ModelSpec]:
    """The four shipped styles (registered even before their weights exist,
    so ``imgedit models`` shows what is missing), then any other style file
    in the shipped folder."""
    folder = shipped_weights_dir() / FOLDER
    names = list(SHIPPED) + sorted(p.stem for p in folder.glob("*.safetensors") if p.stem not in SHIPPED)
    return [ModelSpec(n, folder / f"{n}.safetensors", f"Fast style network: {n.replace('_', ' ')}") for n in names]


def user_specs() -> list[ModelSpec]:
    """Styles the user trained (other plugins' user weights are left alone)."""
    return [spec for spec in user_models() if spec.extra.get("architecture") == ARCHITECTURE]


def styles() -> dict[str, ModelSpec]:
    """Every style by name; a user style named like a shipped one is shadowed by it."""
    found = {spec.name: spec for spec in shipped_specs()}
    for spec in user_specs():
        found.setdefault(spec.name, spec)
    return found


def default_export_path(name: str) -> Path:
    return user_weights_dir() / FOLDER / f"{name}.safetensors"


def resolve_style(name: str) -> ModelSpec:
    """The weights of style ``name`` (a known name, or a ``.safetensors`` file).

    Raises:
        UsageError: no name, or an unknown one (the message lists the known styles).
        WeightsError: a known style whose weights are not there yet (saying how to train them).
    """
    known = styles()
    listing = ", ".join(known) or "none"
    if not name:
        raise UsageError(f"style: give a style with --style NAME (name= in a pipeline; known: {listing}) or a painting "
                         "with --style-image FILE (style_image=)")
    check_name_lengths(name, "style: --style")  # before the stat below, which such a name fails
    if name.endswith(".safetensors") or Path(name).expanduser().is_file():
        path = Path(name).expanduser()
        if not path.is_file():
            raise UsageError(f"style: no such weights file {path}")
        return spec_for_file(path)
    if name not in known:
        raise UsageError(f"style: unknown style '{name}'{did_you_mean(name, known)} (known: {listing}; or give any "
                         "painting with --style-image FILE, style_image= in a pipeline)")
    spec = known[name]
    if not spec.weights.is_file():
        raise WeightsError(f"style '{name}' has no weights yet (expected {spec.weights}); train them with "
                           f"'imgedit train style --style-image {SOURCE_IMAGES}/{name}.jpg --data PHOTOS --export {spec.weights}'")
    return spec
