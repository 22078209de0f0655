"""Grain for a fill: a learned fill is a smooth best guess, so on a grainy
or noisy photo the hole shows as a flat patch. ``inpaint grain=true`` adds
Gaussian noise of the level measured on the known pixels around the hole
(the classical estimate of :mod:`imgedit.noise`, restricted to them)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

EDGE_FRACTION = 0.1  # strongest gradients left out as edges and texture, as imgedit.noise does
MIN_PIXELS = 64  # fewer known pixels than this measure nothing: no grain


def grain_level(image: torch.Tensor, known: np.ndarray) -> torch.Tensor:
    """Noise std (0-255 scale) per channel ``(C,)`` of ``image`` ``(1, C, h, w)``
    in [0, 1], measured where the 3x3 neighbourhood is all ``known``
    (``(h, w)`` bool): Immerkaer's Laplacian residual, edges left out."""
    c = image.shape[1]
    if min(image.shape[-2:]) < 3:
        return image.new_zeros(c)
    work = image[0].float()[:, None] * 255.0  # (C, 1, h, w): each channel alone
    lap = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]).view(1, 1, 3, 3)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    residual = F.conv2d(work, lap.to(work)).abs()[:, 0]  # (C, h-2, w-2)
    grad = (F.conv2d(work, sobel.to(work)).abs() + F.conv2d(work, sobel.transpose(2, 3).to(work)).abs())[:, 0]
    whole = torch.from_numpy(known.astype(np.float32))[None, None].to(work)
    inside = (-F.max_pool2d(-whole, 3, stride=1))[0, 0] > 0.5  # (h-2, w-2): neighbourhood all known
    if int(inside.sum()) < MIN_PIXELS:
        return image.new_zeros(c)
    levels = []
    for r, g in zip(residual, grad):
        r, g = r[inside], g[inside]
        keep = g <= g.kthvalue(max(1, math.ceil((1 - EDGE_FRACTION) * g.numel()))).values
        levels.append(math.sqrt(math.pi / 2) * float(r[keep].mean()) / 6.0)
    return torch.tensor(levels, dtype=image.dtype, device=image.device)


def add_grain(fill: torch.Tensor, hole: torch.Tensor, level: torch.Tensor, seed: int, gray: bool) -> torch.Tensor:
    """``fill`` ``(1, C, h, w)`` with Gaussian noise of std ``level`` ``(C,)``
    (0-255) on the ``hole`` pixels (``(1, 1, h, w)`` bool); the same noise on
    every channel of a ``gray`` image. The noise comes from ``seed``: the same
    fill, the same grain."""
    generator = torch.Generator().manual_seed(seed)
    shape = (1, 1 if gray else fill.shape[1], *fill.shape[-2:])
    noise = torch.randn(shape, generator=generator).to(fill) * (level.mean() if gray else level).view(1, -1, 1, 1) / 255
    return torch.where(hole, (fill + noise).clamp(0, 1), fill)
