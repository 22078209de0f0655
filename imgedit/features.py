"""A fixed random feature network: a way to measure how far apart two images
(or two sets of images) look without a pretrained network, which is not
available offline. Used by ``imgedit eval gan`` (KID, diversity) and
``imgedit eval interp`` (the step between morph frames, the distance of a
frame to the nearest real face).

:class:`FeatureNet`: a CNN with random weights (He-normal from a
``torch.Generator`` seeded with :data:`FEATURE_SEED`, zero biases): images
resized to 64x64 (bilinear, antialiased), scaled to ``(x - 0.5) / 0.25``,
then conv3x3(3->32), ReLU, avgpool2, conv3x3(32->64), ReLU, avgpool2,
conv3x3(64->128), ReLU, avgpool2, conv3x3(128->128), ReLU, adaptive average
pool to 2x2. The features are the channel means after each of the first
three convolutions (texture statistics at three scales) and the 2x2 pooled
last layer (coarse layout): 32 + 64 + 128 + 512 = 736 numbers.

:func:`ensemble_features`: the same images under several such networks
drawn with other seeds (:data:`ENSEMBLE_SEEDS`), each scaled to count
equally: a distance between its rows estimates the distance expected from
a random network of this kind rather than one draw's. ``imgedit
interpolate`` paces its frames by it; :data:`FEATURE_SEED` is left out, so
the network that judges the frames in ``imgedit eval interp`` is not one
that placed them.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from imgedit.tensor import interpolate

__all__ = ["ENSEMBLE_SEEDS", "FEATURE_SEED", "FeatureNet", "ensemble_features", "features"]

FEATURE_SEED = 20240601
ENSEMBLE_SEEDS = tuple(range(1, 9))  # never FEATURE_SEED (see the module docstring)


class FeatureNet(nn.Module):
    """The fixed random CNN described in the module docstring: ``(B, 3, H, W)`` in [0, 1] -> ``(B, 736)``."""

    def __init__(self, seed: int = FEATURE_SEED):
        super().__init__()
        widths = [3, 32, 64, 128, 128]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:]))
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for conv in self.convs:
                fan_in = conv.in_channels * 9
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                conv.bias.zero_()
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (64, 64):
            x = interpolate(x, (64, 64), "bilinear", antialias=True, align_corners=False)
        x = (x - 0.5) / 0.25
        found = []
        for conv in self.convs[:-1]:
            x = torch.relu(conv(x))
            found.append(x.mean(dim=(2, 3)))  # texture statistics at this scale
            x = F.avg_pool2d(x, 2)
        x = torch.relu(self.convs[-1](x))
        found.append(F.adaptive_avg_pool2d(x, 2).flatten(1))  # coarse layout
        return torch.cat(found, dim=1)


@torch.no_grad()
def features(images: torch.Tensor, net: Optional[FeatureNet] = None, batch: int = 256) -> torch.Tensor:
    """``(N, 736)`` :class:`FeatureNet` features, on the CPU, ``batch`` images at a time."""
    net = net or FeatureNet()
    return torch.cat([net(chunk.float().cpu()) for chunk in images.split(batch)])


@functools.lru_cache(maxsize=4)
def _ensemble(seeds: tuple[int, ...], device: str) -> list[FeatureNet]:
    return [FeatureNet(seed).to(device) for seed in seeds]


@torch.no_grad()
def ensemble_features(images: torch.Tensor, seeds: tuple[int, ...] = ENSEMBLE_SEEDS, batch: int = 256) -> torch.Tensor:
    """``(N, 736 * len(seeds))``: :class:`FeatureNet` features of ``images``
    ``(N, 3, H, W)`` in [0, 1] under each seed's network, on the images' device.

    Each network's block is divided by its mean row norm over these images,
    so each counts equally in a distance between rows (the scale is relative
    to this batch: compare rows of one call only).

    Example:
        >>> ensemble_features(torch.rand(5, 3, 32, 32), seeds=(1, 2)).shape
        torch.Size([5, 1472])
    """
    blocks = []
    for net in _ensemble(tuple(seeds), str(images.device)):
        f = torch.cat([net(chunk.float()) for chunk in images.split(batch)])
        blocks.append(f / f.norm(dim=1).mean().clamp_min(1e-12))
    return torch.cat(blocks, dim=1)
