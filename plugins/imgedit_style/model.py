"""The fast style network: one painting's style, applied in one forward pass.

A small encoder-decoder after Johnson et al. (2016), made cheap enough for
a CPU: most of the work happens at 1/8 resolution.

- Encoder: three 3x3 stride-2 convolutions (3 -> 16 -> 32 -> 64 channels),
  each with instance norm and ReLU: 1/2, 1/4, 1/8 resolution.
- ``res_blocks`` residual blocks at 1/8 (conv-IN-ReLU-conv-IN plus identity).
- Decoder: 2x upsampling by resize-convolution (nearest neighbour, then a
  3x3 convolution: no row or column parity the network could exploit), IN,
  ReLU, with the encoder's activations of the same resolution added (U-Net
  style skips: edges survive the 1/8 bottleneck, so objects stay
  recognisable).
- Output: the photo plus a change: RGB from the 1/2-resolution features,
  upsampled bilinearly, plus a 3x3 convolution of the photo itself. Both
  start at zero, so an untrained network returns the photo and training
  starts from perfect content (it converges in far fewer steps than a
  network that must first learn to reproduce the photo). Clamped to [0, 1]
  with a straight-through gradient.

Reflect padding everywhere; the input's sides must be multiples of
``cfg.multiple`` (8), at least 16 px (the applier pads and crops back).
With the default config: 0.34 M parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class StyleNetConfig:
    """Attributes:
        widths: channels at 1/2, 1/4 and 1/8 resolution (one entry per downsampling).
        res_blocks: residual blocks at the lowest resolution.
        skips: add encoder activations to the decoder's (U-Net style).
    """

    widths: tuple[int, ...] = (16, 32, 64)
    res_blocks: int = 4
    skips: bool = True

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2 ** len(self.widths)

    @property
    def min_side(self) -> int:
        """Smallest input side (the lowest resolution must be at least 2 px for reflect padding)."""
        return 2 * self.multiple

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StyleNetConfig":
        return cls(**d)


def conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, padding_mode="reflect")


class ConvNormReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(conv(cin, cout, stride), nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(ConvNormReLU(width, width), conv(width, width), nn.InstanceNorm2d(width, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """2x upsampling by resize-convolution: nearest-neighbour, then a 3x3
    convolution (Odena et al. 2016). Sub-pixel convolution (``pixel_shuffle``)
    costs the same arithmetic but lets the network write different values on
    even and odd rows, and it did: trained against the random loss network it
    painted horizontal stripes on every photo, a cheap way to match the
    painting's high-frequency statistics."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class StyleNet(nn.Module):
    """``(B, 3, H, W)`` in [0, 1] -> stylised ``(B, 3, H, W)`` in [0, 1]; H and W multiples of ``cfg.multiple``."""

    def __init__(self, cfg: StyleNetConfig):
        super().__init__()
        self.cfg = cfg
        widths = (3, *cfg.widths)
        self.down = nn.ModuleList(ConvNormReLU(a, b, stride=2) for a, b in zip(widths, widths[1:]))
        self.res = nn.Sequential(*(ResBlock(widths[-1]) for _ in range(cfg.res_blocks)))
        # deepest first: 1/8 -> 1/4, 1/4 -> 1/2, each followed by IN and ReLU
        self.up = nn.ModuleList(Upsample(b, a) for a, b in reversed(list(zip(widths[1:-1], widths[2:]))))
        self.up_norm = nn.ModuleList(nn.InstanceNorm2d(a, affine=True) for a in reversed(widths[1:-1]))
        self.to_rgb = conv(widths[1], 3)  # the change to the photo, at 1/2 resolution
        self.from_photo = conv(3, 3)  # and at full resolution, from the photo's own pixels
        for layer in (self.to_rgb, self.from_photo):  # start as the identity: output = photo
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        photo = x
        x = photo * 2 - 1
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.res(x)
        for up, norm, skip in zip(self.up, self.up_norm, reversed(skips[:-1])):
            x = torch.relu(norm(up(x)))
            if self.cfg.skips:
                x = x + skip
        change = F.interpolate(self.to_rgb(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        out = photo + change + self.from_photo(photo * 2 - 1)
        # clamped to [0, 1], but with the gradient of the unclamped value (straight through):
        # the loss sees what users get, and pixels beyond the range still learn
        return out + (out.clamp(0, 1) - out).detach()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
