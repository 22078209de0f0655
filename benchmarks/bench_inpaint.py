"""Learned inpainting benchmark (not a test): time of ``inpaint.vae`` fills.

1. A 512x512 image with LaMa-style holes (thin, medium, thick; a few seeded
   masks each): seconds per fill, median and worst, after warm-up. A
   mask's time is the fastest of its ``--repeats`` fills (as ``timeit``
   advises: other work on the machine only ever adds time), so the worst
   fill names the slowest mask, not the one fill a busy moment slowed;
   the slowest single fill is printed beside it. Thin
   strokes all over the image are the slow case: they are filled at full
   resolution over the whole image.
2. A 24-megapixel photo with one small hole: the model runs on a crop
   around the hole; what the photo's size still costs is the whole-image
   bookkeeping (finding the holes, copying the output).
3. With ``--large``, the same photo with a 1000x2000-px ellipse (the seam
   correction's blurs, done at reduced scale) and with a 2-px scratch
   across it (filled in 512-px pieces at full size): tens of seconds each.

Quality (PSNR/SSIM, contact sheets) is measured by ``imgedit eval inpaint``.

    python benchmarks/bench_inpaint.py
    python benchmarks/bench_inpaint.py --threads 2 --masks 8
    python benchmarks/bench_inpaint.py --threads 2 --precision bf16
    python benchmarks/bench_inpaint.py --threads 2 --large
"""

from __future__ import annotations

import argparse
import statistics
import time


def seconds(fill, image, mask, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fill(image, mask)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--masks", type=int, default=4, help="seeded masks per kind")
    parser.add_argument("--repeats", type=int, default=2, help="timed fills per mask")
    parser.add_argument("--weights", help="weights to time (default: the shipped inpaint-vae)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: as '--precision bf16' runs it (autocast; pays off on CPUs with AVX512-BF16 or AMX)")
    parser.add_argument("--ensemble", type=int, choices=range(1, 9), metavar="N",
                        help="copies per working scale, as 'inpaint --ensemble N' (default: as 'inpaint' runs it)")
    parser.add_argument("--large", action="store_true", help="also time a large hole and a long scratch on the 24 MP photo")
    args = parser.parse_args()
    import torch

    from imgedit.devices import PRECISIONS, compute_scope, cpu_has_bf16

    from imgedit_vae.holes import KINDS, random_hole_mask
    from imgedit_vae.inpaint import inpaint_vae, load_inpainter

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_inpainter(torch.device("cpu"), args.weights)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.precision} "
          f"(native bf16: {'yes' if cpu_has_bf16() else 'no'}), {parameters / 1e6:.2f} M parameters")

    def fill(image, mask):
        with compute_scope(torch.device("cpu"), PRECISIONS[args.precision])[1]:
            return inpaint_vae(image, mask, model, ensemble=args.ensemble)

    image = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    fill(image, random_hole_mask(512, 512, "thin", torch.Generator().manual_seed(0))[None])  # warm-up
    worst = slowest = 0.0
    for kind in KINDS:
        generator = torch.Generator().manual_seed(0)
        times, shares = [], []
        for _ in range(args.masks):
            mask = random_hole_mask(512, 512, kind, generator)[None]
            shares.append(float(mask.mean()))
            repeats = seconds(fill, image, mask, args.repeats)
            times.append(min(repeats))
            slowest = max(slowest, max(repeats))
        worst = max(worst, max(times))
        print(f"512x512 {kind:<6} (hole {100 * statistics.mean(shares):4.1f}% on average): "
              f"median {statistics.median(times):.3f} s, worst {max(times):.3f} s per fill")
    print(f"512x512 worst fill: {worst:.3f} s (slowest single fill: {slowest:.3f} s)")

    big = torch.rand(1, 3, 4000, 6000, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 1, 4000, 6000)
    mask[..., 2000:2060, 3000:3080] = 1  # 60x80 px
    times = seconds(fill, big, mask, max(3, args.repeats))  # whole-image copies: the first calls page memory in
    print(f"6000x4000 (24 MP) with a 60x80 hole: median {statistics.median(times):.3f} s per fill")
    if args.large:
        import cv2
        import numpy as np

        for name, width, draw in (("a 1000x2000 ellipse", -1, lambda m, w: cv2.ellipse(m, (3000, 2000), (500, 1000), 0, 0, 360, 1, w)),
                                  ("a 2-px scratch across it", 2, lambda m, w: cv2.line(m, (200, 300), (5800, 3400), 1, w))):
            hole = np.zeros((4000, 6000), np.uint8)
            draw(hole, width)
            (elapsed,) = seconds(fill, big, torch.from_numpy(hole).float()[None, None], 1)
            print(f"6000x4000 (24 MP) with {name}: {elapsed:.1f} s")


if __name__ == "__main__":
    main()
