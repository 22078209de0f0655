"""Training a fast style network for one painting (``imgedit train style``).

Each step: ``batch`` random ``patch`` x ``patch`` crops of the photos (any
of the 8 flips and rotations, :meth:`imgedit.imagepool.ImagePool.patches`),
stylised by the network; the loss is the style distance to the painting
(seen at ``style_size`` px) plus ``content_weight`` times the content
distance to the crops, in the loss network (:mod:`imgedit_style.lossnet`,
random weights from a seed unless told otherwise; definitions in
:mod:`imgedit_style.losses`). AdamW with warm-up and cosine decay.

Every ``val_every`` steps the mean losses on a fixed set of whole photos
(centre squares at the crop size) are logged and a preview (the photos
above their stylisations) goes to ``out_dir/samples/step_NNNNNN.png``;
checkpoints resume bit for bit.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from imgedit import distributed
from imgedit.errors import UsageError
from imgedit.imagepool import ImagePool
from imgedit.models import save_weights, sha256_file
from imgedit.training import learning_rate, load_run_state, run_state, train_or_resume, training_summary
from imgedit_style.losses import StyleLossConfig, check_weights
from imgedit_style.lossnet import LossNetConfig, build_loss_net
from imgedit_style.model import StyleNet, StyleNetConfig, count_parameters
from imgedit_style.optimize import StyleObjective

CHECKPOINT_VERSION = 1

logger = logging.getLogger("imgedit")


@dataclass
class StyleTrainConfig:
    style_image: str = ""
    steps: int = 2000
    batch: int = 4
    patch: int = 256
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup: int = 50
    weight_decay: float = 0.0
    style_size: int = 512  # long side the painting is seen at: the stroke size
    val: int = 4  # fixed photos for the preview and the logged losses
    val_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0
    model: StyleNetConfig = field(default_factory=StyleNetConfig)
    loss: StyleLossConfig = field(default_factory=StyleLossConfig)
    loss_net: LossNetConfig = field(default_factory=LossNetConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StyleTrainConfig":
        return cls(**{**d, "model": StyleNetConfig.from_dict(d["model"]), "loss": StyleLossConfig.from_dict(d["loss"]),
                      "loss_net": LossNetConfig.from_dict(d["loss_net"])})


class StyleTrainer:
    """Network, optimizer, data, loss and random state of one run (the trainer
    :func:`imgedit.training.fit` expects)."""

    def __init__(self, cfg: StyleTrainConfig, pool: ImagePool, painting: torch.Tensor, device: torch.device,
                 sample_dir: Optional[Path] = None):
        self.cfg, self.device, self.pool, self.sample_dir = cfg, device, pool, sample_dir
        torch.manual_seed(cfg.seed)
        self.model = StyleNet(cfg.model).to(device)
        self.net = distributed.wrap(self.model)  # what trains: under torchrun, gradients averaged over processes
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        every = max(1, len(pool) // max(cfg.val, 1))  # whole photos, spread over the pool: (val, 3, patch, patch)
        self.preview = (pool.subset(list(range(0, len(pool), every))[: cfg.val]).squares(cfg.patch).float() / 255).to(device)
        self.objective = StyleObjective(build_loss_net(cfg.loss_net, device), painting.to(device), cfg.loss,
                                        content_photos=self.preview)
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.commands: list[str] = []

    def train_step(self) -> dict:
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step)
        photos = distributed.shard(self.pool.patches(self.cfg.batch, self.cfg.patch, self.generator)).to(self.device)
        losses = self.objective(self.net(photos), photos)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        return {k: v.item() for k, v in losses.items()}

    @torch.no_grad()
    def validate(self) -> dict:
        """Mean losses on the fixed preview photos; the preview sheet."""
        self.model.eval()
        out = self.model(self.preview)
        losses = self.objective(out, self.preview)
        metrics: dict[str, Any] = {f"val_{k}": v.item() for k, v in losses.items() if k != "tv"}
        if self.sample_dir is not None:
            from imgedit.tensor import grid, write_tensor

            sheet = grid(torch.cat([self.preview, out]).cpu(), columns=len(self.preview))
            metrics["sample"] = str(write_tensor(sheet, self.sample_dir / f"step_{self.step:06d}.png", overwrite=True))
        return metrics

    def _parts(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer}

    def state(self) -> dict:
        return run_state(self, "style", CHECKPOINT_VERSION, self._parts())

    def load_state(self, state: dict) -> None:
        load_run_state(self, state, self._parts())


def check_config(cfg: StyleTrainConfig) -> None:
    """Raises UsageError for settings the network cannot train with."""
    if cfg.patch % cfg.model.multiple or cfg.patch < cfg.model.min_side:
        raise UsageError(f"--patch must be a multiple of {cfg.model.multiple} and at least {cfg.model.min_side}, got {cfg.patch}")
    check_weights(cfg.loss)


def train_style(cfg: StyleTrainConfig, sources: Sequence[str], out_dir: Path, device: torch.device,
                resume: Optional[Path] = None, on_progress: Optional[Callable[[int, dict], None]] = None,
                command: str = "", overwrite: bool = False, export: Optional[tuple[str, Path]] = None) -> StyleTrainer:
    """Train (or resume) until ``cfg.steps`` a network for the painting
    ``cfg.style_image`` on the photos of ``sources`` (files, folders, globs).
    The other arguments are those of :func:`imgedit.training.train_or_resume`.

    Raises:
        UsageError: a missing painting or no photos, a bad setting, an unreadable checkpoint,
            or VGG weights that are not in the local torch cache.
    """
    from imgedit_style.stylize import read_style_image

    requested = cfg.style_image

    def build(cfg: StyleTrainConfig) -> StyleTrainer:
        check_config(cfg)
        if cfg.style_image != requested:
            logger.warning("resuming: the checkpoint's painting %s is used, not %s", cfg.style_image, requested)
        painting = read_style_image(cfg.style_image, cfg.style_size)
        pool = ImagePool(sources, min_side=cfg.model.min_side)
        pool.warn_smaller_than(cfg.patch, "their patches scaled up to it (blurred)")
        return StyleTrainer(cfg, pool, painting, device, Path(out_dir) / "samples")

    return train_or_resume(build, cfg, "style", out_dir, resume, on_progress, command, overwrite, sources, export)


def export_style(trainer: StyleTrainer, path: Path, *, name: str, description: str, sources: list,
                 session_seconds: float) -> None:
    """Write the network (fp16; loading casts back to fp32) and its model card:
    the command, data, steps, wall time, painting and loss-network recipe."""
    model = trainer.model.eval()
    painting = Path(trainer.cfg.style_image)
    card: dict[str, Any] = {
        "name": name,
        "description": description,
        "architecture": f"{StyleNet.__module__}.{StyleNet.__qualname__}",
        "model_config": trainer.cfg.model.to_dict(),
        "parameters": count_parameters(model),
        "storage_dtype": "float16",
        "style": {
            "image": str(painting),
            "image_sha256": sha256_file(painting) if painting.is_file() else None,
            "style_size": trainer.cfg.style_size,
            "loss_net": trainer.cfg.loss_net.to_dict(),
            "loss_net_recipe": trainer.cfg.loss_net.describe(),
            "loss": trainer.cfg.loss.to_dict(),
        },
        "training": {
            **training_summary(trainer, sources, len(trainer.pool), session_seconds),
            "last_log": trainer.history[-1] if trainer.history else None,
        },
        "data_licence": "the licences of the painting and of the training photos listed under training.data apply",
        "metrics": {},  # imgedit eval style --record fills this in
    }
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_weights(tensors, Path(path), card)
