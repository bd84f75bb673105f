"""The default thread count against --threads 1 and 2, with the cores free and with one core taken by another job.

    .venv/bin/python benchmarks/bench_load.py [--competitors 1] [--repeats 3] [--old-default] [--env KEY=VALUE]

Runs one fixed sampling job (an exposure run on digits-base: three sampler runs of 64 samples x 10 steps,
a few seconds of work after the imports) as a fresh process with `--threads 1`, `--threads 2` and no
`--threads` (the default), first alone and then while `--competitors` other processes each keep one core
busy with 1-thread matrix products (another job on a shared runner). The cases are interleaved, `--repeats`
times. Per case it prints the median of the measured time (the report's `timings`: the work, not the
imports) and of the process's wall time, how many cores other processes kept busy meanwhile (from
/proc/stat, less this job's own CPU time: about 0 alone, about the competitors under load, more when
something else runs on the machine), the thread count the default chose and why, and each time as a
multiple of the best `--threads` in the same condition. Issue 27's aim: the default within 1.5x of the
best both alone and under load. `--old-default` adds the default before that issue (2 threads, libgomp's
spinning wait) as a reference row; `--env` sets a variable in every job (e.g. GOMP_SPINCOUNT, to try one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB = ["exposure", "digits-base", "--samples", "64", "--probes", "64", "--steps", "10"]
JOB += ["--no-check-scaling", "--no-fid", "--device", "cpu"]
CASES = {"1": ["--threads", "1"], "2": ["--threads", "2"], "default": []}
# --old-default: the default before issue 27, for reference: as many threads as CPUs, and libgomp's own wait
# policy (a thread at a barrier spins before it sleeps; an empty OMP_WAIT_POLICY is libgomp's default, and
# the CLI leaves a set variable alone).
OLD_DEFAULT = ("2, spinning (old default)", ["--threads", "2"], {"OMP_WAIT_POLICY": ""})
BUSY = "import torch\ntorch.set_num_threads(1)\na = torch.randn(384, 384)\nwhile True:\n    a = (a @ a).tanh_()\n"


def busy_jiffies() -> int:
    """Non-idle time of the CPUs this process may use, in clock ticks (/proc/stat)."""
    mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f and f[0] in mine:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f[1:9])
            total += user + nice + system + irq + softirq + steal
    return total


def run_job(args: list[str], env: dict) -> dict:
    """One job: measured seconds (the report's timings), wall seconds, other processes' busy cores, threads."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        j0, t0 = busy_jiffies(), time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "flatcheck", *JOB, *args, "--json", str(out)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        wall, jiffies = time.perf_counter() - t0, busy_jiffies() - j0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        report = json.loads(out.read_text())
    env_ = report["environment"]
    return {
        "measured": sum(v for v in report["timings"].values() if isinstance(v, (int, float))),
        "wall": wall,
        "others": max(0.0, jiffies / os.sysconf("SC_CLK_TCK") - own) / wall,
        "threads": env_["torch_threads"],
        "why": env_.get("threads_reason", "?"),
    }


def run_cases(cases: list[tuple[str, list[str], dict]], repeats: int, env: dict) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in cases}
    for _ in range(repeats):  # interleaved, so that a change in the machine's load hits every case alike
        for name, args, extra in cases:
            runs[name].append(run_job(args, {**env, **extra}))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--competitors", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--old-default", action="store_true", help="add the default before issue 27, for reference")
    a = ap.parse_args()
    cases = [(name, args, {}) for name, args in CASES.items()] + ([OLD_DEFAULT] if a.old_default else [])
    from flatcheck.core.threads import available_cpus

    # --threads decides, not the caller's OMP_NUM_THREADS (the default never exceeds it).
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(kv.split("=", 1) for kv in a.env)
    print(
        f"flatcheck {' '.join(JOB)}; {available_cpus()} CPUs available; {a.competitors} competing 1-thread job(s); "
        f"median of {a.repeats} interleaved; {' '.join(a.env) or 'no extra environment'}; "
        f"load average {os.getloadavg()[0]:.2f} at start; {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    results = {"alone": run_cases(cases, a.repeats, env)}
    busy = [subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.DEVNULL) for _ in range(a.competitors)]
    try:
        time.sleep(3)  # let them import torch and start spinning
        results["under load"] = run_cases(cases, a.repeats, env)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    print(
        "\n| condition | --threads | measured (s) | wall (s) | other processes (cores) | threads used "
        "| measured / best --threads |\n|---|---|---:|---:|---:|---|---:|"
    )
    for cond, runs in results.items():
        med = {
            name: {k: statistics.median(r[k] for r in rs) for k in ("measured", "wall", "others")}
            for name, rs in runs.items()
        }
        best = min(med[n]["measured"] for n in CASES if n != "default")
        for name, rs in runs.items():
            m, used = med[name], "; ".join(sorted({f"{r['threads']} ({r['why']})" for r in rs}))
            print(
                f"| {cond} | {name} | {m['measured']:.2f} | {m['wall']:.1f} | {m['others']:.2f} | {used} "
                f"| {m['measured'] / best:.2f}x |"
            )


if __name__ == "__main__":
    main()
