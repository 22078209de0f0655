"""Training routine of the noise-level estimator (:class:`SigmaNet`).

``train(cfg, sources, out_dir, device)`` cuts random flipped/rotated patches
from clean photos, adds Gaussian noise at a random level in 0-75 (extra mass
at 0 and at low levels, so that clean texture teaches "no noise"), clips and
quantises most of them to 8 bits as a file is, JPEG-encodes some at a random
quality (as a phone saves its photos), and fits the level of the noise added.
AdamW with warm-up and cosine decay; checkpoints resume bit for bit
(:mod:`imgedit.training`). The CLI verb ``imgedit train sigma`` calls it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Optional, Sequence

import cv2
import numpy as np
import torch

from imgedit.imagepool import ImagePool
from imgedit.training import learning_rate, load_run_state, run_state, train_or_resume
from imgedit_vae.degrade import add_gaussian_noise, is_gray
from imgedit_vae.sigma_net import SigmaNet, SigmaNetConfig, estimate_sigma_learned

CHECKPOINT_VERSION = 1
MARGIN = 8  # patches are cut this much larger, noised (and JPEG-encoded), then cropped at a random offset:
            # the estimator must not rely on JPEG's 8x8 grid lying where its patch starts

# The fixed validation conditions: (sigma, JPEG quality or 0 for none).
VAL_CONDITIONS = ((0, 0), (5, 0), (15, 0), (25, 0), (50, 0), (75, 0), (15, 75), (15, 90), (25, 75))


@dataclass
class TrainConfig:
    steps: int = 4000
    batch: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.02
    warmup: int = 200
    weight_decay: float = 1e-4
    sigma_max: float = 75.0
    zero_prob: float = 0.15  # share of clean patches (sigma 0)
    low_prob: float = 0.35  # share drawn from [0, low_sigma] rather than [0, sigma_max]
    low_sigma: float = 15.0
    clip_prob: float = 0.85  # share clipped and quantised to 8 bits (JPEG-encoded ones always are)
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (60, 98)
    gray_prob: float = 0.15
    loss: str = "sqrt"  # "sqrt": L1 on sqrt(sigma); "l1": L1 on sigma
    val_images: int = 16
    val_crop: int = 128
    val_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0
    precision: str = "fp32"
    # Patches (and validation crops) cut this many times larger and
    # area-averaged down, so that the training photos' own JPEG blocks and
    # noise (they are labelled clean) vanish. Tried at 2 (6000 steps): worse
    # than full size on JPEG q75 at sigma 10-15 and on Gaussian sigma 5-15
    # (DESIGN.md), so full size it is.
    source_scale: int = 1
    model: SigmaNetConfig = field(default_factory=lambda: SigmaNetConfig(classical_input=True, jpeg_input=True))

    # the settings an option of 'imgedit train sigma' sets where they are not named alike
    # (imgedit.options.typed_settings: a resumed run warns of those typed that it does not take)
    OPTION_FIELDS: ClassVar[dict] = {"jpeg_share": ("jpeg_prob",)}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["jpeg_quality"] = list(self.jpeg_quality)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["jpeg_quality"] = tuple(d["jpeg_quality"])
        d["model"] = SigmaNetConfig.from_dict(d["model"])
        d.setdefault("source_scale", 1)  # runs from before it existed
        return cls(**d)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """A ``(3, H, W)`` image in [0, 1] saved as JPEG at ``quality`` and read
    back (8-bit; a gray image as a one-channel JPEG, as a gray file is)."""
    rgb = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    gray = bool(is_gray(image[None])[0])
    pixels = rgb[..., 0] if gray else np.ascontiguousarray(rgb[..., ::-1])  # OpenCV's BGR
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # not an assert: python -O would go on to decode nothing
        raise RuntimeError(f"OpenCV could not encode a {pixels.shape} patch as JPEG quality {quality}")
    out = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    out = np.repeat(out[..., None], 3, axis=2) if gray else out[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).float() / 255.0


def scaled_down(images: torch.Tensor, factor: int) -> torch.Tensor:
    """``(B, 3, H, W)`` images area-averaged down by ``factor`` (1: as they are)."""
    return images if factor == 1 else torch.nn.functional.avg_pool2d(images, factor)


def degrade(clean: torch.Tensor, sigma: torch.Tensor, clip: torch.Tensor, quality: torch.Tensor,
            seed: int) -> torch.Tensor:
    """Noise (``sigma``, 0-255 scale), clipping+quantising (``clip``) and JPEG
    (``quality`` > 0) for a ``(B, 3, H, W)`` CPU batch in [0, 1]."""
    noisy = add_gaussian_noise(clean, sigma, torch.Generator().manual_seed(seed), clip | (quality > 0))
    for k in torch.nonzero(quality > 0).flatten().tolist():
        noisy[k] = jpeg(noisy[k], int(quality[k]))
    return noisy


class Trainer:
    """Model, optimizer, data and random state of one training run."""

    def __init__(self, cfg: TrainConfig, pool: ImagePool, device: torch.device):
        self.cfg, self.device = cfg, device
        torch.manual_seed(cfg.seed)
        self.model = SigmaNet(cfg.model).to(device)
        self.commands: list[str] = []
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.train_pool, val_pool = pool.split(cfg.val_images)
        self.val_noisy, self.val_sigma, self.val_condition = self._validation_set(val_pool)
        self.step, self.elapsed, self.history = 0, 0.0, []

    def _validation_set(self, val_pool: ImagePool) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        if len(val_pool) == 0:
            return torch.empty(0), torch.empty(0), []
        clean = scaled_down(val_pool.center_crops(self.cfg.val_crop * self.cfg.source_scale), self.cfg.source_scale)
        n = len(clean)
        noisy, sigmas, conditions = [], [], []
        for i, (sigma, quality) in enumerate(VAL_CONDITIONS):
            s = torch.full((n,), float(sigma))
            noisy.append(degrade(clean, s, torch.ones(n, dtype=torch.bool), torch.full((n,), quality), seed=i))
            sigmas.append(s)
            conditions += [(sigma, quality)] * n
        return torch.cat(noisy).to(self.device), torch.cat(sigmas), conditions

    def draw_sigma(self, n: int) -> torch.Tensor:
        cfg, g = self.cfg, self.generator
        u, level = torch.rand(n, generator=g), torch.rand(n, generator=g)
        high = torch.where(u < cfg.zero_prob + cfg.low_prob, cfg.low_sigma, cfg.sigma_max)
        return torch.where(u < cfg.zero_prob, 0.0, level * high)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(noisy patches, sigma) for one step, on the device."""
        cfg, g = self.cfg, self.generator
        p = cfg.model.patch
        s = cfg.source_scale
        clean = scaled_down(self.train_pool.patches(cfg.batch, (p + MARGIN) * s, g, cfg.gray_prob), s)  # (B, 3, P+8, P+8)
        sigma = self.draw_sigma(cfg.batch)
        clip = torch.rand(cfg.batch, generator=g) < cfg.clip_prob
        lo, hi = cfg.jpeg_quality
        quality = torch.randint(lo, hi + 1, (cfg.batch,), generator=g)
        quality = torch.where(torch.rand(cfg.batch, generator=g) < cfg.jpeg_prob, quality, 0)
        offsets = torch.randint(MARGIN + 1, (cfg.batch, 2), generator=g).tolist()
        seed = int(torch.randint(2**62, (1,), generator=g))
        noisy = degrade(clean, sigma, clip, quality, seed)
        noisy = torch.stack([noisy[k, :, y : y + p, x : x + p] for k, (y, x) in enumerate(offsets)])
        return noisy.to(self.device), sigma.to(self.device)

    def loss(self, pred_sqrt: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "sqrt":
            return (pred_sqrt - sigma.sqrt()).abs().mean()
        if self.cfg.loss == "l1":
            return (pred_sqrt.square() - sigma).abs().mean()
        raise ValueError(f"loss must be 'sqrt' or 'l1', got {self.cfg.loss!r}")

    def train_step(self) -> dict:
        noisy, sigma = self.batch()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step)
        self.model.train()
        pred = self.model.forward_sqrt(noisy)
        loss = self.loss(pred, sigma)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"loss": loss.item(), "mae": (pred.detach().square() - sigma).abs().mean().item()}

    @torch.no_grad()
    def validate(self) -> Optional[dict]:
        """Mean absolute error (0-255 scale) of the per-image estimate on the
        held-out crops: overall, clean, JPEG, and at sigma 5."""
        if self.val_noisy.numel() == 0:
            return None
        self.model.eval()
        est = torch.cat([estimate_sigma_learned(chunk, self.model).cpu() for chunk in self.val_noisy.split(64)])
        err = (est - self.val_sigma).abs()
        pick = lambda keep: round(float(err[torch.tensor([keep(c) for c in self.val_condition])].mean()), 3)  # noqa: E731
        return {"val_mae": round(float(err.mean()), 3), "val_mae_clean": pick(lambda c: c[0] == 0),
                "val_mae_s5": pick(lambda c: c == (5, 0)), "val_mae_jpeg": pick(lambda c: c[1] > 0),
                "val_mae_s75": pick(lambda c: c[0] == 75)}

    def _parts(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer}

    def state(self) -> dict:
        return run_state(self, "sigma", CHECKPOINT_VERSION, self._parts())

    def load_state(self, state: dict) -> None:
        load_run_state(self, state, self._parts())


def train(cfg: TrainConfig, sources: Sequence[str], out_dir: Path, device: torch.device, resume: Optional[Path] = None,
          on_progress: Optional[Callable[[int, dict], None]] = None, command: str = "", overwrite: bool = False,
          export: Optional[tuple[str, Path]] = None) -> Trainer:
    """Train (or resume) until ``cfg.steps``; checkpoints go to ``out_dir/checkpoint.safetensors``
    (the other arguments are those of :func:`imgedit.training.train_or_resume`).

    Returns:
        The trainer, with the final model.
    """
    min_side = max(cfg.model.patch + MARGIN, cfg.val_crop) * cfg.source_scale
    return train_or_resume(lambda c: Trainer(c, ImagePool(sources, min_side=min_side), device), cfg, "sigma", out_dir,
                           resume, on_progress, command, overwrite, sources, export)
