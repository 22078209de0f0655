"""The GAN behind ``faces64-gan``: a DCGAN-style generator and a spectrally
normalised discriminator, sized for CPUs.

Generator: ``z`` (128-d, N(0, I)) -> a linear layer to 4x4 feature maps, then
one stride-2 transposed convolution (4x4 kernel) per doubling, BatchNorm and
ReLU between them, tanh out. Channels halve as resolution doubles, so every
level costs about the same and the wide layers (and most parameters) sit at
4x4 and 8x8. Transposed convolutions need less than half the multiply-adds
of upsample + 3x3 convolution; at 64x64 with ``g_width=48`` the generator has
2.3 M parameters and about 60 M multiply-adds per image.

Discriminator: stride-2 4x4 convolutions with LeakyReLU(0.2) down to 4x4 and
a linear score, every layer spectrally normalised (no BatchNorm), for the
hinge loss.

Modules and a config only: no I/O, no argument parsing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass
class GANConfig:
    image_size: int = 64  # a power of two >= 8
    z_dim: int = 128
    g_width: int = 48  # generator channels before its RGB layer; x2 per halving of resolution
    d_width: int = 32  # discriminator channels after its first layer; x2 per halving

    @property
    def levels(self) -> int:
        """Doublings from 4x4 to ``image_size``."""
        levels = math.log2(self.image_size / 4)
        if self.image_size < 8 or levels != int(levels):
            raise ValueError(f"image_size must be a power of two >= 8, got {self.image_size}")
        return int(levels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GANConfig":
        return cls(**d)


class Generator(nn.Module):
    """``(B, z_dim)`` latents -> ``(B, 3, S, S)`` images in [-1, 1]."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        width = cfg.g_width * 2 ** (cfg.levels - 1)  # at 4x4
        self.project = nn.Linear(cfg.z_dim, width * 16, bias=False)
        self.project_norm = nn.BatchNorm2d(width)
        ups = []
        for _ in range(cfg.levels - 1):
            ups += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(inplace=True)]
            width //= 2
        self.ups = nn.Sequential(*ups)
        self.to_rgb = nn.ConvTranspose2d(width, 3, 4, 2, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).unflatten(1, (-1, 4, 4))  # (B, C, 4, 4); view(B, -1, ...) fails for B = 0
        x = torch.relu(self.project_norm(x))
        x = self.ups(x)  # (B, g_width, S/2, S/2)
        return torch.tanh(self.to_rgb(x))  # (B, 3, S, S)


class Discriminator(nn.Module):
    """``(B, 3, S, S)`` images in [-1, 1] -> ``(B,)`` realness scores."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        layers, channels, width = [], 3, cfg.d_width
        for _ in range(cfg.levels):
            layers += [spectral_norm(nn.Conv2d(channels, width, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
            channels, width = width, width * 2
        self.features = nn.Sequential(*layers)
        self.score = spectral_norm(nn.Linear(channels * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(x).flatten(1)).squeeze(1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
