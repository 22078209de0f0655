"""A tiny CNN that reads the level of Gaussian noise in an image: a learned
alternative to the classical estimator (:mod:`imgedit.noise`), shipped as
``sigma-net`` and used by ``denoise.vae``'s ``sigma=auto``: see DESIGN.md,
"A learned noise level".

``SigmaNet`` maps a ``(B, 3, P, P)`` patch in [0, 1] to its noise std on the
0-255 scale. The first stage works at full detail (a 2x2 pixel-unshuffle, so
no pixel difference is lost, then two 3x3 convolutions); two strided stages
follow, then a global mean over positions and a small head. It predicts on a
square-root scale (``sqrt(sigma)``, through a softplus: never negative), which
gives low levels, where a wrong estimate costs the most, their share of the
loss. No normalisation layers: a patch's statistics are the signal. With
``classical_input`` the head also reads the patch's Immerkaer estimate and
starts as it (its last layer is zero at first), so it learns a correction;
with ``jpeg_input`` it reads two traces of JPEG too.

:func:`estimate_sigma_learned` is the per-image estimate: the network on a
fixed grid of patches and a quantile of their predictions (texture raises
a patch's prediction, flat areas do not lower it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

SIGMA_RANGE = 75.0  # the trained range, 0-255 scale


@dataclass
class SigmaNetConfig:
    widths: tuple[int, ...] = (32, 32, 64, 64)  # channels: two convs at 1/2 the patch side, one at 1/4, one at 1/8
    patch: int = 64  # side of the patches it reads
    quantile: float = 0.4  # of the patch predictions: the per-image estimate
    grid: int = 8  # patches per side for the per-image estimate (at most grid x grid)
    classical_input: bool = False  # the head also reads the patch's Immerkaer estimate (and starts from it)
    jpeg_input: bool = False  # ... and JPEG's traces: the estimate at half resolution, 8x8 blockiness

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SigmaNetConfig":
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        return cls(**d)


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class SigmaNet(nn.Module):
    """Patch -> noise std. ``widths`` (4 values): two convolutions at half
    resolution after the pixel-unshuffle, then one at 1/4 and one at 1/8."""

    def __init__(self, cfg: SigmaNetConfig):
        super().__init__()
        self.cfg = cfg
        w0, w1, w2, w3 = cfg.widths
        self.body = nn.Sequential(
            _conv(12, w0), nn.ReLU(),  # (B, 12, P/2, P/2): each 2x2 block's 4 pixels side by side
            _conv(w0, w1), nn.ReLU(),
            _conv(w1, w2, stride=2), nn.ReLU(),  # (B, w2, P/4, P/4)
            _conv(w2, w3, stride=2), nn.ReLU(),  # (B, w3, P/8, P/8)
        )
        extra = (2 if cfg.classical_input else 0) + (3 if cfg.jpeg_input else 0)
        self.head = nn.Sequential(nn.Linear(w3 + extra, w3), nn.ReLU(), nn.Linear(w3, 1))
        if cfg.classical_input:  # start as the classical estimate: the network learns its correction
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)
        lap = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
        self.register_buffer("laplacian", lap.expand(3, 1, 3, 3).clone(), persistent=False)

    def immerkaer(self, x: torch.Tensor) -> torch.Tensor:
        """``sqrt`` of Immerkaer's estimate per patch (0-255 scale, no edge
        exclusion: the network judges texture)."""
        residual = F.conv2d(x * 255.0, self.laplacian, groups=3).abs().mean(dim=(1, 2, 3))  # (B,)
        return (residual * (math.pi / 2) ** 0.5 / 6.0).sqrt()

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The classical estimate ``(B,)`` and the extra features ``(B, 2-5)``
        the head reads: that estimate, the share of clipped pixels, and with
        ``jpeg_input`` the estimate at half resolution (white noise keeps it,
        JPEG's low-passed noise raises it) and the 8x8 blockiness across and down."""
        base = self.immerkaer(x)
        extra = [base, ((x <= 0) | (x >= 1)).float().mean(dim=(1, 2, 3))]
        if self.cfg.jpeg_input:
            extra += [self.immerkaer(F.avg_pool2d(x, 2) * 2.0 - x.mean(dim=(2, 3), keepdim=True)),
                      _blockiness(x, dim=-1), _blockiness(x, dim=-2)]
        return base, torch.stack(extra, dim=1)

    def forward_sqrt(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] (H, W even) -> ``(B,)`` predicted ``sqrt(sigma)``."""
        h = F.pixel_unshuffle(x * 2.0 - 1.0, 2)  # (B, 12, H/2, W/2)
        h = self.body(h).mean(dim=(2, 3))  # (B, w3)
        if not self.cfg.classical_input:
            return F.softplus(self.head(h).squeeze(1))
        base, extra = self.features(x)
        return F.softplus(base + self.head(torch.cat([h, extra], dim=1)).squeeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> ``(B,)`` noise std on the 0-255 scale."""
        return self.forward_sqrt(x).square()


def _blockiness(x: torch.Tensor, dim: int) -> torch.Tensor:
    """log of (the largest of the 8 phases' mean step between neighbours along
    ``dim``) over (the mean step): about 0 without an 8-px grid, more with JPEG's."""
    step = (x.narrow(dim, 1, x.shape[dim] - 1) - x.narrow(dim, 0, x.shape[dim] - 1)).abs() * 255.0
    step = step.transpose(dim, -1).mean(dim=(1, 2))  # (B, L-1): the mean step at each position
    n = step.shape[-1] // 8 * 8
    phases = step[:, :n].reshape(len(step), -1, 8).mean(dim=1)  # (B, 8)
    return (phases.max(dim=1).values + 0.1).log() - (phases.mean(dim=1) + 0.1).log()


def patch_grid(height: int, width: int, patch: int, grid: int) -> list[tuple[int, int]]:
    """Top-left corners of at most ``grid`` x ``grid`` patches spread evenly
    over the image (fewer where the image is too small for them to differ)."""
    def starts(size: int) -> list[int]:
        n = max(1, min(grid, (size - patch) // (patch // 2) + 1))  # patches overlap by at most half
        return torch.linspace(0, size - patch, n).round().long().tolist()

    return [(y, x) for y in starts(height) for x in starts(width)]


@torch.no_grad()
def estimate_sigma_learned(image: torch.Tensor, net: SigmaNet) -> torch.Tensor:
    """Noise std of each image from :class:`SigmaNet`: a quantile
    (``net.cfg.quantile``) of its predictions on a fixed grid of patches.

    Args:
        image: ``(B, C, H, W)`` float in [0, 1]; C = 3 (RGB) or 1 (gray,
            read as 3 equal channels). An image smaller than a patch is
            padded by reflection (under 2 px: replicated).
        net: the estimator, on ``image``'s device (any dtype: it runs in fp32).

    Returns:
        ``(B,)`` float32 noise std on the 0-255 scale (0-75), on ``image``'s device.

    Example:
        >>> net = SigmaNet(SigmaNetConfig()).eval()  # trained: imgedit train sigma
        >>> estimate_sigma_learned(noisy, net)  # doctest: +SKIP
        tensor([14.8])
    """
    p, cfg = net.cfg.patch, net.cfg
    x = image.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    if h < p or w < p:
        pad_h, pad_w = max(0, p - h), max(0, p - w)
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        h, w = x.shape[-2:]
    corners = patch_grid(h, w, p, cfg.grid)
    patches = torch.stack([x[:, :, y : y + p, xx : xx + p] for y, xx in corners], dim=1)  # (B, N, 3, P, P)
    b, n = patches.shape[:2]
    weight = next(net.parameters())
    preds = net(patches.flatten(0, 1).to(weight.device, torch.float32)).view(b, n)  # (B, N)
    return preds.quantile(cfg.quantile, dim=1).clamp(0, SIGMA_RANGE).to(image.device)
