"""Style transfer by per-image optimisation (Gatys et al.): start from the
photo and change its pixels with Adam until its style statistics in the loss
network match the painting's while its content activations stay close to
the photo's. Any painting works, with no training, at the price of a few
hundred passes through the loss network (``--steps``).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from imgedit.tensor import interpolate
from imgedit_style.losses import StyleLossConfig, content_distance, content_scale, style_distance, style_targets, total_variation
from imgedit_style.lossnet import LossNet

DEFAULT_STEPS = 300
DEFAULT_LR = 0.03


def resize_long_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, H, W)`` resized so that its longer side is ``size`` px (area when shrinking, bicubic when enlarging)."""
    h, w = image.shape[-2:]
    if max(h, w) == size:
        return image
    scale = size / max(h, w)
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    mode = "area" if scale < 1 else "bicubic"
    out = interpolate(image, shape, mode, **({} if mode == "area" else {"align_corners": False}))
    return out.clamp(0, 1)


class StyleObjective:
    """The loss of one painting: ``objective(images, photos) -> {"loss", "style", "content", "tv"}``
    (means over the batch). The painting's statistics are computed once.

    Args:
        content_photos: photos whose content activations set the content
            loss's scale (see :mod:`imgedit_style.losses`); default: each
            call's own photos.
    """

    def __init__(self, net: LossNet, style_image: torch.Tensor, cfg: StyleLossConfig,
                 content_photos: Optional[torch.Tensor] = None):
        self.net, self.cfg = net, cfg
        with torch.no_grad():
            self.targets = style_targets(net(style_image, content=False).style, cfg)
            self.content_scale = None
            if content_photos is not None:
                self.content_scale = content_scale(net(content_photos, style=False).content, cfg)

    def __call__(self, images: torch.Tensor, photos: torch.Tensor,
                 photo_content: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        found = self.net(images)
        if photo_content is None:
            with torch.no_grad():
                photo_content = self.net(photos, style=False).content
        style = style_distance(found.style, self.targets, self.cfg).mean()
        content = content_distance(found.content, photo_content, self.cfg, self.content_scale).mean()
        tv = total_variation(images).mean()
        loss = self.cfg.style_weight * style + self.cfg.content_weight * content + self.cfg.tv_weight * tv
        return {"loss": loss, "style": style, "content": content, "tv": tv}


def optimise_image(photo: torch.Tensor, objective: StyleObjective, steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                   on_step: Optional[Callable[[int, dict], None]] = None) -> torch.Tensor:
    """Stylise ``photo`` ``(B, 3, H, W)`` in [0, 1] by optimising its pixels.

    Args:
        objective: the painting's :class:`StyleObjective`.
        steps: Adam steps (the learning rate decays to a tenth by the last).
        on_step: called after each step with ``(step, {"loss": ..., "style": ...})``.

    Returns:
        The stylised images, ``(B, 3, H, W)`` in [0, 1], detached.
    """
    photo = photo.detach()
    with torch.no_grad():
        photo_content = objective.net(photo, style=False).content
    x = photo.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.1 ** (s / max(steps, 1)))
    for step in range(1, steps + 1):
        losses = objective(x, photo, photo_content)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        if on_step is not None:
            on_step(step, {k: v.item() for k, v in losses.items()})
    return x.detach()
