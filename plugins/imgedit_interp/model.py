"""The VAE behind ``faces64-vae``: one compact global latent per image
(256 numbers for a 64x64 face; 3.5 M parameters, 0.6 s per training step
of 32 faces on 2 CPU cores), so that walking between two latents morphs
one whole face into another instead of cross-fading pixels.

Encoder: a 3x3 stem, then one stride-2 4x4 convolution per halving down to
4x4 (channels double up to ``max_width``), and a linear layer to the mean and
log-variance of ``q(z | x)``. Decoder: a linear layer from ``z`` to 4x4
feature maps, then one stride-2 transposed convolution per doubling with a
residual 3x3 block at the low resolutions (8x8, 16x16), where most of the
multiply-adds go, and a 3x3 convolution to RGB. No normalisation layers, so
a single image encodes the same alone or in a batch.

Modules and a config only: no I/O, no argument parsing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from imgedit.distributed import batch_draw


@dataclass
class FaceVAEConfig:
    image_size: int = 64  # a power of two >= 8
    z_dim: int = 256
    width: int = 32  # channels at full resolution; x2 per halving, up to max_width
    max_width: int = 128
    res_levels: int = 2  # residual blocks at the first res_levels resolutions above 4x4 in the decoder

    @property
    def levels(self) -> int:
        """Halvings from ``image_size`` to 4x4."""
        levels = math.log2(self.image_size / 4)
        if self.image_size < 8 or levels != int(levels):
            raise ValueError(f"image_size must be a power of two >= 8, got {self.image_size}")
        return int(levels)

    def widths(self) -> list[int]:
        """Channels at each resolution, full size first, 4x4 last."""
        return [min(self.width * 2**i, self.max_width) for i in range(self.levels + 1)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FaceVAEConfig":
        return cls(**d)


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(nn.functional.silu(self.conv1(x)))


class Encoder(nn.Module):
    """``(B, 3, S, S)`` in [-1, 1] -> ``(mu, logvar)``, each ``(B, z_dim)``."""

    def __init__(self, cfg: FaceVAEConfig):
        super().__init__()
        widths = cfg.widths()
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1), nn.SiLU()]
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1] * 16, 2 * cfg.z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.features(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)


class Decoder(nn.Module):
    """``(B, z_dim)`` -> ``(B, 3, S, S)`` images in about [-1, 1] (not clamped)."""

    def __init__(self, cfg: FaceVAEConfig):
        super().__init__()
        widths = cfg.widths()[::-1]  # 4x4 first
        self.project = nn.Linear(cfg.z_dim, widths[0] * 16)
        layers: list[nn.Module] = []
        for level, (a, b) in enumerate(zip(widths, widths[1:])):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.SiLU()]
            if level < cfg.res_levels:
                layers.append(ResBlock(b))
        self.ups = nn.Sequential(*layers)
        self.to_rgb = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = nn.functional.silu(self.project(z)).view(z.shape[0], -1, 4, 4)
        return self.to_rgb(self.ups(x))


class FaceVAE(nn.Module):
    """Encoder, decoder, and the Gaussian the encoder's means actually follow.

    With the small KL weight that sharp reconstructions need, the means of
    ``q(z | x)`` over real faces are not N(0, I): decoding N(0, I) draws gives
    smudges. So at export the mean ``latent_mean`` and the Cholesky factor
    ``latent_scale`` of their covariance are measured on the training images
    (the "ex-post density estimate" of Ghosh et al., 2020), and the model's
    public latents are whitened: ``z = L^-1 (mu - m)``. Those are N(0, I) over
    real faces, so prior samples decode to faces and spherical walks stay
    among faces. While training, ``m = 0`` and ``L = I``.
    """

    def __init__(self, cfg: FaceVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("latent_mean", torch.zeros(cfg.z_dim))
        self.register_buffer("latent_scale", torch.eye(cfg.z_dim))

    def whiten(self, mu: torch.Tensor) -> torch.Tensor:
        """Encoder means ``(B, z_dim)`` -> public latents ``L^-1 (mu - m)``."""
        centred = (mu - self.latent_mean).T
        return torch.linalg.solve_triangular(self.latent_scale, centred, upper=False).T

    def unwhiten(self, z: torch.Tensor) -> torch.Tensor:
        """Public latents -> the decoder's ``m + L z``."""
        return self.latent_mean + z @ self.latent_scale.T

    @torch.no_grad()
    def fit_latent_prior(self, means: torch.Tensor) -> None:
        """Set ``latent_mean`` and ``latent_scale`` from encoder means ``(N, z_dim)`` of real images."""
        m = means.mean(dim=0)
        cov = torch.cov((means - m).T.double())
        cov += (1e-4 * cov.diagonal().mean() + 1e-8) * torch.eye(means.shape[1], dtype=torch.float64)  # keeps it invertible
        self.latent_mean.copy_(m)
        self.latent_scale.copy_(torch.linalg.cholesky(cov).float())

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Training pass: ``(reconstruction, mu, logvar)`` with ``z`` drawn from ``q(z | x)``."""
        mu, logvar = self.encoder(x)
        # under data-parallel training: this process's rows of the global batch's noise
        noise = batch_draw(lambda shape: torch.randn(shape, generator=generator), mu.shape).to(mu.device)
        z = mu + noise * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z | x) || N(0, I)) per image, summed over latent dimensions: ``(B,)``."""
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
