"""How much of an inpainting gap a better model could close (not a test).

Beside the model's default fill and Navier-Stokes, fills each hole with an
*oracle*: the ground truth itself, area-averaged down to where the hole's
half-width is R px (the same crops and scales ``inpaint.vae`` works at) and
scaled back up. It keeps only the truth's low frequencies: what a model could
in principle predict from context, without guessing fine detail. If the
oracle at small R is far above the model, the error is in *what* lies under
the hole (colours, shapes), and better training, not finer output, is the
way to close it.

Measured (Kodak24, thick, seed 0, whole-image PSNR): model 26.00 (26.02 with
the shipped weights and copy budgets now), NS 24.51,
oracle R = 4: 28.69, R = 8: 30.24, R = 16: 32.10.

    python benchmarks/inpaint_headroom.py --data ../shared/data/eval/kodak24 --masks thick --seed 0
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch


def low_passed_truth(image: torch.Tensor, hole: torch.Tensor, radius: float) -> torch.Tensor:
    """``image`` with each hole replaced by the image itself seen at the
    scale that brings the hole's half-width to ``radius`` px."""
    from imgedit_vae.inpaint import _resize, hole_regions, working_scales, working_size

    out = image.clone()
    for r in hole_regions(hole[0, 0].numpy()):
        crop = (..., slice(r.top, r.bottom), slice(r.left, r.right))
        part, part_hole = image[crop], hole[crop]
        size = working_size(part.shape, working_scales(part_hole[0, 0].numpy(), (radius,))[0])
        low = _resize(_resize(part, size), tuple(part.shape[-2:]))
        out[crop] = torch.where(part_hole, low, part)
    return out.clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder of complete images")
    parser.add_argument("--masks", default="thick", help="hole kinds, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--radii", default="4,8,16", help="oracle radii in px, comma-separated")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from imgedit_vae.evaluate_inpaint import _tensor, classical_methods, synthetic_cases
    from imgedit_vae.inpaint import inpaint_vae, load_inpainter
    from imgedit_vae.metrics import psnr

    model, ns = load_inpainter(), classical_methods()["ns"]
    images = [(p, _tensor(p)) for p in sorted(Path(args.data).iterdir()) if p.is_file()]
    radii = [float(r) for r in args.radii.split(",")]
    scores: dict[tuple[str, str], list[float]] = {}
    for case in synthetic_cases(images, args.masks.split(","), args.seed):
        hole = case.mask > 0.5
        with torch.inference_mode():
            fills = {"model": inpaint_vae(case.image, case.mask, model), "ns": ns(case.image, case.mask)}
        fills.update({f"oracle R={r:g}": low_passed_truth(case.image, hole, r) for r in radii})
        for name, fill in fills.items():
            scores.setdefault((case.group, name), []).append(float(psnr(fill, case.image)))
    print(f"{args.data}, mask seed {args.seed}: whole-image PSNR (dB), mean over images")
    for (group, name), values in scores.items():
        print(f"  {group:<8} {name:<14} {statistics.mean(values):7.2f}")


if __name__ == "__main__":
    main()
