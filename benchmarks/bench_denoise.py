"""Learned denoiser benchmark (not a test): speed and memory of ``denoise.vae``.

1. Throughput on this machine's CPU (fp32, or bf16 as ``--precision bf16``
   runs it): megapixels per second of the model on a Kodak-sized (768x512)
   and a 2-megapixel image, after warm-up.
2. Peak memory of ``imgedit denoise`` on a 12-megapixel photo (a fresh
   process; its peak RSS as the kernel reports it), whole-file: read, tile,
   denoise, write.

Quality (PSNR/SSIM) is measured by ``imgedit eval denoise``.

    python benchmarks/bench_denoise.py
    python benchmarks/bench_denoise.py --threads 2 --megapixels 12
    python benchmarks/bench_denoise.py --threads 2 --ensemble 1
    python benchmarks/bench_denoise.py --threads 2 --precision bf16
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def throughput(height: int, width: int, repeats: int, ensemble: int, precision: str) -> float:
    import torch

    from imgedit.devices import PRECISIONS, compute_scope
    from imgedit_vae.denoise import denoise_vae, load_denoiser

    model = load_denoiser("cpu")
    image = torch.rand(1, 3, height, width)
    with torch.inference_mode(), compute_scope(torch.device("cpu"), PRECISIONS[precision])[1]:
        denoise_vae(image, model, 25.0, ensemble=ensemble)  # warm-up: oneDNN picks its kernels
        start = time.perf_counter()
        for _ in range(repeats):
            denoise_vae(image, model, 25.0, ensemble=ensemble)
    return repeats * height * width / 1e6 / (time.perf_counter() - start)


def peak_rss_of_cli(megapixels: float, ensemble: int, precision: str) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of ``imgedit denoise`` on a noisy photo of that size."""
    import numpy as np
    from PIL import Image

    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.3 * np.sin(x / 40) * np.cos(y / 50)], -1) * 255
    noisy = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.png"
        Image.fromarray(noisy).save(src)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imgedit", "denoise", str(src), "-o", str(Path(tmp) / "out.png"), "-q",
                        "--sigma", "20", "--ensemble", str(ensemble), "--precision", precision], check=True)
        seconds = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--megapixels", type=float, default=12.0, help="size of the photo for the memory run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ensemble", type=int, help="flipped/rotated copies averaged (default: as 'imgedit denoise' runs it)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: as '--precision bf16' runs it (autocast; pays off on CPUs with AVX512-BF16 or AMX)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ensemble is None:
        from imgedit_vae.operations import DENOISE_COPIES

        args.ensemble = DENOISE_COPIES
    from imgedit.devices import cpu_has_bf16

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.precision} "
          f"(native bf16: {'yes' if cpu_has_bf16() else 'no'}), ensemble of {args.ensemble}")
    for h, w in [(512, 768), (1200, 1600)]:
        print(f"denoise.vae {w}x{h}: {throughput(h, w, args.repeats, args.ensemble, args.precision):.2f} MP/s")
    rss, seconds = peak_rss_of_cli(args.megapixels, args.ensemble, args.precision)
    print(f"imgedit denoise on a {args.megapixels:g} MP PNG: peak RSS {rss:.0f} MB, {seconds:.1f} s end to end")


if __name__ == "__main__":
    main()
