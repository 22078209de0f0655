"""Learned denoising with the conditional VAE (``denoise.vae``).

The model is told the noise level through a constant noise-level map (as
FFDNet is), so one network covers sigma 0-75 and the user can turn it up or
down; ``--strength`` blends with the input. The latent's mean is decoded,
so output is deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch

from imgedit.errors import ShapeError, UsageError
from imgedit.operations import warn_once
from imgedit_vae.degrade import is_gray
from imgedit_vae.ensemble import dihedral_mean
from imgedit_vae.loading import load_cached, load_vae
from imgedit_vae.model import ConditionalVAE, pad_to_multiple
from imgedit_vae.operations import DENOISE_COPIES, GRAY_MODEL_NAME, SIGMA_MODEL_NAME, model_spec
from imgedit_vae.sigma_net import SigmaNet, SigmaNetConfig, estimate_sigma_learned

SIGMA_MAX = 75.0  # the trained range; higher requests are clamped to it


def load_denoiser(
    device: Union[str, torch.device] = "cpu", weights: Optional[Union[str, Path]] = None
) -> ConditionalVAE:
    """Load (once per device and file) the denoising VAE in eval mode.

    Raises:
        WeightsError: missing file or card, sha256 mismatch, or a card that is not a denoising VAE.
    """
    return load_vae(model_spec(weights), ConditionalVAE, device)


def load_gray_denoiser(device: Union[str, torch.device] = "cpu") -> Optional[ConditionalVAE]:
    """The shipped one-channel model for grayscale images, or None where it
    is not installed (the colour model then denoises grayscale images too).

    Raises:
        WeightsError: its file is there but its card or sha256 is wrong.
    """
    spec = model_spec(name=GRAY_MODEL_NAME)
    return load_vae(spec, ConditionalVAE, device) if spec.weights.is_file() else None


def load_sigma_net(device: Union[str, torch.device] = "cpu",
                   weights: Optional[Union[str, Path]] = None) -> Optional[SigmaNet]:
    """The noise-level estimator behind ``sigma=auto`` (once per device and
    file): ``weights`` from ``imgedit train sigma``, else the shipped one, or
    None where that is not installed (the classical estimator of
    :mod:`imgedit.noise` then reads the noise level).

    Raises:
        WeightsError: a file given is missing, or its card or sha256 is wrong.
    """
    spec = model_spec(weights, name=SIGMA_MODEL_NAME)
    if weights is None and not spec.weights.is_file():
        # said, not silent: the classical reading takes texture for noise (sigma 2.85 against 0.03 on a clean photo)
        warn_once("the noise-level estimator %s is not installed (%s): sigma=auto is read by the classical "
                  "estimator, which takes texture for noise; reinstall imgedit, or give --sigma-weights",
                  SIGMA_MODEL_NAME, spec.weights)
        return None
    return load_cached(spec, lambda config: SigmaNet(SigmaNetConfig.from_dict(config)), device, SigmaNet)


def estimate_noise(image: torch.Tensor, net: Optional[SigmaNet]) -> torch.Tensor:
    """``sigma=auto``: each image's noise std (0-255 scale, ``(B,)`` on the
    CPU), read by the learned estimator ``net``, or by the classical one
    where there is none. The learned one reads texture, clipping and JPEG
    that the classical one takes for noise or misses (DESIGN.md). An image
    smaller than its patches would be read padded: the classical one reads
    those (and calls one under 3x3 clean, nothing to measure)."""
    if net is None or min(image.shape[-2:]) < net.cfg.patch:
        from imgedit.noise import estimate_sigma_sampled

        return estimate_sigma_sampled(image).float().cpu()
    return estimate_sigma_learned(image, net).float().cpu()


def load_denoisers(
    device: Union[str, torch.device] = "cpu", weights: Optional[Union[str, Path]] = None
) -> tuple[ConditionalVAE, Optional[ConditionalVAE]]:
    """``(model, gray_model)`` for :func:`denoise_vae`: the shipped colour
    model and its grayscale partner, or a user's ``weights`` alone (only the
    shipped model has a partner; a user's file takes every image)."""
    return load_denoiser(device, weights), None if weights else load_gray_denoiser(device)


def denoise_vae(
    image: torch.Tensor,
    model: ConditionalVAE,
    sigma: Union[float, torch.Tensor],
    strength: float = 1.0,
    ensemble: int = DENOISE_COPIES,
    gray_model: Optional[ConditionalVAE] = None,
) -> torch.Tensor:
    """Denoise a batch with the VAE at a given noise level.

    Args:
        image: ``(B, 3, H, W)`` float RGB in [0, 1] (grayscale as 3 equal channels).
        model: from :func:`load_denoiser`, on ``image``'s device; a
            one-channel model (``imgedit train denoise --gray``) takes
            grayscale images only.
        sigma: noise std on the 0-255 scale, a number or ``(B,)`` tensor;
            values above 75 are treated as 75.
        strength: in [0, 1]; ``out = image + strength * (denoised - image)``.
        ensemble: average the model over this many flipped/rotated copies
            (1-8, see :mod:`imgedit_vae.ensemble`); each costs one model run.
        gray_model: a one-channel model for the grayscale images of the batch
            (from :func:`load_gray_denoiser`); default: ``model`` takes them.

    Returns:
        ``(B, 3, H, W)`` in [0, 1], same dtype and device as ``image``;
        grayscale images stay grayscale.

    Raises:
        ShapeError: ``image`` is not ``(B, 3, H, W)`` float.
        UsageError: a colour image for a one-channel ``model``.

    Example:
        >>> model = load_denoiser()
        >>> noisy = (torch.full((1, 3, 48, 48), 0.5) + torch.randn(1, 3, 48, 48) * 0.1)
        >>> denoise_vae(noisy, model, sigma=25.5).std() < noisy.std()
        tensor(True)
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 3 or not image.is_floating_point():
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ShapeError("denoise image", "a (B, 3, H, W) float tensor", got)
    b = image.shape[0]
    sigma_t = torch.as_tensor(sigma, dtype=torch.float32).flatten().expand(b) if not isinstance(sigma, torch.Tensor) else sigma.float().flatten()
    level = (sigma_t.clamp(0, SIGMA_MAX) / 255.0).to(image.device, image.dtype).view(b, 1, 1, 1)  # (B, 1, 1, 1)
    gray = is_gray(image)
    if model.cfg.image_channels == 1:
        if not bool(gray.all()):
            raise UsageError("these denoising weights are for grayscale images only (trained with --gray); this image is in colour")
        model, gray_model = None, model
    # Grayscale images go to the one-channel model when there is one; the
    # colour model's output for them is made gray (equal channels stay equal).
    by_gray = gray if gray_model is not None else torch.zeros_like(gray)
    denoised = torch.empty_like(image)
    for net, rows, channels in ((gray_model, by_gray, 1), (model, ~by_gray, 3)):
        if net is None or not bool(rows.any()):
            continue
        x, lv = image[rows][:, :channels], level[rows]
        out = _ensemble(net, x, lv, ensemble)
        out = torch.where(gray[rows].view(-1, 1, 1, 1), out.mean(1, keepdim=True), out)
        denoised[rows] = out.expand(-1, 3, -1, -1)
    out = (image + float(strength) * (denoised.clamp(0, 1) - image)).clamp(0, 1)
    # sigma 0 means "no noise": leave those images exactly as they were.
    keep = (sigma_t == 0).to(image.device).view(b, 1, 1, 1)
    return torch.where(keep, image, out)


def _ensemble(net: ConditionalVAE, image: torch.Tensor, level: torch.Tensor, copies: int) -> torch.Tensor:
    """``net``'s mean over ``copies`` flipped/rotated copies of ``image``
    ``(B, C, H, W)`` at noise ``level`` ``(B, 1, 1, 1)``.

    The image is padded at the bottom and right to the U-Net's multiple
    (16) before it is turned, as the model would pad the first copy, so
    every copy sees one 1/16 grid anchored at the image's top-left. Left to
    the model, a turned copy's padding lands on another side (the image's
    left or top), its grid moves with the image's far edge, and a tile
    (whose grid the host anchors at the top-left) got another output than
    the whole image: 6.6-9.1 8-bit levels on 201x255 crops of a photo
    (96 px tiles), against under 0.1 now.
    """
    h, w = image.shape[-2:]
    padded = pad_to_multiple(image, net.cfg.multiple)  # (B, C, H', W'); unchanged for a multiple
    out = dihedral_mean(lambda t: net(t, level.expand(len(t), 1, *t.shape[-2:]))[0], padded, copies)
    return out[..., :h, :w]


class DenoiseApplier:
    """The ``denoise.vae`` applier. :meth:`prepare` sees each whole image
    before the core tiles it: it estimates the noise level once (``sigma=auto``)
    and settles which model takes the image, so no tile of a colour photo
    that happens to be gray goes to the grayscale model."""

    def __init__(self, model: ConditionalVAE, sigma: Union[float, str], strength: float,
                 per_image: Optional[torch.Tensor] = None, ensemble: int = DENOISE_COPIES, gray_model: Optional[ConditionalVAE] = None,
                 sigma_net: Optional[SigmaNet] = None):
        self.model, self.sigma, self.strength, self.per_image, self.ensemble = model, sigma, strength, per_image, ensemble
        self.gray_model, self.sigma_net = gray_model, sigma_net
        self.note = ""  # what prepare() found: the estimated sigma

    def prepare(self, image: torch.Tensor, mask: Optional[torch.Tensor] = None) -> "DenoiseApplier":
        gray_model = self.gray_model if self.gray_model is not None and bool(is_gray(image).all()) else None
        per_image, note = self.per_image, ""
        if self.sigma == "auto":
            from imgedit.noise import describe_estimate, settle_estimate

            levels = settle_estimate(estimate_noise(image, self.sigma_net))
            per_image, note = torch.tensor(levels, dtype=torch.float32), describe_estimate(levels)
        prepared = DenoiseApplier(self.model, self.sigma, self.strength, per_image, self.ensemble, gray_model,
                                  self.sigma_net)
        prepared.note = note
        return prepared

    def __call__(self, image: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.strength == 0:
            return image.clone()
        if self.sigma == "auto":
            sigma = self.per_image
            if sigma is None or len(sigma) != image.shape[0]:  # called without prepare (plain use)
                sigma = estimate_noise(image, self.sigma_net)
        else:
            sigma = float(self.sigma)
        model, gray_model = (m if m is None or next(m.parameters()).dtype == image.dtype else _cast(m, image.dtype)
                             for m in (self.model, self.gray_model))
        return denoise_vae(image, model, sigma, self.strength, self.ensemble, gray_model)


def _cast(model: ConditionalVAE, dtype: torch.dtype) -> ConditionalVAE:
    import copy

    return copy.deepcopy(model).to(dtype)


def create_denoise(context: Any = None, *, sigma: Union[float, str] = "auto", strength: float = 1.0, weights: str = "",
                   sigma_weights: str = "", ensemble: int = DENOISE_COPIES) -> DenoiseApplier:
    device = getattr(context, "device", torch.device("cpu"))
    dtype = getattr(context, "dtype", torch.float32)
    if not 0.0 <= float(strength) <= 1.0:
        raise UsageError(f"denoise: strength must be in [0, 1], got {strength}")
    if sigma != "auto" and float(sigma) > SIGMA_MAX:
        # once per process: a notebook builds the pipeline again on every imgedit.run call
        warn_once("denoise.vae was trained for sigma up to %g; using %g instead of %g", SIGMA_MAX, SIGMA_MAX, float(sigma))
    model, gray_model = load_denoisers(device, weights or None)
    if dtype != torch.float32:
        model, gray_model = _cast(model, dtype), None if gray_model is None else _cast(gray_model, dtype)
    if sigma_weights and sigma != "auto":
        warn_once("denoise: sigma_weights reads the noise level only with sigma=auto; sigma %s is used as given", sigma)
    sigma_net = load_sigma_net(device, sigma_weights or None) if sigma == "auto" else None
    return DenoiseApplier(model, sigma, float(strength), ensemble=int(ensemble), gray_model=gray_model, sigma_net=sigma_net)
