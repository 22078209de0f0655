"""Image quality measures with the conventions of the published tables:
images in [0, 1], output clipped and rounded to 8 bits, every pixel and
channel counted."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def quantise8(image: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to the nearest 8-bit level (as a saved file)."""
    return image.clamp(0, 1).mul(255).round().div(255)


def psnr(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(B,) PSNR in dB of ``output`` (clipped and rounded to 8 bits) against
    ``reference``, both ``(B, C, H, W)`` in [0, 1], over all pixels and channels."""
    mse = (quantise8(output) - reference).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1.0 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()  # (size, size)


def ssim(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(B,) structural similarity (Wang et al. 2004: 11x11 Gaussian window,
    sigma 1.5, K1 0.01, K2 0.03, no padding), per channel then averaged;
    ``output`` is clipped and rounded to 8 bits first."""
    x, y = quantise8(output).double(), reference.double()
    c = x.shape[1]
    window = _gaussian_window().to(x).expand(c, 1, 11, 11)
    if min(x.shape[-2:]) < 11:
        window = window[..., : min(x.shape[-2:]), : min(x.shape[-2:])]
        window = window / window.sum(dim=(-2, -1), keepdim=True)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return index.flatten(1).mean(1).float()
