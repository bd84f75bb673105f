"""2 processes vs 1: the same command through `accelerate launch` and alone, numbers compared, time ratio printed.

For each command, in one run of this script:
  1 process   : python -m flatcheck CMD ... --device cpu                      (OMP_NUM_THREADS=1: one core)
  2 processes : accelerate launch --multi_gpu --num_processes 2 ... -m flatcheck CMD ... --device cpu
                (OMP_NUM_THREADS=1 per process: the two processes use two cores)
  optionally  : 1 process with 2 threads (OMP_NUM_THREADS=2, --threads 2): the same two cores, one process
It compares every number of the JSON reports (timings, environment and options left out) and prints the
largest relative difference, where it is, and the wall-time ratio 1 process / 2 processes (the throughput
ratio of the 2-process run), both for the whole command (start-up included) and for the report's own
measure timings. A machine check (two 1-thread matmul processes at once vs one) says how much of a
second core the machine really gave while it ran: read the ratios against it.

    python benchmarks/bench_distributed.py [--model digits-sam] [--commands fid,sharpness,audit]
                                           [--two-threads] [--keep DIR]

(`accelerate launch --cpu --num_processes 2` would start a single process in accelerate 1.15: see
flatcheck/core/dist.py.) Run it alone on the machine: wall times move with whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {  # name -> flatcheck arguments after the model
    "fid": ["fid"],
    "sharpness": ["sharpness"],
    "audit": ["audit", "--quick"],
}
SKIP = ("timings", "seconds", "time_ratio", "environment", "options", "artifacts")


def compare(a: dict, b: dict) -> dict:
    """Largest relative difference |a-b| / max(|a|, |b|) over the numbers of two reports (0 where both are 0)."""
    from flatcheck.results import all_numbers

    na, nb = dict(all_numbers(a, SKIP)), dict(all_numbers(b, SKIP))
    if na.keys() != nb.keys():
        only = sorted(set(na) ^ set(nb))
        raise SystemExit(f"the reports hold different numbers: {only[:5]}")
    worst, where, differ = 0.0, None, 0
    for k in na:
        x, y = na[k], nb[k]
        if x == y or (x != x and y != y):  # equal, or both NaN
            continue
        differ += 1
        rel = abs(x - y) / max(abs(x), abs(y))
        if rel > worst:
            worst, where = rel, k
    return {"numbers": len(na), "differ": differ, "max_rel": worst, "where": where}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd: list[str], env: dict, log: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log.write_text(" ".join(cmd) + "\n\n" + proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return seconds


SPIN = (
    "import time, torch\ntorch.set_num_threads(1)\nx = torch.randn(512, 512)\nt0 = time.perf_counter()\n"
    "for _ in range(300): x @ x\nprint(time.perf_counter() - t0)\n"
)


def parallel_capacity(py: Path) -> float:
    """Throughput of two concurrent 1-thread matmul processes / one alone: ~2 on two free cores, ~1 when others hold
    one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    alone = float(subprocess.run([str(py), "-c", SPIN], env=env, capture_output=True, text=True, check=True).stdout)
    procs = [subprocess.Popen([str(py), "-c", SPIN], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    both = max(float(p.communicate()[0]) for p in procs)
    return 2 * alone / both


def measure_seconds(report: dict) -> float:
    return sum(v for v in (report.get("timings") or {}).values() if isinstance(v, (int, float)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits-sam")
    ap.add_argument("--commands", default="fid,sharpness,audit", help=f"comma list of {', '.join(COMMANDS)}")
    ap.add_argument("--two-threads", action="store_true", help="also run 1 process with 2 threads")
    ap.add_argument("--keep", type=Path, help="folder for the JSON reports and logs (default: a temporary one)")
    args = ap.parse_args()

    py = Path(sys.executable)
    accelerate = py.with_name("accelerate")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    work.mkdir(parents=True, exist_ok=True)
    base = {**os.environ, "OMP_NUM_THREADS": "1"}
    print(
        f"model {args.model}; {os.cpu_count()} CPUs; OMP_NUM_THREADS=1 per process (1 process: one core; "
        f"2 processes: two cores); reports in {work}"
    )
    print(
        f"machine check: two 1-thread processes ran at {parallel_capacity(py):.2f}x the throughput of one "
        "(2.00 = two free cores)"
    )
    for name in args.commands.split(","):
        flat = [*COMMANDS[name.strip()][:1], args.model, *COMMANDS[name.strip()][1:], "--device", "cpu"]
        runs = {
            "1 process": ([str(py), "-m", "flatcheck", *flat], base),
            "2 processes": (
                [
                    str(accelerate),
                    "launch",
                    "--multi_gpu",
                    "--num_processes",
                    "2",
                    "--num_machines",
                    "1",
                    "--mixed_precision",
                    "no",
                    "--dynamo_backend",
                    "no",
                    "--num_cpu_threads_per_process",
                    "1",
                    "--main_process_port",
                    str(free_port()),
                    "-m",
                    "flatcheck",
                    *flat,
                ],
                base,
            ),
        }
        if args.two_threads:
            runs["1 process, 2 threads"] = (
                [str(py), "-m", "flatcheck", *flat, "--threads", "2"],
                {**base, "OMP_NUM_THREADS": "2"},
            )
        reports, wall = {}, {}
        for label, (cmd, env) in runs.items():
            stem = f"{name}-{label.replace(' ', '').replace(',', '-')}"
            out = work / f"{stem}.json"
            wall[label] = timed([*cmd, "--json", str(out)], env, work / f"{stem}.log")
            reports[label] = json.loads(out.read_text())
            procs = reports[label]["environment"].get("processes")
            print(
                f"  {name:9s} {label:21s} {wall[label]:7.1f} s wall, {measure_seconds(reports[label]):7.1f} s in "
                f"measures (processes {procs}, torch threads {reports[label]['environment'].get('torch_threads')})"
            )
        print(
            f"  machine check after {name}: two 1-thread processes ran at {parallel_capacity(py):.2f}x the throughput "
            "of one (2.00 = two free cores)"
        )
        one = reports["1 process"]
        for label in list(runs)[1:]:
            c = compare(one, reports[label])
            ratio = wall["1 process"] / wall[label]
            mratio = measure_seconds(one) / max(measure_seconds(reports[label]), 1e-9)
            print(
                f"{name}: {label} vs 1 process: {c['numbers']} numbers, {c['differ']} differ, max relative difference "
                f"{c['max_rel']:.2e}"
                + (f" (at {c['where']})" if c["where"] else "")
                + f"; time ratio 1 process / {label}: {ratio:.2f} wall, {mratio:.2f} in measures"
            )


if __name__ == "__main__":
    main()
