"""Training routine of the denoising VAE.

``train(cfg, sources, out_dir)`` draws random clean patches, adds Gaussian
noise at a random level in [0, sigma_max] (some clipped and quantised, as a
noisy file is), and minimises the reconstruction loss (L1, or MSE, which is
what PSNR measures: for a last fine-tuning) plus beta * KL of the latent.
AdamW with warm-up and cosine decay. Checkpoints hold everything needed to
resume bit for bit (weights, optimizer, step, the random generator,
configs). The CLI verb ``imgedit train denoise`` calls it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Optional, Sequence

import torch

from imgedit import distributed
from imgedit.imagepool import ImagePool, luminance
from imgedit.training import autocast, learning_rate, load_run_state, run_state, train_or_resume
from imgedit_vae.degrade import add_gaussian_noise
from imgedit_vae.loading import start_from_weights
from imgedit_vae.metrics import psnr, reconstruction_loss
from imgedit_vae.model import ConditionalVAE, VAEConfig, kl_divergence

CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    steps: int = 13000
    batch: int = 16
    patch: int = 96
    lr: float = 1e-3
    min_lr_ratio: float = 0.02
    warmup: int = 300
    weight_decay: float = 1e-4
    beta_kl: float = 1e-4
    sigma_max: float = 75.0
    clip_prob: float = 0.3  # share of noisy inputs clipped + quantised as in a file
    gray_prob: float = 0.15  # share of grayscale patches (same noise on all channels); a 1-channel model sees only gray
    val_images: int = 8
    val_sigma: float = 25.0
    val_every: int = 250
    checkpoint_every: int = 500
    seed: int = 0
    precision: str = "fp32"  # or "bf16": see imgedit.training.autocast
    loss: str = "l1"  # reconstruction loss, one of metrics.RECON_LOSSES
    model: VAEConfig = field(default_factory=lambda: VAEConfig(widths=(32, 64, 80, 96), blocks=(2, 2, 2, 1), bridge=True))

    # the settings an option of 'imgedit train denoise' sets where they are not named alike
    # (imgedit.options.typed_settings: a resumed run warns of those typed that it does not take)
    OPTION_FIELDS: ClassVar[dict] = {"widths_text": ("model.widths",), "gray": ("model.image_channels",),
                                     "gray_share": ("gray_prob",)}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["model"] = VAEConfig.from_dict(d["model"])
        return cls(**d)


class Trainer:
    """Model, optimizer, data and random state of one training run."""

    def __init__(self, cfg: TrainConfig, pool: ImagePool, device: torch.device, init: Optional[Path] = None):
        self.cfg, self.device = cfg, device
        torch.manual_seed(cfg.seed)
        self.model = ConditionalVAE(cfg.model)
        self.commands: list[str] = []  # every command that trained this run, for the model card
        if init is not None:
            self.commands.append(start_from_weights(self.model, Path(init)))
        self.model.to(device, memory_format=torch.channels_last)  # oneDNN's and cuDNN's fastest layout
        self.net = distributed.wrap(self.model)  # what trains: under torchrun, gradients averaged over processes
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.train_pool, val_pool = pool.split(cfg.val_images)
        self.val_clean, self.val_noisy = self._validation_set(val_pool)
        self.step, self.elapsed, self.history = 0, 0.0, []

    def _validation_set(self, val_pool: ImagePool) -> tuple[torch.Tensor, torch.Tensor]:
        if len(val_pool) == 0:
            return torch.empty(0), torch.empty(0)
        clean = val_pool.center_crops(128)
        if self.cfg.model.image_channels == 1:  # a grayscale model reads luminance
            clean = torch.stack([luminance(image)[:1] for image in clean])
        sigma = torch.full((len(clean),), self.cfg.val_sigma)
        noisy = add_gaussian_noise(clean, sigma, torch.Generator().manual_seed(0))
        return clean.to(self.device), noisy.to(self.device)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(noisy, sigma map, clean) for one step, on the device."""
        cfg, g = self.cfg, self.generator
        # a grayscale model gets only gray patches (luminance on 3 equal channels), and reads one of them
        gray_only = cfg.model.image_channels == 1
        clean = self.train_pool.patches(cfg.batch, cfg.patch, g, 1.0 if gray_only else cfg.gray_prob)
        clean = clean[:, : cfg.model.image_channels].to(self.device)
        sigma = torch.rand(cfg.batch, generator=g) * cfg.sigma_max
        clip = torch.rand(cfg.batch, generator=g) < cfg.clip_prob
        # The noise is drawn on the device (on a CPU it was most of a GPU step's time), from a
        # seed the run's generator gives each step, so a resumed run draws the same noise.
        seed = int(torch.randint(2**62, (1,), generator=g))
        noisy = add_gaussian_noise(clean, sigma, torch.Generator(self.device).manual_seed(seed), clip)
        noisy, sigma, clean = distributed.shard(noisy, sigma, clean)  # the global batch was drawn, this process's rows kept
        return noisy, sigma_map(sigma, noisy), clean

    def train_step(self) -> dict:
        noisy, cond, clean = self.batch()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step)
        self.model.train()
        with autocast(self.device, self.cfg.precision):
            out, mean, logvar = self.net(noisy, cond, sample=True, generator=self.generator)
            recon = reconstruction_loss(out.float(), clean, self.cfg.loss)
            kl = kl_divergence(mean.float(), logvar.float())
            loss = recon + self.cfg.beta_kl * kl
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"loss": loss.item(), self.cfg.loss: recon.item(), "kl": kl.item()}

    @torch.no_grad()
    def validate(self) -> Optional[float]:
        """Mean PSNR on the held-out crops at ``val_sigma`` (None without a validation split)."""
        if self.val_clean.numel() == 0:
            return None
        self.model.eval()
        sigma = torch.full((len(self.val_noisy),), self.cfg.val_sigma)
        out, _, _ = self.model(self.val_noisy, sigma_map(sigma, self.val_noisy).to(self.device))
        return float(psnr(out, self.val_clean).mean())

    def _parts(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer}

    def state(self) -> dict:
        return run_state(self, "denoise", CHECKPOINT_VERSION, self._parts())

    def load_state(self, state: dict) -> None:
        load_run_state(self, state, self._parts())


def sigma_map(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) sigma on 0-255 -> (B, 1, H, W) noise-level planes on the 0-1 scale."""
    b, _, h, w = like.shape
    return (sigma.to(like.dtype) / 255.0).view(b, 1, 1, 1).expand(b, 1, h, w).to(like.device)


def train(cfg: TrainConfig, sources: Sequence[str], out_dir: Path, device: torch.device, resume: Optional[Path] = None,
          on_progress: Optional[Callable[[int, dict], None]] = None, command: str = "", init: Optional[Path] = None,
          overwrite: bool = False, export: Optional[tuple[str, Path]] = None) -> Trainer:
    """Train (or resume) until ``cfg.steps``; checkpoints go to ``out_dir/checkpoint.safetensors``.

    ``sources`` are image files/folders of clean training images; ``init``
    starts a new run from trained weights (see :func:`imgedit_vae.weight_surgery.grow_from`, so a wider
    ``cfg.model`` keeps what they learnt); the other arguments are those of
    :func:`imgedit.training.train_or_resume`.

    Returns:
        The trainer, with the final model.
    """
    # an image smaller than a patch would be stretched to one: a blurred target (such images are skipped, with a warning)
    return train_or_resume(lambda c: Trainer(c, ImagePool(sources, min_side=c.patch), device, None if resume else init), cfg,
                           "denoise", out_dir, resume, on_progress, command, overwrite, sources, export)
