"""Image quality measures with the conventions of the published tables:
images in [0, 1], output clipped and rounded to 8 bits, every pixel and
channel counted; and the reconstruction losses the trainers minimise."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from imgedit.errors import ShapeError


RECON_LOSSES = ("l1", "mse")
SSIM_WINDOW = 11  # px: the smallest image SSIM (and so an eval) can score


def reconstruction_loss(out: torch.Tensor, clean: torch.Tensor, kind: str,
                        weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean absolute (``l1``) or squared (``mse``) error, each pixel weighted
    by ``weight`` (broadcast to ``out``) when given."""
    if kind not in RECON_LOSSES:
        raise ValueError(f"unknown reconstruction loss {kind!r} (known: {', '.join(RECON_LOSSES)})")
    error = out - clean
    error = error.abs() if kind == "l1" else error.square()
    return (error if weight is None else error * weight).mean()


def quantise8(image: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to the nearest 8-bit level (as a saved file)."""
    return image.clamp(0, 1).mul(255).round().div(255)


def _mean(values: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
    """(B,) mean over all but the batch dim, or weighted by ``weight`` ((B, 1, H, W))."""
    if weight is None:
        return values.flatten(1).mean(1)
    weight = weight.expand_as(values).to(values.dtype)
    return (values * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1e-12)


def psnr(output: torch.Tensor, reference: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) PSNR in dB of ``output`` (clipped and rounded to 8 bits) against
    ``reference``, both ``(B, C, H, W)`` in [0, 1], over all pixels and
    channels, or over the pixels where ``weight`` ((B, 1, H, W)) is 1 (a hole)."""
    mse = _mean((quantise8(output) - reference).pow(2), weight).clamp_min(1e-12)
    return 10 * torch.log10(1.0 / mse)


def _gaussian_taps(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()  # (size,)


def ssim(output: torch.Tensor, reference: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) structural similarity (Wang et al. 2004: 11x11 Gaussian window,
    sigma 1.5, K1 0.01, K2 0.03, no padding), per channel then averaged;
    ``output`` is clipped and rounded to 8 bits first. The window is applied
    as two 1-D passes in float32 (same result, ~50x faster than 2-D float64).
    With ``weight`` ((B, 1, H, W)), the SSIM map is averaged over the windows
    centred where ``weight`` is 1 (a hole), or, for a hole that lies within 5 px
    of the border (where no window is centred), over the windows that overlap it.

    Raises:
        ShapeError: an image smaller than the 11x11 window.
    """
    if min(output.shape[-2:]) < SSIM_WINDOW:
        raise ShapeError("ssim", f"images of at least {SSIM_WINDOW}x{SSIM_WINDOW} px", "x".join(map(str, output.shape[-2:])))
    x, y = quantise8(output).float(), reference.float()
    c = x.shape[1]
    size = SSIM_WINDOW
    taps = _gaussian_taps(size, 1.5).to(x.device)
    row, col = taps.view(1, 1, 1, size).expand(c, 1, 1, size), taps.view(1, 1, size, 1).expand(c, 1, size, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, row, groups=c), col, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    if weight is not None:
        half = size // 2
        centred = weight[..., half : weight.shape[-2] - half, half : weight.shape[-1] - half]
        overlapping = F.max_pool2d(weight.to(index.dtype), size, stride=1)
        none = centred.flatten(1).sum(1) == 0  # else such a hole would score 0
        weight = torch.where(none.view(-1, 1, 1, 1), overlapping, centred.to(index.dtype))
    return _mean(index, weight)
