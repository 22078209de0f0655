"""A trained interpolation VAE as an :class:`imgedit.latents.LatentModel`:
load it (sha256 checked, nothing unpickled), encode images to the means of
their latents, decode latents, sample the prior with a seed.

Images of another size or shape are centre-cropped to a square and resized
to the model's size first (the model knows only its own framing: aligned
faces for ``faces64-vae``).
"""

from __future__ import annotations

from typing import Union

import torch

from imgedit.errors import ShapeError
from imgedit.latents import gaussian_latents
from imgedit.models import ModelSpec, load_model
from imgedit.tensor import center_square, check_image, check_unit_range
from imgedit_interp.model import FaceVAE, FaceVAEConfig




class VAELatentModel:
    """A :class:`FaceVAE` behind the latent-model protocol (see :mod:`imgedit.latents`).

        >>> vae = load_vae(CATALOG.shipped_spec(), "cpu")
        >>> z = vae.encode(faces)                  # (B, 256): the (whitened) means of q(z | x)
        >>> again = vae.decode(z)                  # (B, 3, 64, 64) in [0, 1]
    """

    gaussian = True

    def __init__(self, net: FaceVAE, device: Union[str, torch.device] = "cpu", name: str = ""):
        self.cfg: FaceVAEConfig = net.cfg
        self.device = torch.device(device)
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.name = name
        self.latent_shape = (self.cfg.z_dim,)
        self.image_size = (self.cfg.image_size, self.cfg.image_size)

    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        """``(n, z_dim)`` N(0, I) latents; the first k are those of ``sample_latents(k, seed)``."""
        return gaussian_latents(n, self.cfg.z_dim, seed, self.device)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """``(B, z_dim)`` -> ``(B, 3, S, S)`` in [0, 1], ``batch`` latents at a time."""
        if z.ndim != 2 or z.shape[1] != self.cfg.z_dim:
            raise ShapeError("latents", f"shape (B, {self.cfg.z_dim})", tuple(z.shape))
        if not len(z):  # z.split would give one empty chunk, which the decoder cannot reshape
            return torch.empty(0, 3, *self.image_size, device=self.device)
        parts = [self.net.decoder(self.net.unwhiten(chunk.to(self.device, torch.float32))) for chunk in z.split(batch)]
        return ((torch.cat(parts) + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [0, 1] -> the means of their latents ``(B, z_dim)``
        (whitened: see :class:`~imgedit_interp.model.FaceVAE`).

        Raises:
            ShapeError: ``images`` is not a float ``(B, 3, H, W)`` tensor with
                values in about [0, 1] (a 0-255 scale is refused: it would encode to nonsense).
        """
        check_image(images, "images")
        if images.shape[1] != 3:
            raise ShapeError("images", "3 channels (RGB)", images.shape[1])
        check_unit_range(images)
        x = center_square(images.to(self.device, torch.float32), self.cfg.image_size)
        parts = [self.net.whiten(self.net.encoder(chunk * 2 - 1)[0]) for chunk in x.split(batch)]
        return torch.cat(parts) if parts else torch.empty(0, self.cfg.z_dim, device=self.device)


def load_vae(spec: ModelSpec, device: Union[str, torch.device] = "cpu") -> VAELatentModel:
    """The VAE of ``spec`` on ``device``.

    Raises:
        WeightsError: the weights are missing (saying how to train them), do
            not verify against their card, or are not a FaceVAE's.
    """
    net = load_model(spec, lambda config: FaceVAE(FaceVAEConfig.from_dict(config)), train_verb="imgedit train interp-vae")
    return VAELatentModel(net, device, name=spec.name)
