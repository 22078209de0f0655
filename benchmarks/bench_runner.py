"""Batch runner benchmark (not a test).

1. Throughput with a cheap operation (invert) against a bare Pillow
   decode-then-encode loop over the same files with the same encoder settings.
2. A compute-bound operation: wall time of the whole run against the time the
   operation itself spends computing (measured inside the applier).
3. Peak RSS while processing N images (sampled as the run goes): flat means
   memory does not grow with the number of images.

    python benchmarks/bench_runner.py            # 200 cbsd432 images + 66 large photos
    python benchmarks/bench_runner.py --data ../shared/data/train/cbsd432 --rss 1000
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import bare_pillow  # noqa: E402

COMPUTE_SECONDS = [0.0]


def _plugin() -> None:
    """Register a cheap and a compute-bound operation, as a plugin would."""
    import torch

    from imgedit import hookimpl
    from imgedit.operations import Capabilities, Operation
    from imgedit.plugins import register_plugin

    def cheap(ctx):
        return lambda image, mask: 1.0 - image

    def heavy(ctx):
        torch.manual_seed(0)
        net = torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 5, padding=2) for _ in range(6)]).eval()

        def apply(image, mask):
            t0 = time.perf_counter()
            with torch.no_grad():
                out = net(image).sigmoid()
            COMPUTE_SECONDS[0] += time.perf_counter() - t0
            return out

        return apply

    module = types.ModuleType("bench_ops")
    module.register_operations = hookimpl(
        lambda register: [
            register(Operation("cheap", "invert", cheap)),
            register(Operation("heavy", "convs", heavy, capabilities=Capabilities(tileable=True, tile_overlap=12))),
        ]
    )
    register_plugin(module, "bench_ops")


def _run(op: str, files: list[Path], out: Path, workers: int, on_result=None) -> float:
    from imgedit.inputs import InputFile
    from imgedit.pipeline import Pipeline
    from imgedit.runner import RunOptions, run_files

    items = [InputFile(p, p.parent) for p in files]
    t0 = time.perf_counter()
    summary = run_files(Pipeline.parse(op), items, RunOptions(output=out, workers=workers), on_result=on_result)
    assert not summary.failed, summary.failed[:3]
    return time.perf_counter() - t0


def throughput(files: list[Path], workers: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as warm:
        _run("cheap", files[:3], Path(warm), workers)  # start-up (imports) is not per-image cost
    bare, ours = [], []
    for _ in range(repeat):  # interleaved, so both see the same machine load
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            bare.append(bare_pillow(files, Path(a), 95))
            ours.append(_run("cheap", files, Path(b), workers))
    n = len(files)
    print(f"cheap op: bare Pillow {n / min(bare):.1f} img/s, imgedit {n / min(ours):.1f} img/s "
          f"= {100 * min(bare) / min(ours):.0f}% of bare (best of {repeat}, {workers} I/O workers)")
    # each pair ran back to back, so its ratio sees one machine load; the median resists the VM's noise
    pairs = sorted(100 * b / o for b, o in zip(bare, ours))
    print(f"  per pair: {', '.join(f'{r:.0f}%' for r in pairs)}; median {statistics.median(pairs):.0f}%")


def compute_bound(files: list[Path], workers: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        COMPUTE_SECONDS[0] = 0.0
        wall = _run("heavy", files, Path(d), workers)
    compute = COMPUTE_SECONDS[0]
    print(f"compute-bound op: wall {wall:.2f}s, op compute {compute:.2f}s, "
          f"wall is {100 * (wall / compute - 1):+.1f}% over compute")


def rss(files: list[Path], count: int, workers: int) -> None:
    repeated = [files[i % len(files)] for i in range(count)]
    samples: list[tuple[int, float]] = []

    def sample(result) -> None:
        done = len(samples) + 1
        samples.append((done, _rss_mb()))

    with tempfile.TemporaryDirectory() as d:
        # distinct output names for repeated inputs: link them into one folder
        src = Path(d) / "in"
        src.mkdir()
        links = []
        for i, path in enumerate(repeated):
            link = src / f"{i:05d}{path.suffix}"
            link.symlink_to(path.resolve())
            links.append(link)
        _run("cheap", links, Path(d) / "out", workers, on_result=sample)
    marks = [samples[int(len(samples) * f) - 1] for f in (0.1, 0.25, 0.5, 0.75, 1.0)]
    print("RSS (MB) after images: " + ", ".join(f"{n}: {mb:.0f}" for n, mb in marks))
    # until every distinct file has been seen once (the large photos come last) RSS rises to the
    # working set of the largest images; growth is what comes after that
    first_pass = samples[min(len(files), len(samples)) - 1]
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; growth from the end of the "
          f"first pass over the {len(files)} files ({first_pass[1]:.0f} MB) to image {marks[-1][0]}: "
          f"{marks[-1][1] - first_pass[1]:+.0f} MB")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(__file__).resolve().parents[2] / "shared/data/train"
    parser.add_argument("--data", type=Path, action="append", help="image folder (repeatable; default: "
                        "200 images of cbsd432 and the 66 large photos of ../shared/data/train)")
    parser.add_argument("--limit", type=int, default=200, help="images per folder, at most")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each loop; the best counts")
    parser.add_argument("--rss", type=int, default=0, help="also measure RSS over this many images")
    args = parser.parse_args()
    folders = args.data or [shared / "cbsd432", shared / "photos"]
    files = [f for folder in folders for f in _images(folder)[: args.limit]]
    if not files:
        sys.exit(f"no images in {', '.join(map(str, folders))}")
    print(f"{len(files)} images from {', '.join(f.name for f in folders)}")
    from imgedit.process_tuning import tune_for_batch

    tune_for_batch()  # as the CLI does, before torch is imported
    _plugin()
    throughput(files, args.workers, args.repeat)
    compute_bound(files, args.workers)
    if args.rss:
        rss(files, args.rss, args.workers)


if __name__ == "__main__":
    main()
