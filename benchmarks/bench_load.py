"""How much a flatcheck command slows down when other jobs use the cores (a shared CI runner).

    .venv/bin/python benchmarks/bench_load.py [--competitors 2] [--repeats 2]

Runs one fixed command (an exposure run on digits-base, a few seconds alone) with `--threads T` for
T = 1 and T = the CPUs this process may use, first alone and then while `--competitors` other
processes each keep one core busy with matrix products (the way other CI jobs would). Prints the
median wall time of each case and the slowdown under load, per thread count. Issue 14 saw 10-16x
with torch's default thread count on a 2-core machine: an OpenMP team of as many threads as cores
waits at every barrier for the thread whose core another job holds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [
    "exposure",
    "digits-base",
    "--samples",
    "64",
    "--probes",
    "64",
    "--steps",
    "10",
    "--no-check-scaling",
    "--no-fid",
    "--device",
    "cpu",
]
BUSY = "import torch\ntorch.set_num_threads(1)\na = torch.randn(384, 384)\nwhile True:\n    a = (a @ a).tanh_()\n"


def timed(threads: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # --threads decides
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "flatcheck", *COMMAND, "--threads", str(threads)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--competitors", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    from flatcheck.core.threads import available_cpus

    cpus = available_cpus()
    counts = sorted({1, cpus})
    print(
        f"flatcheck {' '.join(COMMAND)}; {cpus} CPUs available; {a.competitors} competing 1-thread jobs; "
        f"median of {a.repeats}; {time.strftime('%Y-%m-%d')}"
    )
    alone = {t: statistics.median(timed(t) for _ in range(a.repeats)) for t in counts}
    busy = [subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.DEVNULL) for _ in range(a.competitors)]
    try:
        time.sleep(2)  # let them start spinning
        loaded = {t: statistics.median(timed(t) for _ in range(a.repeats)) for t in counts}
    finally:
        for p in busy:
            p.kill()
    print("\n| --threads | alone (s) | under load (s) | slowdown |\n|---:|---:|---:|---:|")
    for t in counts:
        print(f"| {t} | {alone[t]:.1f} | {loaded[t]:.1f} | {loaded[t] / alone[t]:.1f}x |")


if __name__ == "__main__":
    main()
