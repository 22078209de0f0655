"""Data-parallel training benchmark (not a test): does splitting each global
batch over N processes cost more than running one process with N threads?

Runs the same ``imgedit train VERB`` (same global batch, same steps) twice
on an otherwise idle machine:

- 1 process with ``--threads`` threads (``OMP_NUM_THREADS``), and
- ``--nproc`` processes under torchrun (``--nproc``), one thread each,

and reports, for each, the wall time of the whole command (start-up, data
loading and validation included) and the time spent in training steps (the
``elapsed`` of the run's log: what grows with the number of steps), plus
the ratios DDP / single. Issue 10's target: at most 1.15x.

    python benchmarks/bench_ddp.py --data ../shared/data/train/photos
    python benchmarks/bench_ddp.py --verb style --data ../shared/data/train/photos --extra "--style-image ../shared/data/styles/candy.jpg --patch 128"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(verb: str, data: str, steps: int, batch: int, extra: list[str], nproc: int, threads: int, out: Path) -> dict:
    command = [sys.executable, "-m", "imgedit", "train", verb, "--data", data, "--steps", str(steps), "--batch",
               str(batch), "--out", str(out), "--export", str(out / "w.safetensors"), "--nproc", str(nproc), "-q",
               *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    return {"processes": nproc, "threads_each": threads, "wall_s": round(wall, 2), "steps_s": last["elapsed"],
            "samples": steps * batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verb", default="denoise", help="the train verb (denoise, inpaint, style, gan, interp-vae)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16, help="the global batch")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--extra", default="", help="more options for the train verb")
    args = parser.parse_args()
    extra = shlex.split(args.extra)
    with tempfile.TemporaryDirectory() as tmp:
        single = run(args.verb, args.data, args.steps, args.batch, extra, 1, args.nproc, Path(tmp) / "single")
        ddp = run(args.verb, args.data, args.steps, args.batch, extra, args.nproc, 1, Path(tmp) / "ddp")
    print(json.dumps({"verb": args.verb, "single": single, "ddp": ddp,
                      "ratio_wall": round(ddp["wall_s"] / single["wall_s"], 3),
                      "ratio_steps": round(ddp["steps_s"] / single["steps_s"], 3), "target": "<= 1.15"}, indent=2))


if __name__ == "__main__":
    main()
