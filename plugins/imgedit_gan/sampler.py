"""A trained generator as an :class:`imgedit.latents.LatentModel`: load it
(sha256 checked, nothing unpickled), sample with a seed and a truncation,
decode latents, and encode images by inverting the generator.

Sampling: image ``i`` of seed ``s`` is the same whatever ``n`` is, to the
bit (latent ``i`` is the ``i``-th draw of a ``torch.Generator`` seeded with
``s``, on the CPU, and it is always decoded in the same batch of
:data:`DECODE_CHUNK` latents: a kernel's rounding depends on the batch size,
so ``n`` is rounded up to whole chunks with the seed's next latents).
Truncation ``t`` in [0, 1] scales the latents toward the mean latent
(0): ``z * t``. ``t = 1`` is the full distribution; 0.5-0.8 trade variety
for typical, cleaner images. This generator has no mapping network, so the
mean latent is no "mean face": latents that short lie far from any it was
trained on (a N(0, I) latent of 128 values is about 11 long), and below about
0.4 the faces fade into one flat brown tile, which ``t = 0`` gives for every
seed.

Inversion (``encode``): the generator has no encoder, so each image's latent
is found by optimisation: start from the best of a few fixed candidates (the
mean latent and 15 random ones), then a few hundred Adam steps on the pixel
L1 + L2 loss; ``last_inversion_psnr`` reports how close each reconstruction
came (dB). Images of another size are cut to their centred square and
resized to the model's first, as the face VAE takes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

from imgedit.errors import ShapeError
from imgedit.latents import check_truncation, gaussian_latents
from imgedit.models import ModelSpec, load_model
from imgedit.tensor import center_square, check_image, check_unit_range, grid
from imgedit_gan.catalog import CATALOG
from imgedit_gan.model import GANConfig, Generator

INVERSION_SEED = 7  # candidate starting latents for encode()
DECODE_CHUNK = 64  # latents per forward pass, always (as fast as 256 on a CPU; see the module docstring)


def whole_chunks(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`DECODE_CHUNK`: how many latents to draw for ``n`` exact images."""
    return -(-n // DECODE_CHUNK) * DECODE_CHUNK


class GANSampler:
    """A generator behind the latent-model protocol (see :mod:`imgedit.latents`).

        >>> gan = load_gan(CATALOG.shipped_spec(), "cpu")
        >>> faces = gan.sample(16, seed=0, truncation=0.7)        # (16, 3, 64, 64) in [0, 1]
        >>> z = gan.encode(faces[:2])                             # (2, 128); gan.last_inversion_psnr
    """

    gaussian = True
    inversion_steps = 300  # Adam steps of encode(): what a progress bar of it counts to

    def __init__(self, net: Generator, device: Union[str, torch.device] = "cpu", name: str = ""):
        self.cfg: GANConfig = net.cfg
        self.device = torch.device(device)
        # channels-last: ~40% more images per second from a CPU
        self.net = net.to(self.device, memory_format=torch.channels_last).eval().requires_grad_(False)
        self.name = name
        self.latent_shape = (self.cfg.z_dim,)
        self.image_size = (self.cfg.image_size, self.cfg.image_size)
        self.last_inversion_psnr: Optional[torch.Tensor] = None
        self.last_inversion_error: Optional[torch.Tensor] = None

    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        """``(n, z_dim)`` N(0, I) latents; the first k are those of ``sample_latents(k, seed)``."""
        return gaussian_latents(n, self.cfg.z_dim, seed, self.device)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, z_dim)`` -> ``(B, 3, S, S)`` in [0, 1] (``B`` may be 0).

        :data:`DECODE_CHUNK` latents at a time, the last chunk padded with
        zeros: latent ``i`` goes through a batch of the same size and place
        whatever ``B`` is.
        """
        if z.ndim != 2 or z.shape[1] != self.cfg.z_dim:
            raise ShapeError("latents", f"shape (B, {self.cfg.z_dim})", tuple(z.shape))
        out = torch.empty(len(z), 3, *self.image_size, device=self.device)
        for start in range(0, len(z), DECODE_CHUNK):
            chunk = z[start : start + DECODE_CHUNK].to(self.device, torch.float32)
            padded = F.pad(chunk, (0, 0, 0, DECODE_CHUNK - len(chunk)))  # (DECODE_CHUNK, z_dim)
            out[start : start + len(chunk)] = self.net(padded)[: len(chunk)]
        return ((out + 1) / 2).clamp(0, 1)

    def sample(self, n: int, seed: int = 0, truncation: float = 1.0) -> torch.Tensor:
        """``n`` images ``(n, 3, S, S)`` in [0, 1]; see the module docstring for ``truncation``.

        Raises:
            UsageError: ``truncation`` outside [0, 1].
        """
        z = self.sample_latents(whole_chunks(n), seed) * check_truncation(truncation)  # the seed's next latents as padding
        return self.decode(z)[:n]

    def encode(self, images: torch.Tensor, steps: Optional[int] = None, lr: float = 0.05, candidates: int = 16,
               on_step: Optional[Callable[[int], None]] = None) -> torch.Tensor:
        """Latents whose decodings are closest to ``images`` ``(B, 3, H, W)`` in [0, 1] (by optimisation).

        ``steps`` defaults to :attr:`inversion_steps`; ``on_step(1)`` is called
        after each (a progress bar: inverting takes seconds per image). Sets ``last_inversion_psnr`` (dB) and ``last_inversion_error`` (mean
        absolute error, 0-1 scale), one value per image.

        Raises:
            ShapeError: ``images`` is not a float ``(B, 3, H, W)`` tensor with
                values in about [0, 1] (a 0-255 scale is refused: it would invert to nonsense).
        """
        check_image(images, "images")
        if images.shape[1] != 3:
            raise ShapeError("images", "3 channels (RGB)", images.shape[1])
        check_unit_range(images)
        if not len(images):  # nothing to invert (the generator cannot run on an empty batch)
            self.last_inversion_psnr = self.last_inversion_error = torch.empty(0, device=self.device)
            return torch.empty(0, self.cfg.z_dim, device=self.device)
        target = images.to(self.device, torch.float32)
        if tuple(target.shape[-2:]) != self.image_size:  # as the face VAE takes them: a wide photo is not squashed
            target = center_square(target, self.image_size[0])
        target = target * 2 - 1  # the generator's range
        z = self._starting_latents(target, candidates).requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=lr)
        with torch.enable_grad():
            for _ in range(self.inversion_steps if steps is None else steps):
                diff = self.net(z) - target
                loss = (diff.abs().mean(dim=(1, 2, 3)) + diff.square().mean(dim=(1, 2, 3))).sum()  # per image
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if on_step is not None:
                    on_step(1)
        z = z.detach()
        error = (self.decode(z) - (target + 1) / 2).abs()
        mse = error.square().mean(dim=(1, 2, 3))
        self.last_inversion_error = error.mean(dim=(1, 2, 3))
        self.last_inversion_psnr = 10 * torch.log10(1 / mse.clamp_min(1e-10))
        return z

    @torch.no_grad()
    def _starting_latents(self, target: torch.Tensor, candidates: int) -> torch.Tensor:
        """Per image, the best of the mean latent and ``candidates - 1`` fixed random ones."""
        pool = torch.cat([torch.zeros(1, self.cfg.z_dim, device=self.device),
                          self.sample_latents(candidates - 1, INVERSION_SEED)])  # (K, z_dim)
        outputs = self.net(pool)  # (K, 3, S, S)
        losses = (outputs[None] - target[:, None]).abs().mean(dim=(2, 3, 4))  # (B, K)
        return pool[losses.argmin(dim=1)].clone()


def load_gan(spec: ModelSpec, device: Union[str, torch.device] = "cpu") -> GANSampler:
    """The generator of ``spec`` as a sampler on ``device``.

    Raises:
        WeightsError: the weights are missing (saying how to train them), do
            not verify against their card, or are not a generator's.
    """
    net = load_model(spec, lambda config: Generator(GANConfig.from_dict(config)), train_verb="imgedit train gan",
                     architecture=CATALOG.architecture, kind="a GAN generator")
    return GANSampler(net, device, name=spec.name)


def save_grid(images: torch.Tensor, path: Path, overwrite: bool = False) -> Path:
    """Write ``grid(images)`` atomically; returns the path."""
    return save_image(grid(images.cpu()), path, overwrite)


def save_image(image: torch.Tensor, path: Path, overwrite: bool = False, durable: bool = True) -> Path:
    """Write one ``(3, H, W)`` image in [0, 1] atomically with imgedit's writer
    (``durable``: flush it to disk before the rename)."""
    from imgedit.tensor import write_tensor

    return write_tensor(image, path, overwrite=overwrite, durable=durable)
