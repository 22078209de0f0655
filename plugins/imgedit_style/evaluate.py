"""How good is a style network? The figures of ``imgedit eval style``.

- **Style distance** (:func:`imgedit_style.losses.style_distance`: relative
  Gram error, averaged over layers) between a stylised photo and the
  painting, measured with a random loss network of seed :data:`EVAL_SEED`,
  *not* the seed the network was trained with, so the figure is not the
  training loss. The painting is seen at the size it was trained at (the
  card's ``style_size``).
- **Ratio to optimisation**: the same distance for the photo stylised by
  per-image optimisation (:mod:`imgedit_style.optimize`, the training
  recipe's loss network, ``steps`` steps), and fast / optimised. The target
  is at most 1.5.
- **Content kept**: SSIM between the blurred luminance of the photo and of
  the stylised photo (Gaussian blur, sigma :data:`BLUR_SIGMA` px at the
  evaluated size, then SSIM with the usual 11-tap sigma-1.5 window): the
  brush texture is blurred away, the layout of light and dark stays. 1 =
  the same structure; around 0.3 objects become hard to recognise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from imgedit.tensor import interpolate
from imgedit_style.losses import StyleLossConfig, style_distance, style_targets
from imgedit_style.lossnet import LossNetConfig, build_loss_net

EVAL_SEED = 20240917  # the measuring network's seed: never used for training
BLUR_SIGMA = 2.0


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)``, reflect padding."""
    k = gaussian_kernel(sigma).to(image)
    c, r = image.shape[1], (len(k) - 1) // 2
    x = F.pad(image, (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    x = F.pad(x, (0, 0, r, r), mode="replicate")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` BT.601 luma."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return (image * weights).sum(1, keepdim=True)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image ``(B,)`` SSIM of one-channel images in [0, 1] (Gaussian window, sigma 1.5)."""
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a, 1.5), blur(b, 1.5)
    var_a = blur(a * a, 1.5) - mu_a**2
    var_b = blur(b * b, 1.5) - mu_b**2
    cov = blur(a * b, 1.5) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3))


def structure_kept(photo: torch.Tensor, stylised: torch.Tensor, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Per image ``(B,)``: SSIM of the blurred luminances (see the module docstring)."""
    return ssim(blur(luminance(photo), sigma), blur(luminance(stylised), sigma))


class StyleMeter:
    """Style distance to one painting, measured by a network of another seed."""

    def __init__(self, painting: torch.Tensor, recipe: Optional[LossNetConfig] = None, seed: int = EVAL_SEED):
        base = recipe.to_dict() if recipe is not None and recipe.kind == "random" else {}
        self.net = build_loss_net(LossNetConfig(**{**base, "seed": seed}))
        self.cfg = StyleLossConfig()
        with torch.no_grad():
            self.targets = style_targets(self.net(painting.float().cpu(), content=False).style, self.cfg)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return style_distance(self.net(images.float().cpu(), content=False).style, self.targets, self.cfg)


@dataclass
class StyleResult:
    style: str
    photo: str
    fast_distance: float
    optimised_distance: Optional[float]
    fast_ssim: float
    optimised_ssim: Optional[float]

    @property
    def ratio(self) -> Optional[float]:
        if self.optimised_distance is None:
            return None
        return self.fast_distance / max(self.optimised_distance, 1e-12)


def summarise(results: list[StyleResult]) -> dict:
    """Means over photos, per style."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r.style for r in results):
        rows = [r for r in results if r.style == name]
        mean = lambda xs: round(sum(xs) / len(xs), 4) if xs and None not in xs else None  # noqa: E731
        out[name] = {
            "photos": len(rows),
            "fast_distance": mean([r.fast_distance for r in rows]),
            "optimised_distance": mean([r.optimised_distance for r in rows]),
            "ratio": mean([r.ratio for r in rows]),
            "fast_ssim": mean([r.fast_ssim for r in rows]),
            "optimised_ssim": mean([r.optimised_ssim for r in rows]),
        }
    return out


def fit_cell(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centre-crop ``(1, 3, H, W)`` to the cell's aspect ratio and resize it to ``(height, width)``."""
    h, w = image.shape[-2:]
    if h * width > w * height:  # too tall
        ch = round(w * height / width)
        image = image[..., (h - ch) // 2 : (h - ch) // 2 + ch, :]
    else:
        cw = round(h * width / height)
        image = image[..., :, (w - cw) // 2 : (w - cw) // 2 + cw]
    return interpolate(image, (height, width), "area" if image.shape[-1] >= width else "bicubic").clamp(0, 1)
