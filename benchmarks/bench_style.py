"""Style network benchmark (not a test): megapixels per second, fp32, CPU.

1. The fast network alone (``imgedit_style.stylize.stylise``: padding,
   network, cropping), inference, at several photo sizes, after warm-up.
   The target is >= 1 MP/s on 2 CPU cores (a 1024x1024 photo in <= 1 s).
2. Optionally (``--train``) the time of one training step of
   ``imgedit train style`` at the default batch and crop size, with the
   default random loss network, to plan a training run.

Uses the style ``--style`` when its weights exist, else an untrained
network of the default architecture (speed does not depend on the weights).

    python benchmarks/bench_style.py --threads 2
    python benchmarks/bench_style.py --threads 1 --sizes 512,1024 --train
"""

from __future__ import annotations

import argparse
import time


def load(style: str):
    from imgedit.errors import ImgeditError
    from imgedit_style.catalog import resolve_style
    from imgedit_style.model import StyleNet, StyleNetConfig
    from imgedit_style.stylize import load_style_net

    try:
        return load_style_net(resolve_style(style)), style
    except ImgeditError:
        return StyleNet(StyleNetConfig()).eval().requires_grad_(False), "untrained default StyleNetConfig (no weights yet)"


def seconds_per_image(net, size: int, repeats: int) -> float:
    """Best of ``repeats`` runs on one ``size`` x ``size`` photo."""
    import torch

    from imgedit_style.stylize import stylise

    photo = torch.rand(1, 3, size, size)
    stylise(photo, net, scale=size)  # warm-up: oneDNN picks its kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        stylise(photo, net, scale=size)
        best = min(best, time.perf_counter() - start)
    return best


def training_step_seconds(steps: int) -> float:
    """Mean time of a training step (default config, random photos), after one warm-up step."""
    import torch

    from imgedit_style.losses import StyleLossConfig
    from imgedit_style.lossnet import build_loss_net
    from imgedit_style.model import StyleNet
    from imgedit_style.optimize import StyleObjective
    from imgedit_style.train import StyleTrainConfig

    cfg = StyleTrainConfig()
    net = StyleNet(cfg.model)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    objective = StyleObjective(build_loss_net(cfg.loss_net), torch.rand(1, 3, cfg.style_size, cfg.style_size), StyleLossConfig())
    photos = torch.rand(cfg.batch, 3, cfg.patch, cfg.patch)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = objective(net(photos), photos)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", default="mosaic")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--sizes", default="256,512,1024,2048", help="square photo sides, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size (the best is kept)")
    parser.add_argument("--train", action="store_true", help="also time training steps")
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()
    import torch

    from imgedit_style.model import count_parameters

    if args.threads:
        torch.set_num_threads(args.threads)
    net, what = load(args.style)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, fp32; {what}: "
          f"{count_parameters(net) / 1e6:.3f} M parameters")
    for size in (int(s) for s in args.sizes.split(",")):
        seconds = seconds_per_image(net, size, args.repeats)
        print(f"{size:>5}x{size:<5} {seconds:7.3f} s  {size * size / 1e6 / seconds:6.2f} MP/s")
    if args.train:
        from imgedit_style.train import StyleTrainConfig

        cfg = StyleTrainConfig()
        print(f"training step (batch {cfg.batch}, {cfg.patch} px crops, painting at {cfg.style_size} px, "
              f"loss net {cfg.loss_net.describe()}): {training_step_seconds(args.train_steps):.2f} s")


if __name__ == "__main__":
    main()
