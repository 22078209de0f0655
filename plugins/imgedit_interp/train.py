"""Training routine of the interpolation VAE (``imgedit train interp-vae``).

Each step: a batch of whole images (squares of the model's size, half of
them mirrored), encoded, one latent drawn from ``q(z | x)``, decoded; the
loss is the pixel MSE (0-1 scale) plus ``beta`` times the KL divergence per
pixel value. That is the negative ELBO of a Gaussian decoder with variance
``beta / 2`` (``beta = 0.005``: sigma 0.05, 26 dB): the KL term keeps the
latents close to N(0, I), so spherical walks between them and samples from
the prior decode to faces, while a small sigma keeps reconstructions sharp.

AdamW with warm-up and cosine decay. ``val`` images (taken from the training
folder, never the held-out ones) give the PSNR of the mean latent's
decoding every ``val_every`` steps, and a sheet (originals, reconstructions,
midpoints of consecutive pairs, prior samples) goes to
``out_dir/samples/step_NNNNNN.png``. Checkpoints resume bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence

import torch

from imgedit import distributed
from imgedit.errors import UsageError
from imgedit.imageset import HOLDOUT_RULE, ImageSet, data_licence, load_squares, split_holdout
from imgedit.training import (check_finite_tensors, export_model, learning_rate, load_run_state, run_folder,
                              run_licence, run_state, train_or_resume, training_summary)
from imgedit_interp.evaluate import psnr
from imgedit_interp.model import FaceVAE, FaceVAEConfig, kl_divergence

CHECKPOINT_VERSION = 1
SHEET_SEED = 11  # prior samples on the progress sheets


@dataclass
class InterpTrainConfig:
    steps: int = 6000
    batch: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 200
    weight_decay: float = 1e-4
    beta: float = 0.005  # KL weight per pixel value: a Gaussian decoder with sigma = sqrt(beta / 2)
    holdout: int = 0  # images kept out of training and validation (imgedit.imageset.HOLDOUT_RULE)
    val: int = 256  # training-folder images used only for validation
    val_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0
    model: FaceVAEConfig = field(default_factory=FaceVAEConfig)

    # the settings an option of 'imgedit train interp-vae' sets where they are not named alike
    # (imgedit.options.typed_settings)
    OPTION_FIELDS: ClassVar[dict] = {"size": ("model.image_size",), "z_dim": ("model.z_dim",)}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "InterpTrainConfig":
        return cls(**{**d, "model": FaceVAEConfig.from_dict(d["model"])})


def vae_loss(model: FaceVAE, x: torch.Tensor, beta: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``x`` in [-1, 1]. Returns ``loss`` (to minimise), ``mse`` (0-1 scale) and ``kl`` (nats per image)."""
    recon, mu, logvar = model(x, generator)
    mse = (recon - x).square().mean() / 4  # [-1, 1] -> [0, 1] scale
    kl = kl_divergence(mu, logvar).mean()
    return {"loss": mse + beta * kl / x[0].numel(), "mse": mse, "kl": kl}


class InterpTrainer:
    """Network, optimizer, data and random state of one run (the trainer
    :func:`imgedit.training.fit` expects)."""

    def __init__(self, cfg: InterpTrainConfig, images: ImageSet, val: ImageSet, device: torch.device,
                 sample_dir: Optional[Path] = None):
        self.cfg, self.device, self.images, self.val, self.sample_dir = cfg, device, images, val, sample_dir
        torch.manual_seed(cfg.seed)
        self.model = FaceVAE(cfg.model).to(device)
        self.net = distributed.wrap(self.model)  # what trains: under torchrun, gradients averaged over processes
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.commands: list[str] = []
        self.holdout: list[str] = []

    def batch(self) -> torch.Tensor:
        """``(batch, 3, S, S)`` training images in [-1, 1], half of them mirrored."""
        return distributed.shard(self.images.batch(self.cfg.batch, self.generator)).to(self.device)

    def train_step(self) -> dict:
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step)
        losses = vae_loss(self.net, self.batch(), self.cfg.beta, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        return {k: v.item() for k, v in losses.items()}

    @torch.no_grad()
    def validate(self) -> dict:
        """PSNR of the validation images' reconstructions from their mean latents; a progress sheet."""
        self.model.eval()
        x = self.val.images.float().to(self.device) / 255.0
        recon = torch.cat([self.model.decoder(self.model.encoder(c * 2 - 1)[0]) for c in x.split(64)])
        recon = ((recon + 1) / 2).clamp(0, 1)
        metrics: dict[str, Any] = {"val_psnr": psnr(recon, x).mean().item()}
        if self.sample_dir is not None:
            metrics["sheet"] = str(self._sheet(x[:8], recon[:8]))
        return metrics

    def _sheet(self, x: torch.Tensor, recon: torch.Tensor) -> Path:
        from imgedit.latents import interpolate
        from imgedit.tensor import grid, write_tensor

        mu = self.model.encoder(x * 2 - 1)[0]
        middle = self.model.decoder(interpolate(mu, mu.roll(1, 0), 0.5))
        z = torch.randn(8, self.cfg.model.z_dim, generator=torch.Generator().manual_seed(SHEET_SEED)).to(self.device)
        prior = self.model.decoder(z)
        rows = torch.cat([x, recon, ((torch.cat([middle, prior]) + 1) / 2).clamp(0, 1)])
        return write_tensor(grid(rows.cpu(), columns=8), self.sample_dir / f"step_{self.step:06d}.png", overwrite=True)

    def _parts(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer}

    def state(self) -> dict:
        return run_state(self, "interp-vae", CHECKPOINT_VERSION, self._parts())

    def load_state(self, state: dict) -> None:
        load_run_state(self, state, self._parts())


def train_interp_vae(cfg: InterpTrainConfig, sources: Sequence[str], out_dir: Path, device: torch.device,
                     resume: Optional[Path] = None, on_progress: Optional[Callable[[int, dict], None]] = None,
                     command: str = "", overwrite: bool = False, export: Optional[tuple[str, Path]] = None,
                     licence: Optional[str] = None) -> InterpTrainer:
    """Train (or resume) until ``cfg.steps`` on the images of ``sources``
    (files, folders, globs) as ``cfg.model.image_size`` squares, less
    ``cfg.holdout`` held-out images and ``cfg.val`` validation ones. The other
    arguments are those of :func:`imgedit.training.train_or_resume`;
    ``licence`` states the terms of this session's images (default: UTKFace's
    where their names say so), kept in the run's record with earlier sessions'.

    Raises:
        UsageError: no images, too few, a bad image size, an unreadable checkpoint.
    """

    out_dir = run_folder(out_dir, resume)  # a resumed run given no --out goes on in its own folder

    def build(cfg: InterpTrainConfig) -> InterpTrainer:
        try:
            cfg.model.levels  # noqa: B018 - raises ValueError for a size that is not a power of two
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        images, held = split_holdout(load_squares(sources, cfg.model.image_size), cfg.holdout)
        n_val = min(cfg.val, len(images) // 4)
        if n_val < 1 or len(images) - n_val < 2:  # validation needs one image in four, and at least one
            raise UsageError(f"too few images to train on: {len(images)} (after --holdout {cfg.holdout}); "
                             "at least 4 are needed, 1 of them for validation")
        every = max(1, len(images) // max(n_val, 1))
        val_idx = set(range(0, len(images), every)[:n_val])
        train = images.select(i for i in range(len(images)) if i not in val_idx)
        trainer = InterpTrainer(cfg, train, images.select(sorted(val_idx)), device, out_dir / "samples")
        trainer.holdout = held
        trainer.data_licence = licence or data_licence(images.names)  # this session's: the run keeps every session's
        return trainer

    return train_or_resume(build, cfg, "interp-vae", out_dir, resume, on_progress, command, overwrite, sources, export)


@torch.no_grad()
def encoder_means(model: FaceVAE, images: ImageSet, batch: int = 256) -> torch.Tensor:
    """The means of ``q(z | x)`` of every image (and its mirror image: faces come both ways), ``(2N, z_dim)``."""
    device = next(model.parameters()).device
    out = []
    for chunk in images.images.split(batch):
        x = chunk.float().to(device) / 127.5 - 1.0
        out += [model.encoder(x)[0], model.encoder(x.flip(-1))[0]]
    return torch.cat(out).cpu()


def export_interp_vae(trainer: InterpTrainer, path: Path, *, name: str, description: str, sources: list,
                      session_seconds: float, licence: Optional[str] = None) -> None:
    """Measure the latent prior on the training images (see
    :class:`~imgedit_interp.model.FaceVAE`), then write the VAE (fp16) and its model card."""
    model = trainer.model.eval()
    check_finite_tensors(model.state_dict(), trainer.step, "nothing is exported")
    means = encoder_means(model, trainer.images)
    check_finite_tensors({"the latent means of the training images": means}, trainer.step, "nothing is exported")
    model.fit_latent_prior(means)  # a Cholesky factorisation: NaN means would fail it as an unexpected error
    export_model(
        model, path, name=name, description=description, config=trainer.cfg.model.to_dict(), step=trainer.step,
        latent={"shape": [trainer.cfg.model.z_dim], "distribution": "N(0, I)"},
        training={
            **training_summary(trainer, sources, len(trainer.images), session_seconds),
            "validation_images": len(trainer.val),
            "holdout": {"count": len(trainer.holdout), "rule": HOLDOUT_RULE, "files": trainer.holdout},
            "last_log": trainer.history[-1] if trainer.history else None,
        },
        data_licence=run_licence(trainer, licence or data_licence(trainer.images.names)),
        metrics={},  # imgedit eval interp --record fills this in
    )
