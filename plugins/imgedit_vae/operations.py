"""The operations and models this plugin registers.

Cheap to import (no torch): ``imgedit --help`` builds the registry to list
methods, and the model code loads only when an operation is created.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional, Union

from imgedit.catalog import spec_for_file
from imgedit.latents import MAX_SEED
from imgedit.errors import UsageError, WeightsError
from imgedit.models import ModelSpec, check_architecture, shipped_weights_dir, verify
from imgedit.operations import Capabilities, Operation, Param

MODEL_NAME = "denoise-vae"
GRAY_MODEL_NAME = "denoise-vae-gray"  # the shipped colour model's partner for grayscale images
INPAINT_MODEL_NAME = "inpaint-vae"
SIGMA_MODEL_NAME = "sigma-net"  # the learned noise-level estimator behind denoise.vae's sigma=auto (imgedit train sigma)
# The denoiser averages two copies (the image and its quarter turn) unless
# asked otherwise: on Kodak24 at sigma 25 that is 32.20 dB against 32.13 for
# one, at half the speed (0.6 MP/s on two cores, above the 0.5 floor).
DENOISE_COPIES = 2

_DESCRIPTIONS = {
    MODEL_NAME: "Conditional VAE denoiser, sigma 0-75, colour and grayscale",
    GRAY_MODEL_NAME: "Conditional VAE denoiser for grayscale images, sigma 0-75",
    INPAINT_MODEL_NAME: "Conditional VAE inpainter: a deterministic fill or several plausible ones",
    SIGMA_MODEL_NAME: "Learned noise-level estimator (tiny CNN; Gaussian, clipped, JPEG)",
}


def model_spec(weights: Optional[Union[str, Path]] = None, name: str = MODEL_NAME) -> ModelSpec:
    """The shipped model ``name``, or a user's ``.safetensors`` trained with ``imgedit train ...``."""
    if weights:
        return spec_for_file(weights)
    return ModelSpec(name, shipped_weights_dir() / "imgedit_vae" / f"{name}.safetensors", _DESCRIPTIONS[name])


# The plugin's networks as model cards name them, and what each is, for the
# message when weights of one are given where another is wanted
NETWORKS = {
    "imgedit_vae.model.ConditionalVAE": "a denoiser",
    "imgedit_vae.model.InpaintVAE": "an inpainter",
    "imgedit_vae.sigma_net.SigmaNet": "a noise-level estimator",
}


def weights_check(*files: tuple[str, str, str]) -> Callable[[dict], None]:
    """The check of an operation's weights parameters, each given as
    ``(param, architecture, train verb)``: refuse, before any image is
    read and as a usage error (exit 2, as ``--model`` is), a file that is
    missing, not a model file, does not verify against its card, or holds
    another kind of model (a sigma-net given to denoise)."""

    def check(params: dict) -> None:
        for param, architecture, train_verb in files:
            if params.get(param):
                _check_weights(param, model_spec(params[param]), architecture, train_verb)

    return check


_check_inpaint_weights = weights_check(("weights", "imgedit_vae.model.InpaintVAE", "imgedit train inpaint"))


def _check_inpaint(params: dict) -> None:
    """The weights, and the seeds: ``samples`` fills take the seeds from
    ``seed`` up, and the last must be one a single fill could be asked for with."""
    first, samples = params.get("seed") or 0, params.get("samples") or 1
    if first + samples - 1 > MAX_SEED:
        raise UsageError(f"seed {first} with samples {samples} would use seeds up to {first + samples - 1}; "
                         f"the largest is {MAX_SEED}: give a seed of at most {MAX_SEED - samples + 1}")
    _check_inpaint_weights(params)


def _check_weights(param: str, spec: ModelSpec, architecture: str, train_verb: str) -> None:
    if not spec.weights.is_file():
        raise UsageError(f"{param} {spec.weights}: no such file (weights from '{train_verb}', or leave {param} out "
                         "for the shipped model)")
    ok, reason = verify(spec)
    if not ok:
        raise UsageError(f"{param}: {reason}")
    try:
        check_architecture(spec, architecture, NETWORKS[architecture])
    except WeightsError as exc:
        raise UsageError(str(exc)) from None


def weights_files(*params: str) -> Callable[[dict], list[Path]]:
    """The user's weights files an operation's result depends on, for the
    resume journal (which hashes them): retraining into the same file must
    redo the images, as new shipped weights do."""
    return lambda values: [Path(values[p]).expanduser() for p in params if values.get(p)]


def create_denoise(context: Any = None, **params: Any):
    from imgedit_vae.denoise import create_denoise as create

    return create(context, **params)


# Peak working memory measured at 0.42 GB per megapixel (fp32, CPU, one
# 1000x1000 image); 0.5 leaves headroom. The U-Net sees far, so tiles carry
# 48 px of context and a 24 px feathered seam: tiled output stays within 1.5
# 8-bit levels of whole-image output (0.05 on average; see the tests) at any
# size: the ensemble's copies share the tiles' 1/16 grid (denoise._ensemble).
# bf16 on a CPU that has it halves the time (DESIGN.md, "bf16 on the CPU").
DENOISE_CAPS = Capabilities(
    devices=("cpu", "cuda", "mps"), precisions=("fp32", "fp16", "bf16"), cpu_bf16=True, tileable=True,
    tile_overlap=48, pad_multiple=1, tile_align=16, memory_mb_per_megapixel=500.0,  # 16: the U-Net's 1/16 level
)

DENOISE = Operation(
    name="denoise", method="vae", create=create_denoise, capabilities=DENOISE_CAPS, priority=10,
    weights=(MODEL_NAME, GRAY_MODEL_NAME, SIGMA_MODEL_NAME),  # sigma-net reads sigma=auto: a rerun redoes with new weights
    params=(
        Param("sigma", float, "auto", help="noise std on the 0-255 scale, or auto (method vae works on 0-75: more "
                                           "acts as 75, with a warning)",
              allow_auto=True, minimum=0, maximum=255),
        Param("strength", float, 1.0, help="blend with the input: 0 = unchanged, 1 = fully denoised",
              minimum=0, maximum=1),
        Param("weights", str, "", help="a .safetensors file from 'imgedit train denoise' (default: shipped)"),
        Param("sigma_weights", str, "", help="a .safetensors file from 'imgedit train sigma' that reads sigma=auto "
              "(default: shipped)"),
        Param("ensemble", int, DENOISE_COPIES, help="average over N flipped/rotated copies (1-8): each copy costs one "
              "model run; 1 is twice as fast as the default and a little noisier",
              minimum=1, maximum=8),
    ),
    description="Learned denoiser (conditional VAE on a noise-level map), sigma 0-75, given or estimated",
    check=weights_check(("weights", "imgedit_vae.model.ConditionalVAE", "imgedit train denoise"),
                        ("sigma_weights", "imgedit_vae.sigma_net.SigmaNet", "imgedit train sigma")),
    depends_on=weights_files("weights", "sigma_weights"),
)



def create_inpaint(context: Any = None, **params: Any):
    from imgedit_vae.inpaint import create_inpaint as create

    return create(context, **params)


# Not tileable: the applier crops around each hole itself and runs the model
# at a working resolution of at most 1024 px a side, so memory is bounded by
# the crop, not the photo. The crop is not known before the mask is read:
# 60 MB per megapixel of the photo makes --dry-run's estimate that of a crop
# of about a third of it (24 MP photo, one fill: 3.0 GB estimated; 1.4 GiB
# peak for a 60x80 hole, 4.1 GiB for a 3000x4000 one).
INPAINT = Operation(
    name="inpaint", method="vae", create=create_inpaint, priority=10, weights=(INPAINT_MODEL_NAME,),
    capabilities=Capabilities(devices=("cpu", "cuda", "mps"), precisions=("fp32",), cpu_bf16=True, tileable=False,
                              memory_mb_per_megapixel=60.0, needs_mask=True),
    params=(
        Param("samples", int, 1, help="number of different fills, written side by side: the fills of seeds S, S+1, "
              "..., S+K-1 (S: the seed, default 0), so each can be made again alone", minimum=1, maximum=16),
        Param("seed", int, None, help="draw a random plausible fill with this seed (default: the deterministic fill; "
              "with samples, the first of the seeds)", minimum=0, maximum=MAX_SEED),
        Param("weights", str, "", help="a .safetensors file from 'imgedit train inpaint' (default: shipped)"),
        Param("ensemble", int, None, help="average the deterministic fill over N flipped/rotated copies (1-8) at each "
              "working scale (default: as many as fit a fixed budget per hole)", minimum=1, maximum=8),
        Param("grain", bool, False, help="add noise to the fill at the level measured around each hole, so it does not "
              "show as a flat patch on a grainy or noisy photo (drawn from the seed; lowers PSNR)"),
    ),
    description="Learned inpainting (conditional VAE): crops around each hole, keeps known pixels exactly",
    check=_check_inpaint,
    depends_on=weights_files("weights"),
    resizes=lambda params: params["samples"] > 1,  # K fills side by side
)

OPERATIONS = (DENOISE, INPAINT)
# sigma-net reads denoise.vae's sigma=auto (DESIGN.md, "A learned noise level").
# "option": where a model of the kind you trained is given ('imgedit models' says so of yours)
MODELS = (model_spec(), model_spec(name=GRAY_MODEL_NAME), model_spec(name=INPAINT_MODEL_NAME),
          dataclasses.replace(model_spec(name=SIGMA_MODEL_NAME), extra={"option": "denoise --sigma-weights"}))
