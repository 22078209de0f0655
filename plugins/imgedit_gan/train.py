"""Training routine of the GAN.

Each step: one discriminator update on a real and a generated batch with the
hinge loss, then one generator update (``-D(G(z))``). DiffAugment
(translation and cutout by default) is applied to every image the discriminator sees;
reals are also flipped left-right at random. Adam for both networks; an
exponential moving average of the generator's weights (``G_ema``, decay
ramped up over the first steps) is what gets exported: it gives smoother,
better samples than the raw generator.

Every ``val_every`` steps a grid of ``G_ema`` samples from fixed latents is
written to ``out_dir/samples/step_NNNNNN.png``, so progress can be watched.
Checkpoints (``out_dir/checkpoint.safetensors``) hold G, D, G_ema, both
optimizers, step, config and the random generator: a resumed run continues
bit for bit as if it had never stopped (SIGTERM and Ctrl-C save one first).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Optional, Sequence

import torch

from imgedit import distributed
from imgedit.errors import UsageError
from imgedit.training import (export_model, load_run_state, run_folder, run_licence, run_state, train_or_resume,
                              training_summary)
from imgedit_gan.augment import diff_augment, parse_policy
from imgedit.imageset import HOLDOUT_RULE, ImageSet, data_licence, load_squares, split_holdout
from imgedit_gan.model import Discriminator, GANConfig, Generator

CHECKPOINT_VERSION = 1
STATS_SEED = 20240601  # latents for re-estimating BatchNorm statistics (not the training stream)


@dataclass
class GANTrainConfig:
    steps: int = 8000
    batch: int = 32
    lr: float = 2e-4  # generator
    d_lr: float = 2e-4  # discriminator
    betas: tuple = (0.5, 0.999)
    ema_decay: float = 0.999
    # no "color": its random brightness, saturation and contrast let the
    # discriminator ignore the colour spread of the faces, and the generator
    # lost 13% of it (lighting, skin, backgrounds; faces64 KID 4.7 -> 1.3 without it)
    augment: str = "translation,cutout"
    holdout: int = 0  # images kept out of training (see imgedit.imageset.HOLDOUT_RULE)
    val_every: int = 500  # sample grid and log line
    checkpoint_every: int = 500
    grid: int = 64  # samples in the progress grid
    seed: int = 0
    model: GANConfig = field(default_factory=GANConfig)

    # the settings an option of 'imgedit train gan' sets where they are not named alike (imgedit.options.typed_settings)
    OPTION_FIELDS: ClassVar[dict] = {"size": ("model.image_size",), "lr": ("lr", "d_lr")}

    def to_dict(self) -> dict:
        return asdict(self)  # the nested GANConfig too

    @classmethod
    def from_dict(cls, d: dict) -> "GANTrainConfig":
        return cls(**{**d, "model": GANConfig.from_dict(d["model"]), "betas": tuple(d["betas"])})


class GANTrainer:
    """Networks, optimizers, data and random state of one run.

    ``G``, ``D`` and ``G_ema`` are the networks; ``generator`` is the run's
    ``torch.Generator`` (every random draw: batches, latents, flips,
    augmentation), as :func:`imgedit.training.fit` expects.
    """

    def __init__(self, cfg: GANTrainConfig, images: ImageSet, device: torch.device, sample_dir: Optional[Path] = None):
        self.cfg, self.device, self.images, self.sample_dir = cfg, device, images, sample_dir
        torch.manual_seed(cfg.seed)
        self.G = Generator(cfg.model).to(device)
        self.D = Discriminator(cfg.model).to(device)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        self.G_net, self.D_net = distributed.wrap(self.G), distributed.wrap(self.D)  # what trains: under torchrun, gradients averaged over processes
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr, betas=tuple(cfg.betas))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.fixed_z = torch.randn(cfg.grid, cfg.model.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.commands: list[str] = []
        self.holdout: list[str] = []

    def real_batch(self) -> torch.Tensor:
        """``(batch, 3, S, S)`` training images in [-1, 1], half of them mirrored."""
        return distributed.shard(self.images.batch(self.cfg.batch, self.generator)).to(self.device)

    def latents(self, n: int) -> torch.Tensor:
        """This process's rows of ``n`` latents."""
        return distributed.shard(torch.randn(n, self.cfg.model.z_dim, generator=self.generator)).to(self.device)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg.augment, self.generator)

    def train_step(self) -> dict:
        cfg = self.cfg
        self.G.train()
        real = self.real_batch()
        with torch.no_grad():
            fake = self.G_net(self.latents(cfg.batch))
        self.D.requires_grad_(True)
        d_real, d_fake = self.D_net(self.augment(real)), self.D_net(self.augment(fake))
        d_loss = torch.relu(1 - d_real).mean() + torch.relu(1 + d_fake).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        self.D.requires_grad_(False)  # gradients flow through D to G, not into D's weights
        g_loss = -self.D_net(self.augment(self.G_net(self.latents(cfg.batch)))).mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.update_ema()
        self.step += 1
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(),
                "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}

    @torch.no_grad()
    def update_ema(self) -> None:
        """G_ema <- decay * G_ema + (1 - decay) * G; decay ramps up from 0.1 so early averages are not stale."""
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p, 1 - decay)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    def export_generator(self) -> Generator:
        """A copy of G_ema in eval mode, with BatchNorm statistics measured on its own outputs."""
        return standing_statistics(copy.deepcopy(self.G_ema), self.cfg.model.z_dim)

    @torch.no_grad()
    def validate(self) -> dict:
        """Write a grid of samples from the fixed latents (when there is a sample folder)."""
        if self.sample_dir is None:
            return {}
        from imgedit_gan.sampler import save_grid

        images = (self.export_generator()(self.fixed_z.to(self.device)) + 1) / 2
        path = save_grid(images.cpu(), self.sample_dir / f"step_{self.step:06d}.png", overwrite=True)
        return {"grid": str(path)}

    def _parts(self) -> dict:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema, "opt_g": self.opt_g, "opt_d": self.opt_d}

    def state(self) -> dict:
        return run_state(self, "gan", CHECKPOINT_VERSION, self._parts())

    def load_state(self, state: dict) -> None:
        load_run_state(self, state, self._parts())


@torch.no_grad()
def standing_statistics(G: Generator, z_dim: int, batches: int = 16, batch: int = 64) -> Generator:
    """Re-estimate ``G``'s BatchNorm running statistics from its outputs on
    fixed random latents (an average over ``batches`` batches); returns ``G``
    in eval mode. EMA weights inherit the raw generator's statistics, which do
    not quite fit them."""
    norms = [m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    G.train()
    g = torch.Generator().manual_seed(STATS_SEED)
    device = next(G.parameters()).device
    for _ in range(batches):
        G(torch.randn(batch, z_dim, generator=g).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return G.eval()


def train_gan(cfg: GANTrainConfig, sources: Sequence[str], out_dir: Path, device: torch.device, resume: Optional[Path] = None,
              on_progress: Optional[Callable[[int, dict], None]] = None, command: str = "",
              overwrite: bool = False, export: Optional[tuple[str, Path]] = None,
              licence: Optional[str] = None) -> GANTrainer:
    """Train (or resume) until ``cfg.steps``: the images of ``sources`` (files,
    folders, globs) as ``cfg.model.image_size`` squares, less ``cfg.holdout``
    held-out ones; samples go to ``out_dir/samples/``. The other arguments
    are those of :func:`imgedit.training.train_or_resume`;
    ``licence`` states the terms of this session's images (default: UTKFace's
    where their names say so), kept in the run's record with earlier sessions'.

    Returns:
        The trainer (``export_generator()`` is the model to ship).

    Raises:
        UsageError: no images, a bad augmentation policy or image size, an unreadable checkpoint.
    """

    out_dir = run_folder(out_dir, resume)  # a resumed run given no --out goes on in its own folder

    def build(cfg: GANTrainConfig) -> GANTrainer:
        try:
            parse_policy(cfg.augment)
            cfg.model.levels  # noqa: B018 - raises ValueError for a size that is not a power of two
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        images, held = split_holdout(load_squares(sources, cfg.model.image_size), cfg.holdout)
        trainer = GANTrainer(cfg, images, device, out_dir / "samples")
        trainer.holdout = held
        trainer.data_licence = licence or data_licence(images.names)  # this session's: the run keeps every session's
        return trainer

    return train_or_resume(build, cfg, "gan", out_dir, resume, on_progress, command, overwrite, sources, export)


def export_gan(trainer: GANTrainer, path: Path, *, name: str, description: str, sources: list, session_seconds: float,
               licence: Optional[str] = None) -> None:
    """Write G_ema (fp16) and its model card."""
    export_model(
        trainer.export_generator(), path, name=name, description=description, config=trainer.cfg.model.to_dict(),
        step=trainer.step,
        latent={"shape": [trainer.cfg.model.z_dim], "distribution": "N(0, I)"},
        training={
            **training_summary(trainer, sources, len(trainer.images), session_seconds),
            "holdout": {"count": len(trainer.holdout), "rule": HOLDOUT_RULE, "files": trainer.holdout},
            "last_log": trainer.history[-1] if trainer.history else None,
        },
        data_licence=run_licence(trainer, licence or data_licence(trainer.images.names)),
        metrics={},  # imgedit eval gan --record fills this in
    )
