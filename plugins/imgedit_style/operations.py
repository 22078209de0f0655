"""The ``style`` operation and the models this plugin registers.

Cheap to import (no torch): ``imgedit --help`` builds the registry to list
methods; the networks load only when the operation is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgedit.operations import Capabilities, Operation, Param

LOSS_NETS = ("random", "vgg16", "vgg19")  # imgedit_style.lossnet.LOSS_NETS, without importing torch


def create_style(context: Any = None, **params: Any):
    from imgedit_style.stylize import create_style as create

    return create(context, **params)


# The parameters only per-image optimisation reads, with their defaults (as in STYLE's params below).
#: The longest side a painting is seen at: past it, set-up alone takes minutes and many GB
#: (8192 px: over 10 minutes and 12 GB before the first step).
MAX_STYLE_SIZE = 4096

OPTIMISATION_ONLY = {"steps": ("--steps", 300), "loss_net": ("--loss-net", "random"), "style_size": ("--style-size", 512)}


def check_style_image(path: Path) -> None:
    """Refuse a painting that is not a file, saying whether it is missing or a folder.

    Raises:
        UsageError: "style image photos is a folder, not an image: ...", or "... does not exist".
    """
    from imgedit.atomic import check_name_lengths
    from imgedit.errors import UsageError

    check_name_lengths(path, "style image")  # before the stats below, which such a name fails
    if path.is_dir():
        raise UsageError(f"style image {path} is a folder, not an image: give one painting's file")
    if not path.is_file():  # /dev/zero, a FIFO: there, but no file to read
        raise UsageError(f"style image {path} is not a regular file" if path.exists() else f"style image {path} does not exist")


def check_style_source(params: dict) -> None:
    """Refuse, before any image is read, an unknown style, a missing painting,
    missing VGG weights, a file that is not a style network, or options of
    the painting's optimisation given to a trained style (cheap: no network
    is loaded, at most a model card read)."""
    from imgedit.errors import UsageError

    if params.get("style_image") and params.get("name"):  # alternatives: taking one silently would hide a typo
        raise UsageError("style: give a trained style (--style NAME, name=) or a painting (--style-image FILE, "
                         "style_image=), not both")
    if params.get("style_image"):
        check_style_image(Path(params["style_image"]).expanduser())
        if params.get("loss_net", "random") != "random":
            from imgedit_style.lossnet import require_vgg_file

            require_vgg_file(params["loss_net"])
        return
    given = [flag for key, (flag, default) in OPTIMISATION_ONLY.items() if params.get(key, default) != default]
    if given:  # a trained style would silently ignore them
        raise UsageError(f"style: {', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only with "
                         "--style-image (a painting optimised per image); a trained --style takes none")
    from imgedit_style.catalog import ARCHITECTURE, resolve_style

    spec = resolve_style(params.get("name", ""))
    architecture = spec.card().get("architecture")
    if architecture is not None and architecture != ARCHITECTURE:  # else each image would fail on loading it
        raise UsageError(f"style: {params.get('name')} is not a style network (its model card names {architecture}); "
                         "give a style from 'imgedit train style'")


def style_names() -> list[str]:
    """The trained styles' names, shipped and the user's own, for tab completion of ``--style``."""
    from imgedit_style.catalog import styles

    return sorted(styles())


def style_files(params: dict) -> list:
    """The file a stylised image depends on besides the photo: the style's
    weights, or the painting (the resume journal hashes it, so retraining
    a style or editing the painting redoes the images)."""
    from imgedit.errors import ImgeditError

    if params.get("style_image"):
        return [Path(params["style_image"]).expanduser()]
    from imgedit_style.catalog import resolve_style

    try:
        return [resolve_style(params.get("name", "")).weights]
    except ImgeditError:  # check_style_source has said why already
        return []


def style_working_size(params: dict, height: int, width: int) -> tuple:
    """The size the style is applied at: ``scale``, or under auto the photo's
    capped at 1024 px (512 for per-image optimisation)."""
    from imgedit_style.stylize import AUTO_SCALE, AUTO_SCALE_OPTIMISE, working_size

    cap = AUTO_SCALE_OPTIMISE if params.get("style_image") else AUTO_SCALE
    return working_size(height, width, params.get("scale", "auto"), cap)


# Not tileable: instance normalisation makes every output pixel depend on
# the whole image's statistics, and 'scale' resizes the whole image. Peak
# working memory of the fast network is about 0.15 GB per megapixel (fp32,
# CPU); per-image optimisation works at most at 512 px under scale=auto.
STYLE_CAPS = Capabilities(devices=("cpu", "cuda", "mps"), precisions=("fp32",), tileable=False,
                          memory_mb_per_megapixel=200.0)

STYLE = Operation(
    name="style", method="neural", create=create_style, capabilities=STYLE_CAPS, priority=10,
    params=(
        Param("name", str, "", help="a trained style: candy, mosaic, udnie, starry_night, one you trained, "
                                    "or a .safetensors file from 'imgedit train style'", flag="--style",
              suggest=style_names),
        Param("strength", float, 1.0, help="blend with the photo: 0 = unchanged, 1 = fully stylised", minimum=0, maximum=1),
        Param("preserve_color", bool, False, help="keep the photo's colours: transfer only luminance"),
        Param("scale", int, "auto", help="long side in px the style is applied at (auto: the photo's, at most 1024; "
                                         "512 with a painting, --style-image); the output keeps the photo's size",
              allow_auto=True, minimum=16, maximum=16384),
        Param("style_image", str, "", help="any painting: stylise by per-image optimisation instead (slower)"),
        Param("steps", int, 300, help="optimisation steps with a painting (--style-image)", minimum=1, maximum=100000),
        Param("loss_net", str, "random", help="loss network with a painting (--style-image): random, or vgg16/vgg19 "
                                              "from the local torchvision cache", choices=LOSS_NETS),
        Param("style_size", int, 512, help="long side in px the painting (--style-image) is seen at "
                                           "(larger = larger strokes)", minimum=32, maximum=MAX_STYLE_SIZE),
    ),
    description="Style transfer: fast trained style networks, or any painting by per-image optimisation",
    depends_on=style_files,
    check=check_style_source,
    working_size=style_working_size,
)

OPERATIONS = (STYLE,)


def models() -> list:
    from imgedit_style.catalog import shipped_specs

    return shipped_specs()
