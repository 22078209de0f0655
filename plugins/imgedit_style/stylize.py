"""The ``style`` operation's applier: a fast style network, or per-image
optimisation against any painting, plus what every user sees around them.

- ``scale``: the long side (px) the style is applied at. The photo is
  resized to it, stylised, and resized back, so brush strokes keep the size
  they have in the painting whatever the photo's resolution. ``auto`` = the
  photo's own size, at most :data:`AUTO_SCALE` px (512 for optimisation).
- The network needs sides that are multiples of 8: the photo is padded
  (replicating its border) and cropped back, so any size works.
- ``preserve_color``: the stylised luminance with the photo's chroma (BT.601
  YCbCr): only the painting's texture and tones are transferred.
- ``strength``: ``photo + strength * (stylised - photo)``; 0 returns the photo.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F

from imgedit.errors import ShapeError, UsageError
from imgedit.imageio import check_made_size
from imgedit.models import LoadedModels, ModelSpec, load_model
from imgedit.tensor import check_image, interpolate
from imgedit_style.catalog import ARCHITECTURE
from imgedit_style.model import StyleNet, StyleNetConfig

AUTO_SCALE = 1024  # fast network: apply the style at most at this long side under scale=auto
AUTO_SCALE_OPTIMISE = 512  # per-image optimisation is slower: at most this long side


_models = LoadedModels()  # per version of the file and device
logger = logging.getLogger("imgedit")


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> BT.601 YCbCr (Y in [0, 1], Cb and Cr centred on 0)."""
    r, g, b = image.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.stack([y, (b - y) * 0.564, (r - y) * 0.713], dim=1)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (not clamped)."""
    y, cb, cr = image.unbind(1)
    r = y + cr / 0.713
    b = y + cb / 0.564
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return torch.stack([r, g, b], dim=1)


def keep_colour(stylised: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """The stylised image's luminance with the photo's chroma, ``(B, 3, H, W)`` in [0, 1]."""
    ours = rgb_to_ycbcr(stylised)
    theirs = rgb_to_ycbcr(photo)
    return ycbcr_to_rgb(torch.cat([ours[:, :1], theirs[:, 1:]], dim=1)).clamp(0, 1)


def blend(stylised: torch.Tensor, photo: torch.Tensor, strength: float) -> torch.Tensor:
    """``photo + strength * (stylised - photo)``."""
    if strength >= 1:
        return stylised
    return (photo + strength * (stylised - photo)).clamp(0, 1)


def working_size(height: int, width: int, scale: Union[int, str, None], auto_max: int) -> tuple[int, int]:
    """The ``(H, W)`` the style is applied at: long side ``scale``, or under
    ``auto`` the photo's own size capped at ``auto_max``."""
    long_side = max(height, width)
    target = min(long_side, auto_max) if scale in (None, "auto", 0) else int(scale)
    if target == long_side:
        return height, width
    f = target / long_side
    size = max(1, round(height * f)), max(1, round(width * f))
    check_made_size(*size, f"the style's working image at scale={scale}")  # a 32 px photo at 16384 px: 268 MP
    return size


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area averaging when shrinking, bicubic when enlarging."""
    h, w = image.shape[-2:]
    if (h, w) == tuple(size):
        return image
    opencv = (image.device.type == "cpu" and image.dtype == torch.float32 and image.shape[1] <= 4
              and not image.requires_grad)  # no gradient through OpenCV
    if size[0] <= h and size[1] <= w:
        if opencv and h % size[0] == 0 and w % size[1] == 0:
            # Whole blocks: OpenCV's area average is torch's (to 1e-4 of a level) and 10x
            # faster (2048x1536 -> 1024x768: 8 against 76 ms of CPU). Between other sizes it
            # weighs a pixel two bins share by its share, where torch counts it whole in
            # both: up to 40 levels apart on a photo, so those stay with torch.
            return _opencv_resize(image, size, cubic=False)
        return interpolate(image, size, "area")
    if opencv:
        # OpenCV's cubic is torch's bicubic (a = -0.75, pixel centres, border replicated;
        # to 0.02 of a level) and 5x faster: 1024x768 -> 4000x3000 took 140 ms of CPU,
        # half of it faulting in the new image, where torch's took 690, more than the
        # style network itself.
        return _opencv_resize(image, size, cubic=True).clamp_(0, 1)
    return interpolate(image, size, "bicubic", align_corners=False).clamp(0, 1)


def _opencv_resize(image: torch.Tensor, size: tuple[int, int], cubic: bool) -> torch.Tensor:
    """CPU float32 ``(B, C, H, W)``, C <= 4, resized by OpenCV into torch's
    memory and, as torch does, in ``image``'s layout: (H, W, C) arrays for a
    channels-last view (the decoder's: read without a copy), planes otherwise."""
    import cv2

    b, c = image.shape[:2]
    h, w = size
    # Into torch.empty, not an array OpenCV makes: NumPy asks for huge pages, and
    # faulting fresh ones in cost 0.5-1 s of system time per 24 MP (here, once a
    # process). A network's planar output stays planar for the same reason: the
    # writer quantises a channels-last image into one full-size NumPy array.
    if image.is_contiguous(memory_format=torch.channels_last):
        sources, out = image.permute(0, 2, 3, 1), torch.empty(b, h, w, c)
        result = out.permute(0, 3, 1, 2)
    else:
        sources, out = image.reshape(b * c, *image.shape[-2:]), torch.empty(b * c, h, w)
        result = out.view(b, c, h, w)
    flag = cv2.INTER_CUBIC if cubic else cv2.INTER_AREA
    for x, o in zip(sources, out):
        cv2.resize(x.contiguous().numpy(), (w, h), dst=o.numpy(), interpolation=flag)
    return result


def run_network(net: StyleNet, image: torch.Tensor) -> torch.Tensor:
    """Any ``(B, 3, H, W)`` through ``net``: padded (border replicated) to its
    multiple and minimum side, cropped back."""
    cfg: StyleNetConfig = net.cfg
    h, w = image.shape[-2:]
    m = cfg.multiple
    ph, pw = max(-(-h // m) * m, cfg.min_side), max(-(-w // m) * m, cfg.min_side)
    top, left = (ph - h) // 2, (pw - w) // 2
    padded = F.pad(image, (left, pw - w - left, top, ph - h - top), mode="replicate") if (ph, pw) != (h, w) else image
    return net(padded)[..., top : top + h, left : left + w]


def load_style_net(spec: ModelSpec, device: Union[str, torch.device] = "cpu") -> StyleNet:
    """The style network of ``spec`` in eval mode on ``device`` (loaded once per version of the file and device).

    Raises:
        WeightsError: missing file or card, sha256 mismatch, or weights that do not fit.
    """
    def load() -> StyleNet:
        net = load_model(spec, lambda config: StyleNet(StyleNetConfig.from_dict(config)),
                         architecture=ARCHITECTURE, kind="a style network")
        return net.float().to(device).eval().requires_grad_(False)

    return _models.get(spec.weights, (str(torch.device(device)),), load)


def stylise(image: torch.Tensor, net: StyleNet, strength: float = 1.0, preserve_color: bool = False,
            scale: Union[int, str, None] = "auto") -> torch.Tensor:
    """Apply a fast style network to photos.

    Args:
        image: ``(B, 3, H, W)`` float RGB in [0, 1].
        net: from :func:`load_style_net` (or a trained :class:`StyleNet`), on ``image``'s device.
        strength: in [0, 1]; 0 returns ``image`` unchanged.
        preserve_color: keep the photo's chroma, take only the stylised luminance.
        scale: long side the style is applied at, or ``auto``.

    Returns:
        ``(B, 3, H, W)`` in [0, 1], same dtype and device as ``image``.

    Raises:
        ShapeError: ``image`` is not ``(B, 3, H, W)`` float.

    Example:
        >>> out = stylise(torch.rand(1, 3, 33, 47), StyleNet(StyleNetConfig()).eval(), strength=0.5)
        >>> out.shape
        torch.Size([1, 3, 33, 47])
    """
    check_rgb(image)
    if strength == 0:
        return image.clone()
    size = working_size(*image.shape[-2:], scale, AUTO_SCALE)
    with torch.no_grad():
        net_dtype = next(net.parameters()).dtype
        out = run_network(net, resize(image, size).to(net_dtype)).to(image.dtype)
    return finish(out, image, strength, preserve_color)


def finish(stylised: torch.Tensor, photo: torch.Tensor, strength: float, preserve_color: bool) -> torch.Tensor:
    """Back to the photo's size, then the colour and strength options."""
    out = resize(stylised, tuple(photo.shape[-2:]))
    if preserve_color:
        out = keep_colour(out, photo)
    return blend(out, photo, strength)


def check_rgb(image: torch.Tensor) -> None:
    check_image(image)
    if image.shape[1] != 3:
        raise ShapeError("style image", "3 channels (RGB)", image.shape[1])


def scaled_down_note(height: int, width: int, scale: Union[int, str, None], auto_max: int) -> str:
    """What to tell the user when ``scale=auto`` applies the style below the
    photo's own size (a soft result on a large photo): "" otherwise."""
    long_side = max(height, width)
    if scale not in (None, "auto", 0) or long_side <= auto_max:
        return ""
    return f"styled at {auto_max} px and scaled up to {long_side}: --scale {long_side} styles it at full size"


def _noted(applier: Any, note: str) -> Any:
    """A copy of ``applier`` saying ``note`` of the image it is prepared for."""
    prepared = copy.copy(applier)
    prepared.note = note
    return prepared


class FastStyleApplier:
    """The ``style`` applier with a trained network."""

    note = ""  # what prepare() found: the style applied below the photo's size

    def __init__(self, net: StyleNet, strength: float, preserve_color: bool, scale: Union[int, str, None]):
        self.net, self.strength, self.preserve_color, self.scale = net, strength, preserve_color, scale

    def prepare(self, image: torch.Tensor, mask: Optional[torch.Tensor] = None) -> "FastStyleApplier":
        return _noted(self, scaled_down_note(*image.shape[-2:], self.scale, AUTO_SCALE))

    def __call__(self, image: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return stylise(image, self.net, self.strength, self.preserve_color, self.scale)


class OptimisingApplier:
    """The ``style`` applier for ``style_image``: per-image optimisation with a progress bar."""

    note = ""  # as FastStyleApplier's

    def __init__(self, objective: Any, steps: int, strength: float, preserve_color: bool, scale: Union[int, str, None]):
        self.objective, self.steps = objective, steps
        self.strength, self.preserve_color, self.scale = strength, preserve_color, scale

    def prepare(self, image: torch.Tensor, mask: Optional[torch.Tensor] = None) -> "OptimisingApplier":
        return _noted(self, scaled_down_note(*image.shape[-2:], self.scale, AUTO_SCALE_OPTIMISE))

    def __call__(self, image: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        from tqdm import tqdm

        from imgedit.verbs import redraws_in_place
        from imgedit_style.optimize import optimise_image

        check_rgb(image)
        if self.strength == 0:
            return image.clone()
        work = resize(image, working_size(*image.shape[-2:], self.scale, AUTO_SCALE_OPTIMISE)).float()
        # -q sets the "imgedit" logger to errors only: the bar is not an error; and a bar is
        # for a terminal that redraws, not a log file or a service's stderr (where tqdm writes a line per redraw)
        quiet = not logging.getLogger("imgedit").isEnabledFor(logging.WARNING) or not redraws_in_place()
        with tqdm(total=self.steps, unit="step", desc="style", leave=False, dynamic_ncols=True, disable=quiet) as bar:
            def progress(step: int, losses: dict) -> None:
                bar.set_postfix(style=f"{losses['style']:.3f}", content=f"{losses['content']:.3f}")
                bar.update(1)

            with torch.enable_grad():
                out = optimise_image(work, self.objective, self.steps, on_step=progress)
        return finish(out.to(image.dtype), image, self.strength, self.preserve_color)


def read_style_image(path: Union[str, Path], size: int) -> torch.Tensor:
    """A painting as ``(1, 3, h, w)`` in [0, 1], its long side ``size`` px.

    Raises:
        UsageError: the file does not exist, is a folder or is not an image.
    """
    from imgedit.errors import ImageReadError
    from imgedit.imageio import read_image
    from imgedit.tensor import to_tensor
    from imgedit_style.optimize import resize_long_side

    from imgedit_style.operations import check_style_image

    path = Path(path).expanduser()
    check_style_image(path)
    try:
        picture = read_image(path)
    except ImageReadError as exc:
        raise UsageError(f"style image {path}: {exc}") from None
    _warn_if_poor_painting(path, picture, size)
    return resize_long_side(to_tensor(picture.rgb).contiguous(), size)


#: Enlarged more than this, a painting's brush strokes become the blur of its enlargement.
MAX_STYLE_ENLARGEMENT = 2.0
#: A painting with more of its pixels see-through than this gets a warning.
MAX_SEE_THROUGH = 0.01


def _warn_if_poor_painting(path: Path, picture: Any, size: int) -> None:
    """Warn of a painting the style would be learned badly from: one far smaller than
    ``size`` (its style would be the enlargement's blur) or one partly transparent
    (the colours hidden under its transparent pixels, often black, count as painting)."""
    long_side = max(picture.rgb.shape[:2])
    if size > MAX_STYLE_ENLARGEMENT * long_side:
        logger.warning("style image %s is only %d px on its long side: enlarged %.1fx to a style size of %d, its "
                       "strokes become blur; give a larger painting or --style-size (style_size=) %d or less",
                       path.name, long_side, size / long_side, size, int(MAX_STYLE_ENLARGEMENT * long_side))
    if picture.alpha is not None:
        see_through = float((picture.alpha < 1.0).mean())
        if see_through > MAX_SEE_THROUGH:
            logger.warning("style image %s is %.0f%% transparent: the colours hidden under its transparent "
                           "pixels are learned as painting; flatten it onto a background first",
                           path.name, 100 * see_through)


def create_style(context: Any = None, *, name: str = "", strength: float = 1.0, preserve_color: bool = False,
                 scale: Union[int, str, None] = "auto", style_image: str = "", steps: int = 300,
                 loss_net: str = "random", style_size: int = 512):
    """Build the ``style`` applier (models load here).

    Raises:
        UsageError: an unknown style name (listing the known ones), a missing
            style image, a bad option; WeightsError: weights that do not verify.
    """
    from imgedit_style.catalog import resolve_style

    device = getattr(context, "device", torch.device("cpu"))
    if not 0.0 <= float(strength) <= 1.0:
        raise UsageError(f"style: strength must be in [0, 1], got {strength}")
    if scale not in (None, "auto") and int(scale) < 16:
        raise UsageError(f"style: scale must be at least 16 px (or auto), got {scale}")
    if style_image:
        from imgedit_style.losses import StyleLossConfig
        from imgedit_style.lossnet import build_loss_net
        from imgedit_style.optimize import StyleObjective

        if name:  # as check_style_source says, for callers that skip it
            raise UsageError("style: give a trained style (--style NAME, name=) or a painting (--style-image FILE, "
                             "style_image=), not both")
        painting = read_style_image(style_image, style_size).to(device)
        objective = StyleObjective(build_loss_net(loss_net, device), painting, StyleLossConfig())
        return OptimisingApplier(objective, int(steps), float(strength), bool(preserve_color), scale)
    spec = resolve_style(name)
    return FastStyleApplier(load_style_net(spec, device), float(strength), bool(preserve_color), scale)
