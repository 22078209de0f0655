"""Noise-level estimation benchmark (not a test): the classical ``--sigma
auto`` (:func:`imgedit.noise.estimate_sigma_sampled`) against the learned
one (``sigma-net``, :mod:`imgedit_vae.sigma_net`, from ``imgedit train sigma``), on the evaluation sets.

1. Mean absolute error of the per-image estimate (0-255 scale) on Kodak24,
   CBSD68 and Set12 (gray) under: Gaussian noise at sigma 5/15/25/50/75,
   clipped and rounded to 8 bits as a file is; the same noise saved as JPEG
   at quality 75 and 90 (sigma 10/15/25); and the clean images (sigma 0).
   The target is the std of the noise added. One fixed seed per image.
2. End to end: ``denoise.vae`` PSNR (output rounded to 8 bits) with the
   classical estimate, the learned one and the true sigma, on a few Kodak
   images per protocol.
3. Time of each estimate on a 12-megapixel image.

    python benchmarks/bench_sigma.py                      # ../shared/data, the estimator trained last (see --weights)
    python benchmarks/bench_sigma.py --weights runs/sigma/sigma-net.safetensors --no-psnr
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "eval"
SETS = ("kodak24", "cbsd68", "set12")
# (name, sigma, JPEG quality or 0)
PROTOCOLS = (("clean", 0, 0), ("g5", 5, 0), ("g15", 15, 0), ("g25", 25, 0), ("g50", 50, 0), ("g75", 75, 0),
             ("j75-s10", 10, 75), ("j75-s15", 15, 75), ("j75-s25", 25, 75),
             ("j90-s10", 10, 90), ("j90-s15", 15, 90), ("j90-s25", 25, 90))
PSNR_IMAGES = ("kodim03", "kodim13", "kodim23")
PSNR_PROTOCOLS = ("clean", "g5", "g15", "g50", "g75", "j75-s15", "j90-s15")


def load_images(folder: Path) -> list[tuple[str, "torch.Tensor"]]:
    import numpy as np
    import torch
    from PIL import Image

    out = []
    for path in sorted(folder.glob("*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        out.append((path.stem, torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255))  # (1, 3, H, W)
    return out


def degraded(clean, sigma: float, quality: int, seed: int):
    import torch

    from imgedit_vae.train_sigma import degrade

    one = torch.ones(1, dtype=torch.bool)
    return degrade(clean, torch.tensor([float(sigma)]), one, torch.tensor([quality]), seed)


def default_weights() -> Path:
    """The estimator to measure without --weights: the shipped one if there is
    one, else where ``imgedit train sigma`` exports by default."""
    from imgedit_vae.export import default_export_path
    from imgedit_vae.operations import SIGMA_MODEL_NAME, model_spec

    shipped = model_spec(name=SIGMA_MODEL_NAME).weights
    return shipped if shipped.is_file() else default_export_path(SIGMA_MODEL_NAME)


def load_net(weights: Path):
    from imgedit.catalog import spec_for_file
    from imgedit.models import load_model
    from imgedit_vae.sigma_net import SigmaNet, SigmaNetConfig

    if not weights.is_file():
        raise SystemExit(f"no estimator at {weights}: train one with 'imgedit train sigma --data "
                         "../shared/data/train/cbsd432 --data ../shared/data/train/photos' or pass --weights")
    return load_model(spec_for_file(weights), lambda c: SigmaNet(SigmaNetConfig.from_dict(c))).eval()


def estimate_errors(root: Path, net) -> dict:
    """{(set, protocol): (classical MAE, learned MAE, classical mean, learned mean)}."""
    import torch

    from imgedit.noise import estimate_sigma_sampled
    from imgedit_vae.sigma_net import estimate_sigma_learned

    rows = {}
    for name in SETS:
        images = load_images(root / name)
        for protocol, sigma, quality in PROTOCOLS:
            classical, learned = [], []
            for i, (_, clean) in enumerate(images):
                noisy = degraded(clean, sigma, quality, seed=1000 * i + sigma)
                classical.append(float(estimate_sigma_sampled(noisy)[0]))
                learned.append(float(estimate_sigma_learned(noisy, net)[0]))
            c, l_ = torch.tensor(classical), torch.tensor(learned)
            rows[name, protocol] = ((c - sigma).abs().mean().item(), (l_ - sigma).abs().mean().item(),
                                    c.mean().item(), l_.mean().item())
            print(f"{name:8s} {protocol:8s} classical MAE {rows[name, protocol][0]:6.2f} (mean {c.mean():5.1f})   "
                  f"learned MAE {rows[name, protocol][1]:6.2f} (mean {l_.mean():5.1f})", flush=True)
    return rows


def psnr8(out, clean) -> float:
    import torch

    mse = ((out.clamp(0, 1) * 255).round() / 255 - clean).pow(2).mean()
    return float("inf") if mse == 0 else float(10 * torch.log10(1 / mse))


def end_to_end(root: Path, net) -> dict:
    """{(image, protocol): (noisy, classical, learned, true) PSNR, and the two estimates}."""
    import torch

    from imgedit.noise import estimate_sigma_sampled
    from imgedit_vae.denoise import denoise_vae, load_denoisers
    from imgedit_vae.sigma_net import estimate_sigma_learned

    model, gray_model = load_denoisers("cpu")
    images = dict(load_images(root / "kodak24"))
    rows = {}
    for stem in PSNR_IMAGES:
        clean = images[stem]
        for protocol, sigma, quality in PROTOCOLS:
            if protocol not in PSNR_PROTOCOLS:
                continue
            noisy = degraded(clean, sigma, quality, seed=7)
            est_c, est_l = float(estimate_sigma_sampled(noisy)[0]), float(estimate_sigma_learned(noisy, net)[0])
            with torch.inference_mode():
                scores = [psnr8(denoise_vae(noisy, model, s, gray_model=gray_model), clean)
                          for s in (est_c, est_l, sigma)]
            rows[stem, protocol] = (psnr8(noisy, clean), *scores, est_c, est_l)
            print(f"{stem} {protocol:8s} noisy {rows[stem, protocol][0]:5.2f}  classical {scores[0]:5.2f} (est {est_c:4.1f})  "
                  f"learned {scores[1]:5.2f} (est {est_l:4.1f})  true sigma {scores[2]:5.2f}", flush=True)
    return rows


def timing(net, repeats: int = 3) -> tuple[float, float]:
    import torch

    from imgedit.noise import estimate_sigma_sampled
    from imgedit_vae.sigma_net import estimate_sigma_learned

    image = torch.rand(1, 3, 3000, 4000)
    out = []
    for fn in (lambda: estimate_sigma_sampled(image), lambda: estimate_sigma_learned(image, net)):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        out.append((time.perf_counter() - start) / repeats)
    return out[0], out[1]


def summary(errors: dict, e2e: dict) -> str:
    lines = ["", "| protocol | " + " | ".join(f"{s} classical | {s} learned" for s in SETS) + " |",
             "|---" * (1 + 2 * len(SETS)) + "|"]
    for protocol, _, _ in PROTOCOLS:
        cells = [f"{errors[s, protocol][0]:.2f} | {errors[s, protocol][1]:.2f}" for s in SETS]
        lines.append(f"| {protocol} | " + " | ".join(cells) + " |")
    if e2e:
        lines += ["", "| image | protocol | noisy | auto classical | auto learned | true sigma |", "|---" * 6 + "|"]
        for (stem, protocol), (noisy, c, l_, t, est_c, est_l) in e2e.items():
            lines.append(f"| {stem} | {protocol} | {noisy:.2f} | {c:.2f} ({est_c:.1f}) | {l_:.2f} ({est_l:.1f}) | {t:.2f} |")
        for protocol in PSNR_PROTOCOLS:
            vals = [v for (s, p), v in e2e.items() if p == protocol]
            if protocol != "clean":
                mean = [sum(v[k] for v in vals) / len(vals) for k in range(4)]
                lines.append(f"| mean | {protocol} | {mean[0]:.2f} | {mean[1]:.2f} | {mean[2]:.2f} | {mean[3]:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the eval/ folder (kodak24, cbsd68, set12)")
    parser.add_argument("--weights", type=Path, help="a sigma-net .safetensors (default: the shipped one, else the one "
                        "'imgedit train sigma' exported to your weights folder)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-psnr", action="store_true", help="skip the end-to-end denoising part")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    net = load_net(args.weights or default_weights())
    errors = estimate_errors(args.data, net)
    e2e = {} if args.no_psnr else end_to_end(args.data, net)
    t_c, t_l = timing(net)
    print(summary(errors, e2e))
    print(f"\n12 MP estimate ({args.threads} threads): classical {t_c * 1000:.0f} ms, learned {t_l * 1000:.0f} ms")


if __name__ == "__main__":
    main()
