"""GAN sampler benchmark (not a test): images per second at 64x64.

1. The generator alone (``GANSampler.decode``, fp32, inference): img/s at
   several batch sizes, after warm-up. The target is >= 200 img/s on 2 CPU
   cores.
2. ``imgedit sample``'s whole path for 256 images: latents, generator, PNG
   encoding and atomic writes (with and without the per-file fsync).

Uses the shipped ``faces64-gan`` when its weights exist, else an untrained
generator of the same architecture (speed does not depend on the weights).
Quality is measured by ``imgedit eval gan``.

    python benchmarks/bench_gan.py --threads 2
    python benchmarks/bench_gan.py --model my-gan --batches 1,64,256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def load(model: str):
    from imgedit.errors import WeightsError
    from imgedit.latents import load_latent_model
    from imgedit_gan.model import GANConfig, Generator
    from imgedit_gan.sampler import GANSampler

    try:
        return load_latent_model(model, "cpu"), model
    except WeightsError:
        return GANSampler(Generator(GANConfig())), "untrained default GANConfig (no weights yet)"


def images_per_second(sampler, batch: int, seconds: float) -> float:
    z = sampler.sample_latents(batch, seed=0)
    sampler.decode(z)  # warm-up: oneDNN picks its kernels
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sampler.decode(z)
        done += batch
    return done / (time.perf_counter() - start)


def write_speed(sampler, n: int, durable: bool) -> float:
    """img/s of sampling ``n`` images and writing each as a PNG (atomic; fsync if ``durable``)."""
    from imgedit.tensor import write_tensor

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        images = sampler.decode(sampler.sample_latents(n, seed=1))
        for k, image in enumerate(images):
            write_tensor(image, Path(tmp) / f"{k:04d}.png", durable=durable)
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="faces64-gan")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batches", default="1,16,64,256", help="batch sizes, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sampler, what = load(args.model)
    params = sum(p.numel() for p in sampler.net.parameters()) / 1e6
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, fp32; {what}: "
          f"{sampler.image_size[0]}x{sampler.image_size[1]}, {params:.2f} M parameters")
    for batch in (int(b) for b in args.batches.split(",")):
        print(f"generator, batch {batch:>4}: {images_per_second(sampler, batch, args.seconds):8.1f} img/s")
    for durable in (False, True):
        print(f"sample + write 256 PNGs{' (fsync each)' if durable else ''}: {write_speed(sampler, 256, durable):8.1f} img/s")


if __name__ == "__main__":
    main()
