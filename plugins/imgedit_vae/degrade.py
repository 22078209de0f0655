"""Synthetic degradations for training and evaluation: Gaussian noise at a
given level, optionally clipped and quantised as a saved file would be."""

from __future__ import annotations

from typing import Optional

import torch


def is_gray(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B,) bool: all channels equal (always, for one channel)."""
    if images.shape[1] == 1:
        return torch.ones(images.shape[0], dtype=torch.bool, device=images.device)
    return (images[:, 0] == images[:, 1]).flatten(1).all(1) & (images[:, 1] == images[:, 2]).flatten(1).all(1)


def add_gaussian_noise(
    clean: torch.Tensor,
    sigma: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    clip: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Add N(0, (sigma/255)^2) noise, per image.

    Grayscale images (equal channels) get the same noise on every channel,
    as a one-channel file would. Images selected by ``clip`` are clipped to
    [0, 1] and rounded to 8 bits afterwards, as a noisy file on disk is.

    Args:
        clean: ``(B, C, H, W)`` in [0, 1], C = 3 or 1.
        sigma: ``(B,)`` noise std on the 0-255 scale.
        generator: random source (CPU); the noise is drawn there and moved.
        clip: ``(B,)`` bool, which images to clip and quantise (default none).

    Returns:
        ``(B, C, H, W)`` noisy images, same device and dtype as ``clean``.
    """
    where = generator.device if generator is not None else clean.device
    noise = torch.randn(clean.shape, generator=generator, device=where).to(clean.device, clean.dtype)
    gray = is_gray(clean)
    noise = torch.where(gray[:, None, None, None], noise[:, :1].expand_as(noise), noise)
    noisy = clean + noise * (sigma.to(clean.device, clean.dtype) / 255.0)[:, None, None, None]
    if clip is not None:
        quantised = noisy.clamp(0, 1).mul(255).round().div(255)
        noisy = torch.where(clip.to(clean.device)[:, None, None, None], quantised, noisy)
    return noisy

