"""The operations and models this plugin registers.

Cheap to import (no torch): ``imgedit --help`` builds the registry to list
methods, and the model code loads only when an operation is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from imgedit.models import ModelSpec, shipped_weights_dir
from imgedit.operations import Capabilities, Operation, Param

MODEL_NAME = "denoise-vae"


def model_spec(weights: Optional[Union[str, Path]] = None) -> ModelSpec:
    """The shipped model, or a user's ``.safetensors`` trained with ``imgedit train denoise``."""
    if weights:
        path = Path(weights).expanduser()
        return ModelSpec(path.stem, path, plugin="user")
    return ModelSpec(MODEL_NAME, shipped_weights_dir() / "imgedit_vae" / f"{MODEL_NAME}.safetensors",
                     "Conditional VAE denoiser, sigma 0-75, colour and grayscale")


def create_denoise(context: Any = None, **params: Any):
    from imgedit_vae.denoise import create_denoise as create

    return create(context, **params)


# Peak working memory measured at 0.42 GB per megapixel (fp32, CPU, one
# 1000x1000 image); 0.5 leaves headroom. The U-Net sees far, so tiles carry
# 48 px of context and a 24 px feathered seam: tiled output stays within 1.5
# 8-bit levels of whole-image output (0.05 on average; see the tests).
DENOISE_CAPS = Capabilities(
    devices=("cpu", "cuda", "mps"), precisions=("fp32", "fp16", "bf16"), tileable=True,
    tile_overlap=48, pad_multiple=1, memory_mb_per_megapixel=500.0,
)

DENOISE = Operation(
    name="denoise", method="vae", create=create_denoise, capabilities=DENOISE_CAPS, priority=10,
    weights=(MODEL_NAME,),
    params=(
        Param("sigma", float, "auto", help="noise std on the 0-255 scale (0-75), or auto",
              allow_auto=True, minimum=0, maximum=255),
        Param("strength", float, 1.0, help="blend with the input: 0 = unchanged, 1 = fully denoised",
              minimum=0, maximum=1),
        Param("weights", str, "", help="a .safetensors file from 'imgedit train denoise' (default: shipped)"),
    ),
    description="Learned denoiser (conditional VAE on a noise-level map), sigma 0-75, given or estimated",
)

OPERATIONS = (DENOISE,)
MODELS = (model_spec(),)
