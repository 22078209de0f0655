"""The loss networks: fixed convolutional networks whose activations define
"style" and "content". No pretraining is needed: the default is a network
with random weights drawn from a seed.

**The random network (the default, ``random``).** A VGG-shaped stack of
five stages, one 3x3 convolution each (``widths`` 64, 128, 256, 512, 512
channels), each followed by a ReLU, with 2x2 *average* pooling between
stages; weights He-normal from a ``torch.Generator`` seeded with ``seed``,
each filter made zero-mean, biases zero; reflect padding. Images are
centred and scaled, ``(x - 0.5) / 0.25``, as
:class:`imgedit.features.FeatureNet` does; images smaller than 32 px are
enlarged so that the deepest stage still sees 2x2 pixels. The style layers
are the ReLU of every stage (receptive fields 3, 8, 18, 38 and 78 px), the
content layer is the second. A seed is the whole network: the same seed
gives the same weights on every machine. About 65 k multiply-adds per pixel.

How it was chosen (per-image optimisation of one photo, kodim23 at 256 px,
starry night and mosaic at 256 px, 150 Adam steps; each result scored by
eye and by two *other* random networks, see ``DESIGN.md``):

- *zero-mean filters* are essential: without them the filters respond
  mostly to brightness, the photo already "matches" the painting (style
  loss 0.19 at the start instead of 10) and almost nothing is transferred;
- *average pooling* stylises more than max pooling (max: weaker texture,
  blotches);
- *one conv per stage* looks best: long, curved, painterly strokes; two
  per stage (the VGG habit) give speckled colour noise for 2.3x the cost;
  narrow stages (32-256 channels) are noisier still;
- a *fifth stage* adds the largest structures (the dark lead lines of
  mosaic) for 15% more time;
- *Gram matrices* beat per-channel mean and standard deviation (weaker
  transfer); the *softmax transform* of Wang et al. 2021 (see
  :mod:`imgedit_style.losses`) gave fine colour noise and kept the photo's
  colours; it helps networks with residual connections, which this one has
  none of. Both stay available as options.

**VGG16 / VGG19 (``vgg16``, ``vgg19``).** Built here layer for layer like
torchvision's ``vgg16().features`` / ``vgg19().features`` (so its state
dict keys ``features.N.weight`` / ``features.N.bias`` match), loaded from
torchvision's cache file ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``
(``vgg19-dcbb9e9d.pth``) with ``torch.load(weights_only=True)``; TORCH_HOME
defaults to ``~/.cache/torch`` (:func:`torch.hub.get_dir`). Nothing is
downloaded: a missing file is a :class:`~imgedit.errors.UsageError` saying
where it was looked for. torchvision itself is not needed. Layers: style
``relu1_2, relu2_2, relu3_3, relu4_3`` and content ``relu2_2`` for VGG16
(Johnson et al.), style ``relu1_1 ... relu5_1`` and content ``relu4_2`` for
VGG19 (Gatys et al.); ImageNet normalisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from imgedit.errors import UsageError

LOSS_NETS = ("random", "vgg16", "vgg19")
DEFAULT_SEED = 1

VGG_FILES = {"vgg16": "vgg16-397923af.pth", "vgg19": "vgg19-dcbb9e9d.pth"}
VGG_LAYOUTS = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
VGG_LAYERS = {  # (style layers, content layer)
    "vgg16": (("relu1_2", "relu2_2", "relu3_3", "relu4_3"), "relu2_2"),
    "vgg19": (("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), "relu4_2"),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class LossNetConfig:
    """Which loss network, and the recipe of a random one.

    Attributes:
        kind: ``random``, ``vgg16`` or ``vgg19``.
        seed: the random network's weights (ignored for VGG).
        widths: channels of each stage of the random network.
        convs: 3x3 convolutions per stage.
        kernel: their kernel size.
        pool: ``avg`` or ``max`` pooling between stages.
        zero_mean: make each random filter zero-mean.
        content_stage: 1-based stage whose output is the content layer.
    """

    kind: str = "random"
    seed: int = DEFAULT_SEED
    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    convs: int = 1
    kernel: int = 3
    pool: str = "avg"
    zero_mean: bool = True
    content_stage: int = 2

    def __post_init__(self) -> None:
        self.widths = tuple(self.widths)
        if self.kind not in LOSS_NETS:
            raise UsageError(f"unknown loss network '{self.kind}' (known: {', '.join(LOSS_NETS)})")
        if self.pool not in ("avg", "max"):
            raise UsageError(f"loss network pooling must be avg or max, got '{self.pool}'")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LossNetConfig":
        return cls(**d)

    def describe(self) -> str:
        """One line for model cards and reports."""
        if self.kind != "random":
            return f"{self.kind} (torchvision weights, ImageNet)"
        return (f"random seed {self.seed}: {len(self.widths)} stages x {self.convs} conv{self.kernel}x{self.kernel} "
                f"({'-'.join(map(str, self.widths))} ch), ReLU, {self.pool} pool, zero-mean He-normal filters")


@dataclass
class Features:
    """Activations of one pass: ``style`` (list, shallow to deep) and ``content``."""

    style: list[torch.Tensor] = field(default_factory=list)
    content: torch.Tensor = None  # type: ignore[assignment]


class LossNet(nn.Module):
    """A fixed network: ``(B, 3, H, W)`` in [0, 1] -> :class:`Features`.

    ``features`` is a plain ``nn.Sequential``; ``taps`` names the indices
    whose outputs are read. Parameters never require gradients, but
    gradients flow through to the input.

        >>> net = build_loss_net(LossNetConfig(seed=3))
        >>> f = net(torch.rand(1, 3, 64, 64))
        >>> [t.shape[1] for t in f.style]
        [64, 128, 256, 512, 512]
    """

    def __init__(self, features: nn.Sequential, taps: dict[str, int], style_layers: tuple[str, ...], content_layer: str,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.features = features
        self.taps, self.style_layers, self.content_layer = taps, tuple(style_layers), content_layer
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        pools = sum(isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)) for m in features)
        self.min_side = 2 ** (pools + 1)  # the deepest layer sees at least 2x2 pixels
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor, content: bool = True, style: bool = True) -> Features:
        if min(x.shape[-2:]) < self.min_side:  # tiny images are enlarged: every layer needs 2x2 pixels
            f = self.min_side / min(x.shape[-2:])
            x = F.interpolate(x, size=(max(self.min_side, round(x.shape[-2] * f)), max(self.min_side, round(x.shape[-1] * f))),
                              mode="bilinear", align_corners=False)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        by_index = {i: name for name, i in self.taps.items()}
        found: dict[str, torch.Tensor] = {}
        last = max(self.taps[n] for n in ((self.style_layers if style else ()) + ((self.content_layer,) if content else ())))
        for i, layer in enumerate(self.features[: last + 1]):
            x = layer(x)
            if i in by_index:
                found[by_index[i]] = x
        return Features([found[n] for n in self.style_layers] if style else [],
                        found.get(self.content_layer) if content else None)


def random_loss_net(cfg: LossNetConfig) -> LossNet:
    """The random network of ``cfg`` (see the module docstring)."""
    g = torch.Generator().manual_seed(cfg.seed)
    layers: list[nn.Module] = []
    taps: dict[str, int] = {}
    channels = 3
    for stage, width in enumerate(cfg.widths, start=1):
        if stage > 1:
            layers.append(nn.AvgPool2d(2) if cfg.pool == "avg" else nn.MaxPool2d(2))
        for _ in range(cfg.convs):
            conv = nn.Conv2d(channels, width, cfg.kernel, padding=cfg.kernel // 2, padding_mode="reflect")
            with torch.no_grad():
                w = torch.randn(conv.weight.shape, generator=g)
                if cfg.zero_mean:
                    w -= w.mean(dim=(1, 2, 3), keepdim=True)
                conv.weight.copy_(w * (2.0 / (channels * cfg.kernel**2)) ** 0.5)
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
            channels = width
        taps[f"stage{stage}"] = len(layers) - 1
    style = tuple(taps)
    content = f"stage{min(max(cfg.content_stage, 1), len(cfg.widths))}"
    return LossNet(nn.Sequential(*layers), taps, style, content, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def vgg_features(kind: str) -> tuple[nn.Sequential, dict[str, int]]:
    """torchvision's ``vgg16().features`` / ``vgg19().features`` layout, and
    the index of each ReLU by its usual name (``relu3_1``)."""
    layers: list[nn.Module] = []
    taps: dict[str, int] = {}
    channels, block, k = 3, 1, 0
    for v in VGG_LAYOUTS[kind]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            block, k = block + 1, 0
            continue
        layers += [nn.Conv2d(channels, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
        k += 1
        taps[f"relu{block}_{k}"] = len(layers) - 1
        channels = int(v)
    return nn.Sequential(*layers), taps


def vgg_weights_path(kind: str) -> Path:
    """Where torchvision keeps the ImageNet weights of ``kind``: ``$TORCH_HOME/hub/checkpoints/``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG_FILES[kind]


def require_vgg_file(kind: str) -> Path:
    """torchvision's weights file of ``kind`` in the local cache.

    Raises:
        UsageError: it is not there (saying where it was looked for).
    """
    path = vgg_weights_path(kind)
    if not path.is_file():
        raise UsageError(f"--loss-net {kind}: no torchvision weights at {path} (imgedit never downloads; "
                         "copy them there or set TORCH_HOME), or use --loss-net random")
    return path


def vgg_loss_net(kind: str) -> LossNet:
    """VGG16/19 with torchvision's ImageNet weights from the local cache (never downloaded).

    Raises:
        UsageError: the file is missing, unreadable, or not a VGG state dict.
    """
    path = require_vgg_file(kind)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors come in many types
        raise UsageError(f"--loss-net {kind}: cannot read {path}: {(str(exc).splitlines() or [type(exc).__name__])[0]}") from None
    features, taps = vgg_features(kind)
    prefix = "features."
    wanted = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} if isinstance(state, dict) else {}
    try:
        features.load_state_dict(wanted)
    except RuntimeError as exc:
        raise UsageError(f"--loss-net {kind}: {path} is not a torchvision {kind} state dict "
                         f"({str(exc).splitlines()[0]})") from None
    style, content = VGG_LAYERS[kind]
    return LossNet(features, taps, style, content, IMAGENET_MEAN, IMAGENET_STD)


def build_loss_net(cfg: Union[LossNetConfig, str, None] = None, device: Union[str, torch.device] = "cpu") -> LossNet:
    """The loss network of ``cfg`` (a config, or just its ``kind``) on ``device``.

    Raises:
        UsageError: an unknown kind, or VGG weights that are not in the local torch cache.
    """
    if cfg is None or isinstance(cfg, str):
        cfg = LossNetConfig(kind=cfg or "random")
    net = random_loss_net(cfg) if cfg.kind == "random" else vgg_loss_net(cfg.kind)
    return net.to(device)
