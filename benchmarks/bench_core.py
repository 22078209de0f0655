"""Core overhead benchmark (not a test).

Reports:
1. wall time of ``imgedit --help`` (a fresh interpreter each time);
2. the I/O overhead of a no-op round trip through imgedit's runner (decode,
   tensor, identity operation, encode, atomic write) against a bare Pillow
   decode + encode of the same files.

    python benchmarks/bench_core.py --data ../shared/data/train/cbsd432 --limit 200
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path


def time_help(repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imgedit", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def bare_pillow(files: list[Path], out: Path, quality: int) -> float:
    """The floor: Pillow decode + encode with the encoder settings imgedit
    uses (JPEG 4:4:4 chroma at quality >= 90), one file after another."""
    from PIL import Image

    t0 = time.perf_counter()
    for path in files:
        with Image.open(path) as im:
            im.load()
            im.save(out / path.name, quality=quality, subsampling=0 if quality >= 90 else 2)
    return time.perf_counter() - t0


def through_imgedit(files: list[Path], out: Path, quality: int) -> float:
    from imgedit import hookimpl
    from imgedit.inputs import InputFile
    from imgedit.operations import Capabilities, Operation
    from imgedit.pipeline import Pipeline
    from imgedit.plugins import register_plugin
    from imgedit.runner import RunOptions, run_files

    noop = Operation("noop", "identity", lambda ctx: (lambda image, mask: image), capabilities=Capabilities())
    module = types.ModuleType("bench_noop")
    module.register_operations = hookimpl(lambda register: register(noop))
    register_plugin(module, "bench_noop")
    pipeline = Pipeline.parse("noop")
    items = [InputFile(p, p.parent) for p in files]
    with tempfile.TemporaryDirectory() as warm:  # imports (torch) are start-up, not per-image cost
        run_files(pipeline, items[:3], RunOptions(output=Path(warm), device="cpu"))
    t0 = time.perf_counter()
    summary = run_files(pipeline, items, RunOptions(output=out, quality=quality, device="cpu"))
    elapsed = time.perf_counter() - t0
    assert not summary.failed, summary.failed[:3]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/train/cbsd432")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quality", type=int, default=95)
    args = parser.parse_args()

    helps = time_help(args.repeats)
    print(f"imgedit --help: median {statistics.median(helps):.3f}s  min {min(helps):.3f}s  ({args.repeats} runs)")

    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[: args.limit]
    if not files:
        sys.exit(f"no images in {args.data}")
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        bare_pillow(files[:5], Path(a), args.quality)  # warm the caches
        bare = bare_pillow(files, Path(a), args.quality)
        ours = through_imgedit(files, Path(b), args.quality)
    n = len(files)
    print(f"bare Pillow decode+encode: {bare:.2f}s for {n} images ({n / bare:.1f} img/s)")
    print(f"imgedit no-op round trip:  {ours:.2f}s for {n} images ({n / ours:.1f} img/s)")
    print(f"overhead: {100 * (ours / bare - 1):+.1f}%  (imgedit throughput = {100 * bare / ours:.0f}% of bare Pillow)")


if __name__ == "__main__":
    main()
