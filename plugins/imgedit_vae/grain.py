"""Grain for a fill: a learned fill is a smooth best guess, so on a grainy
or noisy photo the hole shows as a flat patch. ``inpaint grain=true`` adds
Gaussian noise of the level measured on the known pixels around the hole
(:func:`imgedit.noise.estimate_sigma_where`)."""

from __future__ import annotations

import numpy as np
import torch

from imgedit.noise import estimate_sigma_where


def grain_level(image: torch.Tensor, known: np.ndarray) -> torch.Tensor:
    """Noise std (0-255 scale) per channel ``(C,)`` of ``image`` ``(1, C, h, w)``
    in [0, 1], measured where the 3x3 neighbourhood is all ``known`` (``(h, w)`` bool)."""
    return estimate_sigma_where(image.float(), torch.from_numpy(known)).to(image.dtype)


def add_grain(fill: torch.Tensor, hole: torch.Tensor, level: torch.Tensor, seed: int, gray: bool) -> torch.Tensor:
    """``fill`` ``(1, C, h, w)`` with Gaussian noise of std ``level`` ``(C,)``
    (0-255) on the ``hole`` pixels (``(1, 1, h, w)`` bool); the same noise on
    every channel of a ``gray`` image. The noise comes from ``seed``: the same
    fill, the same grain."""
    generator = torch.Generator().manual_seed(seed)
    shape = (1, 1 if gray else fill.shape[1], *fill.shape[-2:])
    noise = torch.randn(shape, generator=generator).to(fill) * (level.mean() if gray else level).view(1, -1, 1, 1) / 255
    return torch.where(hole, (fill + noise).clamp(0, 1), fill)
