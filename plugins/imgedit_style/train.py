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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence

import torch

from imgedit import distributed
from imgedit.errors import UsageError
from imgedit.imagepool import ImagePool
from imgedit.models import sha256_file
from imgedit.checkpoint import checkpoint_info
from imgedit.training import (export_model, learning_rate, load_run_state, run_folder, run_state, train_or_resume,
                              training_summary)
from imgedit_style.losses import StyleLossConfig, check_weights
from imgedit_style.lossnet import LossNetConfig, build_loss_net
from imgedit_style.model import StyleNet, StyleNetConfig
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

    # the settings each option of 'imgedit train style' sets where they are not named alike
    # (imgedit.options.typed_settings); the painting is compared by its content, not its path
    OPTION_FIELDS: ClassVar[dict] = {
        "style_image": (), "skips": ("model.skips",), "content_weight": ("loss.content_weight",),
        "tv_weight": ("loss.tv_weight",), "loss_net": ("loss_net.kind",), "loss_seed": ("loss_net.seed",),
        "preview_every": ("val_every", "checkpoint_every"),
    }

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StyleTrainConfig":
        return cls(**{**d, "model": StyleNetConfig.from_dict(d["model"]), "loss": StyleLossConfig.from_dict(d["loss"]),
                      "loss_net": LossNetConfig.from_dict(d["loss_net"])})


class StyleTrainer:
    """Network, optimizer, data, loss and random state of one run (the trainer
    :func:`imgedit.training.fit` expects). Its checkpoints keep the painting
    as trained on (pixels at ``style_size``) and its file's sha256: a resumed
    run goes on with exactly that painting, wherever the file is now.

    Args:
        painting: ``(1, 3, h, w)`` in [0, 1]; None where :meth:`load_state`
            gives the checkpoint's.
        painting_sha256: the painting file's sha256.
    """

    def __init__(self, cfg: StyleTrainConfig, pool: ImagePool, painting: Optional[torch.Tensor], device: torch.device,
                 sample_dir: Optional[Path] = None, painting_sha256: str = ""):
        self.cfg, self.device, self.pool, self.sample_dir = cfg, device, pool, sample_dir
        torch.manual_seed(cfg.seed)
        self.model = StyleNet(cfg.model).to(device)
        self.net = distributed.wrap(self.model)  # what trains: under torchrun, gradients averaged over processes
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        every = max(1, len(pool) // max(cfg.val, 1))  # whole photos, spread over the pool: (val, 3, patch, patch)
        self.preview = (pool.subset(list(range(0, len(pool), every))[: cfg.val]).squares(cfg.patch).float() / 255).to(device)
        self.loss_net = build_loss_net(cfg.loss_net, device)
        self.painting: Optional[torch.Tensor] = None
        self.painting_sha256 = ""
        if painting is not None:
            self.use_painting(painting, painting_sha256)
        self.step, self.elapsed, self.history = 0, 0.0, []
        self.commands: list[str] = []

    def use_painting(self, painting: torch.Tensor, sha256: str) -> None:
        """Train towards ``painting`` ``(1, 3, h, w)``, whose file has ``sha256``."""
        self.painting, self.painting_sha256 = painting.cpu(), sha256
        self.objective = StyleObjective(self.loss_net, painting.to(self.device), self.cfg.loss,
                                        content_photos=self.preview)

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
        return {**run_state(self, "style", CHECKPOINT_VERSION, self._parts()),
                "painting": self.painting, "painting_sha256": self.painting_sha256}

    def load_state(self, state: dict) -> None:
        load_run_state(self, state, self._parts())
        if state.get("painting") is not None:  # a checkpoint made before it kept the painting: the file's, as read
            self.use_painting(state["painting"], state["painting_sha256"])


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
    A resumed run goes on with its checkpoint's painting; ``cfg.style_image``
    may then be "" or the painting's file, moved or not, but with the same content.
    The other arguments are those of :func:`imgedit.training.train_or_resume`.

    Raises:
        UsageError: a missing painting or no photos, a painting other than
            the resumed run's, a bad setting, an unreadable checkpoint, or
            VGG weights that are not in the local torch cache.
    """
    from imgedit_style.stylize import read_style_image

    requested = cfg.style_image
    kept = kept_painting(resume)
    if kept is None and not requested:
        raise UsageError("--style-image: give the painting to train on")
    if kept is not None and requested:
        check_same_painting(Path(requested), *kept)
    out_dir = run_folder(out_dir, resume)

    def build(cfg: StyleTrainConfig) -> StyleTrainer:
        check_config(cfg)
        painting, sha256 = None, ""  # a checkpoint that keeps the painting gives it: the file may have moved
        if kept is not None and requested:
            cfg = replace(cfg, style_image=requested)  # the same painting, where it is now
        elif kept is None:
            if cfg.style_image != requested:
                logger.warning("resuming: the checkpoint's painting %s is used, not %s", cfg.style_image, requested)
            painting = read_style_image(cfg.style_image, cfg.style_size)
            sha256 = sha256_file(Path(cfg.style_image).expanduser())
        pool = ImagePool(sources, min_side=cfg.model.min_side)
        pool.warn_smaller_than(cfg.patch, "their patches scaled up to it (blurred)")
        return StyleTrainer(cfg, pool, painting, device, out_dir / "samples", sha256)

    return train_or_resume(build, cfg, "style", out_dir, resume, on_progress, command, overwrite, sources, export)


def kept_painting(resume: Optional[Path]) -> Optional[tuple[str, str]]:
    """(file, sha256) of the painting the checkpoint ``resume`` keeps, read
    without its tensors; None for a new run, or a checkpoint made before
    checkpoints kept the painting.

    Raises:
        UsageError: the checkpoint is missing, unreadable or not a style run's.
    """
    if resume is None:
        return None
    info = checkpoint_info(resume, "style")
    return (info["config"]["style_image"], info["painting_sha256"]) if info.get("painting_sha256") else None


def check_same_painting(path: Path, kept_file: str, kept_sha256: str) -> None:
    """Refuse a ``--style-image`` whose content is not the painting a resumed
    run trains on (a moved copy is that painting; an edited file is not).

    Raises:
        UsageError: the file is missing, a folder, or holds another painting.
    """
    from imgedit_style.operations import check_style_image

    check_style_image(path)
    if sha256_file(path) != kept_sha256:
        raise UsageError(f"--style-image {path} is not the painting this run trains on ({Path(kept_file).name}, "
                         f"sha256 {kept_sha256[:12]}...): its content differs; leave out --style-image to go on with "
                         "the checkpoint's painting, or start a new run for this one")


def export_style(trainer: StyleTrainer, path: Path, *, name: str, description: str, sources: list,
                 session_seconds: float) -> None:
    """Write the network (fp16) and its model card:
    the command, data, steps, wall time, painting and loss-network recipe."""
    model = trainer.model.eval()
    painting = Path(trainer.cfg.style_image)
    export_model(
        model, path, name=name, description=description, config=trainer.cfg.model.to_dict(), step=trainer.step,
        style={
            "image": str(painting),
            "image_sha256": trainer.painting_sha256 or None,  # of the painting trained on, whatever the file holds now
            "style_size": trainer.cfg.style_size,
            "loss_net": trainer.cfg.loss_net.to_dict(),
            "loss_net_recipe": trainer.cfg.loss_net.describe(),
            "loss": trainer.cfg.loss.to_dict(),
        },
        training={
            **training_summary(trainer, sources, len(trainer.pool), session_seconds),
            "last_log": trainer.history[-1] if trainer.history else None,
        },
        data_licence="the licences of the painting and of the training photos listed under training.data apply",
        metrics={},  # imgedit eval style --record fills this in
    )
