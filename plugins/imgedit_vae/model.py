"""The conditional VAEs behind imgedit's learned denoising and inpainting.

One small multi-scale U-Net, used by both tasks:

- the input image is pixel-unshuffled by 2 at once, so every convolution runs
  at half resolution or below (the shipped denoiser: 90 k multiply-adds per
  pixel, fast on a laptop CPU);
- the condition (a noise-level map for denoising, the hole mask for
  inpainting) enters as extra input planes;
- the bottleneck at 1/16 resolution is a Gaussian latent: the encoder gives
  its mean and log-variance, the decoder reads a sample during training and
  the mean at inference, so output is deterministic unless samples are asked
  for;
- skip connections are added (not concatenated), which keeps widths and cost
  low;
- the denoiser's latent collapses to the prior (measured: mean 0.001,
  log-variance 0.00 on Kodak; zeroing it changes no output), since the
  skips already carry all a deterministic task needs, so its deepest level
  reaches the decoder through a ``bridge`` (a 1x1 conv) beside the latent.

Modules and a config only: no I/O, no argument parsing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from imgedit.distributed import batch_draw


@dataclass
class VAEConfig:
    image_channels: int = 3
    cond_channels: int = 1  # noise-level map (denoise) or hole mask (inpaint)
    widths: tuple = (32, 64, 96, 128)  # at 1/2, 1/4, 1/8, 1/16 resolution
    blocks: tuple = (2, 2, 2, 2)  # residual blocks per level, in encoder and decoder each
    decoder_blocks: Optional[tuple] = None  # the decoder's, where they differ from ``blocks``
    latent_channels: int = 32
    residual: bool = True  # predict a correction added to the input image
    bridge: bool = False  # deepest encoder features to the decoder beside the latent (see the module docstring)

    @property
    def multiple(self) -> int:
        """Input height and width are padded to a multiple of this."""
        return 2 ** len(self.widths)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["blocks"] = list(self.widths), list(self.blocks)
        if self.decoder_blocks is None:  # cards of models without it stay as they were
            del d["decoder_blocks"]
        else:
            d["decoder_blocks"] = list(self.decoder_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        d = dict(d)
        d["widths"], d["blocks"] = tuple(d["widths"]), tuple(d["blocks"])
        if d.get("decoder_blocks") is not None:
            d["decoder_blocks"] = tuple(d["decoder_blocks"])
        return cls(**d)


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x), inplace=True))
        # Added into the convolution's own output: no new tensor, 8% of a
        # denoise on two AVX2 cores, the same bits. Under autocast x can be
        # float32 beside a bf16 y: then x + y, which keeps float32.
        return y.add_(x) if y.dtype == x.dtype else x + y


def _stage(width: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(width) for _ in range(n)])


class Encoder(nn.Module):
    """(B, 4*(C+K), H/2, W/2) -> features at each level (the skips, and the
    deepest level's last) and latent moments at the bottom."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        w = cfg.widths
        self.stem = nn.Conv2d(4 * (cfg.image_channels + cfg.cond_channels), w[0], 3, padding=1)
        self.stages = nn.ModuleList([_stage(w[i], cfg.blocks[i]) for i in range(len(w))])
        self.downs = nn.ModuleList([nn.Conv2d(w[i], w[i + 1], 2, stride=2) for i in range(len(w) - 1)])
        self.moments = nn.Conv2d(w[-1], 2 * cfg.latent_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        skips = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            skips.append(x)
            if i < len(self.downs):
                x = self.downs[i](F.relu(x))
        mean, logvar = self.moments(x).chunk(2, dim=1)
        return skips, mean, logvar.clamp(-30.0, 20.0)


class Decoder(nn.Module):
    """Latent (B, L, H/32, W/32) plus encoder skips -> (B, 4*C, H/2, W/2)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        w = cfg.widths
        self.inlet = nn.Conv2d(cfg.latent_channels, w[-1], 1)
        self.bridge = nn.Conv2d(w[-1], w[-1], 1) if cfg.bridge else None
        if self.bridge is not None:  # starts adding nothing: grown from bridgeless weights, the output is unchanged
            nn.init.zeros_(self.bridge.weight)
            nn.init.zeros_(self.bridge.bias)
        blocks = cfg.decoder_blocks or cfg.blocks
        self.stages = nn.ModuleList([_stage(w[i], blocks[i]) for i in range(len(w))])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in range(len(w) - 1)])
        self.head = nn.Conv2d(w[0], 4 * cfg.image_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.inlet(z)
        if self.bridge is not None:
            x = x + self.bridge(skips[-1])
        x = self.stages[-1](x)
        for i in reversed(range(len(self.ups))):
            x = self.ups[i](F.relu(x)) + skips[i]
            x = self.stages[i](x)
        return self.head(F.relu(x))


class ConditionalVAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        # Start as the identity (residual) / a grey fill: training begins from a sane output.
        nn.init.zeros_(self.decoder.head.weight)
        nn.init.zeros_(self.decoder.head.bias)

    def forward(
        self,
        image: torch.Tensor,
        cond: torch.Tensor,
        sample: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the VAE on any height and width.

        Args:
            image: ``(B, C, H, W)`` float in [0, 1] (noisy image, or image with holes zeroed).
            cond: ``(B, K, H, W)`` condition planes (noise level or hole mask).
            sample: draw the latent from the posterior instead of taking its mean.
            generator: random source for ``sample``.

        Returns:
            ``(out, mean, logvar)``: ``out`` is ``(B, C, H, W)``; the moments
            are ``(B, L, H', W')`` at 1/16 of the padded size.
        """
        h, w = image.shape[-2:]
        x = pad_to_multiple(torch.cat([image, cond], dim=1), self.cfg.multiple)
        skips, mean, logvar = self.encoder(F.pixel_unshuffle(x, 2))
        z = reparameterise(mean, logvar, generator) if sample else mean
        out = F.pixel_shuffle(self.decoder(z, skips), 2)[..., :h, :w]
        if self.cfg.residual:
            out = out + image
        return out, mean, logvar


class PosteriorEncoder(nn.Module):
    """What the complete image says about the hole: (image, mask) -> latent
    moments at 1/16 resolution. Used in training only (the decoder learns to
    read the latent); at inference the prior from the masked image stands in."""

    def __init__(self, cfg: VAEConfig, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(4 * (cfg.image_channels + cfg.cond_channels), width, 3, padding=1)]
        for _ in range(len(cfg.widths) - 1):
            layers += [nn.ReLU(inplace=True), nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)]
            width *= 2
        layers += [nn.ReLU(inplace=True), nn.Conv2d(width, 2 * cfg.latent_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)


class InpaintVAE(nn.Module):
    """Conditional VAE for inpainting with several plausible fills.

    The U-Net encoder sees the image with its holes blanked plus the mask,
    and gives the skips and the *prior* over the latent; a small posterior
    encoder sees the complete image (training only). Training decodes a
    posterior sample and pulls the prior towards the posterior (KL), so at
    inference prior samples give different plausible fills and the prior
    mean gives one deterministic fill. Known pixels are always copied back.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        if cfg.residual or cfg.cond_channels != 1:
            raise ValueError("InpaintVAE needs residual=False and cond_channels=1 (the mask)")
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.posterior = PosteriorEncoder(cfg)
        self.decoder = Decoder(cfg)

    def forward(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        latent: str = "mean",
        generator: Optional[torch.Generator] = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Fill the holes.

        Args:
            image: ``(B, C, H, W)`` in [0, 1]; hole pixels are ignored.
            mask: ``(B, 1, H, W)``, 1 = hole.
            latent: ``"mean"`` (the prior's mean: deterministic), ``"sample"``
                (a prior sample: another plausible fill) or ``"posterior"``
                (training: a sample given the complete image).
            generator: random source for the samples.

        Returns:
            ``(out, raw, moments)``: ``out`` has known pixels copied from
            ``image``; ``raw`` is the decoder's whole output (for losses);
            ``moments`` holds ``prior_mean``, ``prior_logvar`` and, for
            ``"posterior"``, ``post_mean`` and ``post_logvar``.
        """
        h, w = image.shape[-2:]
        known = image * (1 - mask)
        x = pad_to_multiple(torch.cat([known, mask], dim=1), self.cfg.multiple)
        skips, prior_mean, prior_logvar = self.encoder(F.pixel_unshuffle(x, 2))
        moments = {"prior_mean": prior_mean, "prior_logvar": prior_logvar}
        if latent == "posterior":
            full = pad_to_multiple(torch.cat([image, mask], dim=1), self.cfg.multiple)
            post_mean, post_logvar = self.posterior(F.pixel_unshuffle(full, 2))
            moments.update(post_mean=post_mean, post_logvar=post_logvar)
            z = reparameterise(post_mean, post_logvar, generator)
        elif latent == "sample":
            z = reparameterise(prior_mean, prior_logvar, generator)
        elif latent == "mean":
            z = prior_mean
        else:
            raise ValueError(f"latent must be mean, sample or posterior, got {latent!r}")
        raw = torch.sigmoid(F.pixel_shuffle(self.decoder(z, skips), 2)[..., :h, :w])
        return known + raw * mask, raw, moments


class PatchDiscriminator(nn.Module):
    """PatchGAN critic on (image, mask): one real/fake score per ~70-px patch,
    and its intermediate features (for feature matching, our stand-in for a
    perceptual loss: no pretrained network is available here)."""

    def __init__(self, channels: int = 4, width: int = 32, layers: int = 4):
        super().__init__()
        blocks, c_in = [], channels
        for i in range(layers):
            c_out = width * 2 ** min(i, 3)
            stride = 2 if i < layers - 1 else 1
            blocks.append(nn.Sequential(
                nn.utils.parametrizations.spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1)),
                nn.LeakyReLU(0.2, inplace=True),
            ))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.score = nn.Conv2d(c_in, 1, 3, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, features = torch.cat([image, mask], dim=1), []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return self.score(x), features


def kl_between(mean_q: torch.Tensor, logvar_q: torch.Tensor, mean_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_q, exp(logvar_q)) || N(mean_p, exp(logvar_p))), averaged over all latent elements."""
    return 0.5 * torch.mean(
        logvar_p - logvar_q + (logvar_q.exp() + (mean_q - mean_p).pow(2)) / logvar_p.exp() - 1.0
    )


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A sample of N(mean, exp(logvar)); the noise is drawn on the generator's
    device (a CPU generator can drive GPU training reproducibly)."""
    where = generator.device if generator is not None else mean.device
    # under data-parallel training: this process's rows of the global batch's noise
    noise = batch_draw(lambda shape: torch.randn(shape, generator=generator, device=where, dtype=mean.dtype),
                       mean.shape).to(mean.device)
    return mean + noise * torch.exp(0.5 * logvar)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), averaged over all latent elements."""
    return 0.5 * torch.mean(mean.pow(2) + logvar.exp() - 1.0 - logvar)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right to a multiple; mirror where the image is big enough, else repeat edges."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
