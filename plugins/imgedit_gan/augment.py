"""Differentiable augmentation (DiffAugment; Zhao et al., NeurIPS 2020) for
training a GAN on a few thousand images.

The same random colour, translation and cutout are applied to every image
the discriminator sees, real or generated, and gradients flow through them
to the generator, so the discriminator cannot memorise the training set
while the generator still learns un-augmented images. Operates on images in
[-1, 1] like the networks; all randomness comes from the caller's
``torch.Generator`` (drawn on the CPU, so a resumed run repeats it exactly).

    >>> x = diff_augment(images, "color,translation,cutout", generator)   # (B, 3, H, W)
"""

from __future__ import annotations

from typing import Callable

import torch

from imgedit.distributed import batch_draw


def _uniform(n: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """(n, 1, 1, 1) uniform [0, 1) numbers on ``like``'s device and dtype."""
    return batch_draw(lambda shape: torch.rand(shape, generator=generator), (n, 1, 1, 1)).to(like.device, like.dtype)


def color(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0-2) and contrast (x0.5-1.5), per image."""
    n = x.shape[0]
    x = x + (_uniform(n, generator, x) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform(n, generator, x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(n, generator, x) + 0.5) + mean


def translation(x: torch.Tensor, generator: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y, filling with zeros."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = batch_draw(lambda shape: torch.randint(-sy, sy + 1, shape, generator=generator), (n, 1, 1)).to(x.device)
    dx = batch_draw(lambda shape: torch.randint(-sx, sx + 1, shape, generator=generator), (n, 1, 1)).to(x.device)
    # index into a copy padded by one zero pixel; out-of-range sources land on the padding
    ys = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)
    xs = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))  # (B, C, H+2, W+2)
    flat = (ys * (w + 2) + xs).view(n, 1, h * w).expand(-1, x.shape[1], -1)  # (B, C, H*W)
    return padded.flatten(2).gather(2, flat).view_as(x)


def cutout(x: torch.Tensor, generator: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random ``ratio``-sized square (clipped at the border) in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = batch_draw(lambda shape: torch.randint(0, h + (1 - ch % 2), shape, generator=generator), (n, 1, 1)).to(x.device)
    cx = batch_draw(lambda shape: torch.randint(0, w + (1 - cw % 2), shape, generator=generator), (n, 1, 1)).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch) & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def parse_policy(policy: str) -> list[str]:
    """``"color,translation"`` -> ``["color", "translation"]``; "" or "none" -> [].

    Raises:
        ValueError: an unknown augmentation name.
    """
    names = [p.strip() for p in policy.split(",") if p.strip() and p.strip() != "none"]
    unknown = [p for p in names if p not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; use some of {', '.join(AUGMENTATIONS)}")
    return names


def diff_augment(x: torch.Tensor, policy: str, generator: torch.Generator) -> torch.Tensor:
    """Apply the augmentations named in ``policy`` (comma-separated, in order) to ``x``."""
    for name in parse_policy(policy):
        x = AUGMENTATIONS[name](x, generator)
    return x
