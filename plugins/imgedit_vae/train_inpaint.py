"""Training routine of the inpainting VAE.

Each step draws clean patches and LaMa-style holes (thin, medium and thick
strokes and boxes, at most half the patch). The generator decodes a
posterior sample (the latent given the complete image) and the prior mean
(the deterministic fill users get by default); its loss is

    L1 on the posterior fill, and L1 (or, with ``loss="mse"``, the root of
      the squared error PSNR measures) on the prior-mean fill; holes weighted up
    + beta * KL(posterior || prior)          (so prior samples are plausible fills)
    + adv * non-saturating GAN loss          (PatchGAN critic on image + mask)
    + fm * feature matching on the critic    (no pretrained perceptual net here)

and the critic is trained alongside with the logistic loss. With
``sample_every`` K > 1, only every Kth step is such a full step; the others
fit the prior-mean fill alone, at about a third of the cost (no posterior
fill, no critic), so a run of fixed length gives the fill users get by
default more steps. Checkpoints hold both networks, both optimizers and the
random generator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Optional, Sequence

import torch
import torch.nn.functional as F

from imgedit import distributed
from imgedit.imagepool import ImagePool
from imgedit.training import autocast, learning_rate, load_run_state, run_state, train_or_resume
from imgedit_vae.holes import KINDS, random_hole_mask
from imgedit_vae.loading import start_from_weights
from imgedit_vae.metrics import RECON_LOSSES, psnr, reconstruction_loss
from imgedit_vae.model import InpaintVAE, PatchDiscriminator, VAEConfig, kl_between

CHECKPOINT_VERSION = 1


@dataclass
class InpaintTrainConfig:
    steps: int = 20000
    batch: int = 8
    patch: int = 128
    lr: float = 5e-4
    disc_lr: float = 2e-4
    min_lr_ratio: float = 0.05
    warmup: int = 300
    hole_weight: float = 3.0  # reconstruction weight inside holes, 1 outside
    loss: str = "l1"  # the deterministic fill's reconstruction loss, one of RECON_LOSSES
    beta_kl: float = 0.01
    adv_weight: float = 0.01
    fm_weight: float = 0.1
    sample_every: int = 1  # the posterior fill, KL and critic train every this many steps; the rest fit the default fill
    kinds: tuple = ("thin", "medium", "thick")
    zoom: float = 1.0  # patches from squares up to this many times wider, scaled down (ImagePool.patches)
    val_images: int = 8
    val_every: int = 250
    checkpoint_every: int = 500
    seed: int = 0
    precision: str = "fp32"  # or "bf16": see imgedit.training.autocast
    model: VAEConfig = field(default_factory=lambda: VAEConfig(
        widths=(32, 64, 128, 192), blocks=(1, 2, 2, 2), latent_channels=32, residual=False, bridge=True))
    disc_width: int = 32

    # the settings an option of 'imgedit train inpaint' sets where they are not named alike
    # (imgedit.options.typed_settings: a resumed run warns of those typed that it does not take)
    OPTION_FIELDS: ClassVar[dict] = {"widths_text": ("model.widths",), "bridge": ("model.bridge",),
                                     "decoder_blocks_text": ("model.decoder_blocks",), "kinds_text": ("kinds",)}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"], d["kinds"] = self.model.to_dict(), list(self.kinds)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "InpaintTrainConfig":
        d = dict(d)
        d["model"], d["kinds"] = VAEConfig.from_dict(d["model"]), tuple(d["kinds"])
        return cls(**d)


def hole_batch(n: int, size: int, kinds: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """(n, 1, size, size) hole masks, kinds drawn uniformly."""
    picks = torch.randint(len(kinds), (n,), generator=generator)
    return torch.stack([random_hole_mask(size, size, kinds[int(k)], generator) for k in picks])


def posterior_kl(moments: dict) -> torch.Tensor:
    """KL(posterior || prior) from the moments of a ``"posterior"`` forward pass."""
    return kl_between(*(moments[k].float() for k in ("post_mean", "post_logvar", "prior_mean", "prior_logvar")))


class InpaintTrainer:
    """Generator, critic, their optimizers, data and random state of one run."""

    def __init__(self, cfg: InpaintTrainConfig, pool: ImagePool, device: torch.device, init: Optional[Path] = None):
        self.cfg, self.device = cfg, device
        torch.manual_seed(cfg.seed)
        self.model = InpaintVAE(cfg.model)
        self.commands: list[str] = []  # every command that trained this run, for the model card
        if init is not None:  # the critic starts afresh: it catches up within a few hundred steps
            self.commands.append(start_from_weights(self.model, Path(init)))
        self.model.to(device, memory_format=torch.channels_last)  # oneDNN's and cuDNN's fastest layout
        self.critic = PatchDiscriminator(width=cfg.disc_width).to(device, memory_format=torch.channels_last)
        self.net, self.critic_net = distributed.wrap(self.model), distributed.wrap(self.critic)  # what trains: under torchrun, gradients averaged over processes
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.critic_optimizer = torch.optim.AdamW(self.critic.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.train_pool, val_pool = pool.split(cfg.val_images)
        self.val_clean, self.val_mask = self._validation_set(val_pool)
        self.step, self.elapsed, self.history = 0, 0.0, []

    def _validation_set(self, val_pool: ImagePool) -> tuple[torch.Tensor, torch.Tensor]:
        if len(val_pool) == 0:
            return torch.empty(0), torch.empty(0)
        clean = val_pool.center_crops(self.cfg.patch)
        masks = hole_batch(len(clean), self.cfg.patch, ("medium",), torch.Generator().manual_seed(0))
        return clean.to(self.device), masks.to(self.device)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, g = self.cfg, self.generator
        clean = self.train_pool.patches(cfg.batch, cfg.patch, g, zoom=cfg.zoom)
        masks = hole_batch(cfg.batch, cfg.patch, cfg.kinds, g)
        clean, masks = distributed.shard(clean, masks)  # the global batch was drawn, this process's rows kept
        return clean.to(self.device), masks.to(self.device)

    def _reconstruction(self, raw: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
        loss = reconstruction_loss(raw.float(), clean, kind, weight=1 + (self.cfg.hole_weight - 1) * mask)
        # The squared error's root has the same minimiser, and gradients of L1's size: plain MSE's
        # (2 x an error of ~0.1) would leave the shared decoder to the posterior fill's L1 and the critic.
        return loss.clamp_min(1e-12).sqrt() if kind == "mse" else loss

    def train_step(self) -> dict:
        cfg = self.cfg
        clean, mask = self.batch()
        lr_scale = learning_rate(cfg, self.step) / cfg.lr
        for opt, base in ((self.optimizer, cfg.lr), (self.critic_optimizer, cfg.disc_lr)):
            for group in opt.param_groups:
                group["lr"] = base * lr_scale
        self.model.train()
        if self.step % cfg.sample_every:
            return self._fill_step(clean, mask)

        # critic: real patches vs. fills (fills detached)
        with autocast(self.device, cfg.precision):
            fill, raw, moments = self.net(clean, mask, "posterior", self.generator)
            real_score, real_features = self.critic_net(clean, mask)
            fake_score, _ = self.critic_net(fill.detach(), mask)
            critic_loss = F.softplus(-real_score.float()).mean() + F.softplus(fake_score.float()).mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        # generator: both fills reconstruct, the posterior fill also fools the critic. The
        # deterministic fill may be fitted to the mean (mse) while samples stay sharp (L1 + critic).
        with autocast(self.device, cfg.precision):
            _, mean_raw, _ = self.net(clean, mask, "mean")
            sample_loss = self._reconstruction(raw, clean, mask, "l1")
            fill_loss = self._reconstruction(mean_raw, clean, mask, cfg.loss)
            recon = sample_loss + fill_loss
            kl = posterior_kl(moments)
            fake_score, fake_features = self.critic_net(fill, mask)
            adversarial = F.softplus(-fake_score.float()).mean()
            pairs = zip(fake_features, real_features)
            matching = sum(F.l1_loss(f.float(), r.detach().float()) for f, r in pairs) / len(fake_features)
            loss = recon + cfg.beta_kl * kl + cfg.adv_weight * adversarial + cfg.fm_weight * matching
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"loss": loss.item(), "recon": recon.item(), "fill": fill_loss.item(), "kl": kl.item(),
                "adv": adversarial.item(), "fm": matching.item(), "critic": critic_loss.item()}

    def _fill_step(self, clean: torch.Tensor, mask: torch.Tensor) -> dict:
        """Fit the deterministic (prior-mean) fill alone: the posterior encoder and the critic rest.
        The plain model runs, its gradients averaged by hand: DDP wants every parameter in the loss."""
        with autocast(self.device, self.cfg.precision):
            _, raw, _ = self.model(clean, mask, "mean")
            loss = self._reconstruction(raw, clean, mask, self.cfg.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.model)
        self.optimizer.step()
        self.step += 1
        return {"loss": loss.item(), "fill": loss.item()}

    @torch.no_grad()
    def validate(self) -> Optional[dict]:
        """On fixed crops and holes: the deterministic fill's mean whole-image
        PSNR, and the KL between posterior and prior (near 0: the latent says
        nothing, so seeded fills would not differ)."""
        if self.val_clean.numel() == 0:
            return None
        self.model.eval()
        _, _, moments = self.model(self.val_clean, self.val_mask, "posterior", torch.Generator().manual_seed(0))
        fill, _, _ = self.model(self.val_clean, self.val_mask, "mean")
        kl = posterior_kl(moments)
        return {"val_psnr": float(psnr(fill, self.val_clean).mean()), "val_kl": float(kl)}

    def _parts(self) -> dict:
        return {"model": self.model, "critic": self.critic, "optimizer": self.optimizer,
                "critic_optimizer": self.critic_optimizer}

    def state(self) -> dict:
        return run_state(self, "inpaint", CHECKPOINT_VERSION, self._parts())

    def load_state(self, state: dict) -> None:
        load_run_state(self, state, self._parts())


def train_inpaint(cfg: InpaintTrainConfig, sources: Sequence[str], out_dir: Path, device: torch.device,
                  resume: Optional[Path] = None, on_progress: Optional[Callable[[int, dict], None]] = None,
                  command: str = "", init: Optional[Path] = None, overwrite: bool = False,
                  export: Optional[tuple[str, Path]] = None) -> InpaintTrainer:
    """Train (or resume) the inpainting VAE until ``cfg.steps``; ``init`` starts a new run from
    trained generator weights. See :func:`imgedit_vae.train_denoise.train`."""

    def build(cfg: InpaintTrainConfig) -> InpaintTrainer:
        from imgedit.errors import UsageError

        unknown = set(cfg.kinds) - set(KINDS)
        if unknown:
            raise UsageError(f"unknown hole kinds {sorted(unknown)}; use {', '.join(KINDS)}")
        if cfg.loss not in RECON_LOSSES:
            raise UsageError(f"unknown reconstruction loss {cfg.loss!r}; use {', '.join(RECON_LOSSES)}")
        # an image smaller than a patch would be stretched to one: a blurred target
        return InpaintTrainer(cfg, ImagePool(sources, min_side=cfg.patch), device, None if resume else init)

    return train_or_resume(build, cfg, "inpaint", out_dir, resume, on_progress, command, overwrite, sources, export)
