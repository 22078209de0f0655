"""Style and content losses on a loss network's activations.

- **Style statistics** of one layer ``F`` ``(B, C, H, W)``: the Gram matrix
  ``F F^T / (H W)`` (``(B, C, C)``, Gatys et al.), or the per-channel mean
  and standard deviation (``(B, 2C)``, as AdaIN matches them), or both.
  Optionally the activations first go through a softmax over channels at
  every pixel (``softmax``: the activation smoothing of Wang, Li &
  Vasconcelos 2021; over channels rather than over the whole map so that
  the statistic does not depend on the image size).
- **Style distance** between an image and a style: for each style layer the
  squared error of the statistics *relative to the style's own*,
  ``||S(x) - S(s)||^2 / ||S(s)||^2``, averaged over layers. Relative errors
  make layers of very different activation scales (a random network has no
  trained balance between them) weigh alike, and give a number that reads
  the same for any network: 0 = identical statistics, 1 = as far as a blank
  image. ``imgedit eval style`` measures it with a network of another seed.
- **Content loss**: the mean squared error of the content layer's
  activations, relative to a scale: the mean square of typical photos'
  activations (training: the whole preview photos, fixed for the run; one
  photo's optimisation: that photo's own). Never the crop's own: a flat crop
  of sky has almost none, and the ratio would explode.
- **Total variation**: mean absolute difference of neighbouring pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch

from imgedit.errors import UsageError

STATISTICS = ("gram", "meanstd", "both")


@dataclass
class StyleLossConfig:
    """Attributes:
        statistic: ``gram``, ``meanstd`` or ``both``.
        softmax: softmax over channels before the statistics (and the content loss).
        temperature: of that softmax.
        style_weight, content_weight, tv_weight: the weights of the three terms.
    """

    statistic: str = "gram"
    softmax: bool = False
    temperature: float = 1.0
    style_weight: float = 1.0
    content_weight: float = 0.5
    tv_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise UsageError(f"unknown style statistic '{self.statistic}' (known: {', '.join(STATISTICS)})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StyleLossConfig":
        return cls(**d)


def smooth(features: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax over channels at every pixel: ``(B, C, H, W)`` -> same shape, rows summing to 1."""
    return torch.softmax(features / temperature, dim=1)


def gram(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, C)``: channel correlations averaged over pixels."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (h * w)


def mean_std(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, 2C)``: each channel's mean, then its standard deviation."""
    f = features.flatten(2)
    return torch.cat([f.mean(dim=2), (f.var(dim=2, unbiased=False) + 1e-8).sqrt()], dim=1)


def statistics(features: torch.Tensor, cfg: StyleLossConfig) -> list[torch.Tensor]:
    """The style statistics of one layer, each flattened to ``(B, N)``."""
    if cfg.softmax:
        features = smooth(features, cfg.temperature)
    out = []
    if cfg.statistic in ("gram", "both"):
        out.append(gram(features).flatten(1))
    if cfg.statistic in ("meanstd", "both"):
        out.append(mean_std(features))
    return out


def style_targets(layers: list[torch.Tensor], cfg: StyleLossConfig) -> list[torch.Tensor]:
    """The statistics of a style image's layers, averaged over its batch: ``(1, N)`` each, no gradient."""
    return [s.mean(dim=0, keepdim=True).detach() for f in layers for s in statistics(f, cfg)]


def style_distance(layers: list[torch.Tensor], targets: list[torch.Tensor], cfg: StyleLossConfig) -> torch.Tensor:
    """Per image ``(B,)``: the mean over layers (and statistics) of the relative squared error."""
    found = [s for f in layers for s in statistics(f, cfg)]
    terms = [(s - t).square().sum(dim=1) / t.square().sum().clamp_min(1e-12) for s, t in zip(found, targets)]
    return torch.stack(terms).mean(dim=0)


def content_scale(target: torch.Tensor, cfg: StyleLossConfig) -> torch.Tensor:
    """The mean square of content activations ``target`` (as :func:`content_distance` compares them)."""
    if cfg.softmax:
        target = smooth(target, cfg.temperature)
    return target.detach().square().mean().clamp_min(1e-6)


def content_distance(features: torch.Tensor, target: torch.Tensor, cfg: StyleLossConfig,
                     scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per image ``(B,)``: content-layer MSE relative to ``scale`` (default: the target's mean square)."""
    if scale is None:
        scale = content_scale(target, cfg)
    if cfg.softmax:
        features, target = smooth(features, cfg.temperature), smooth(target, cfg.temperature)
    return (features - target.detach()).square().mean(dim=(1, 2, 3)) / scale


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Per image ``(B,)``: mean absolute difference of horizontal and vertical neighbours."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return dx + dy


def check_weights(cfg: StyleLossConfig) -> None:
    """Raises UsageError for negative weights."""
    for name in ("style_weight", "content_weight", "tv_weight"):
        if getattr(cfg, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
