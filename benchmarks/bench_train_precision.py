"""Training-step time of the VAE trainers in fp32 and bf16 (not a test).

Builds each trainer on synthetic images (no data needed), runs a few warm-up
steps and reports the median time of the next ones for ``--precision fp32``
and ``bf16`` (:func:`imgedit.training.autocast`). bf16 pays off on CPUs with
AMX or AVX512-BF16 (``lscpu | grep -o 'amx_bf16\\|avx512_bf16'``); on
others it is slower.

    python benchmarks/bench_train_precision.py
    python benchmarks/bench_train_precision.py --threads 2 --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def make_images(folder: Path, count: int = 6, size: int = 320) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        a, b, c = rng.uniform(2, 9, 3)  # smooth bands plus a little texture: a photo-like range of values
        rgb = np.stack([np.sin(a * x + i), np.cos(b * y), np.sin(c * (x + y))], -1) * 0.4 + 0.5
        rgb += rng.normal(0, 0.03, rgb.shape)
        Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"{i}.png")


def step_seconds(kind: str, precision: str, folder: Path, steps: int) -> float:
    import torch

    from imgedit.imagepool import ImagePool

    pool = ImagePool([folder])
    if kind == "denoise":
        from imgedit_vae.model import VAEConfig
        from imgedit_vae.train_denoise import TrainConfig, Trainer

        cfg = TrainConfig(batch=16, patch=96, val_images=1, precision=precision,
                          model=VAEConfig(widths=(48, 64, 80, 96), blocks=(2, 2, 2, 1)))  # the shipped model
        trainer = Trainer(cfg, pool, torch.device("cpu"))
    else:
        from imgedit_vae.train_inpaint import InpaintTrainConfig, InpaintTrainer

        trainer = InpaintTrainer(InpaintTrainConfig(batch=8, patch=128, val_images=1, precision=precision),
                                 pool, torch.device("cpu"))
    for _ in range(2):  # warm-up: oneDNN picks its kernels
        trainer.train_step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per case (after 2 warm-up steps)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        make_images(Path(tmp))
        for kind, shape in (("denoise", "batch 16 x 96 px"), ("inpaint", "batch 8 x 128 px")):
            fp32, bf16 = (step_seconds(kind, p, Path(tmp), args.steps) for p in ("fp32", "bf16"))
            print(f"{kind:8s} ({shape}, {args.threads} threads): fp32 {fp32:.3f} s/step, bf16 {bf16:.3f} s/step, "
                  f"{fp32 / bf16:.2f}x")


if __name__ == "__main__":
    main()
