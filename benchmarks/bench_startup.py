"""Start-up: `--help`, `info` and the errors of bad paths, as a user waits for them (one process each).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_startup.py [--repeat 5] [--importtime CASE]

Each case runs `python -m flatcheck ...` --repeat times; prints the median and the fastest wall time, the
peak resident memory (the child's VmHWM, read at its exit) and whether the child imported torch. The
children run in an empty folder, so the checkout measured is the one PYTHONPATH (an absolute path) or the
installed package gives, printed first: run it once on an export of the commit before a change
(`git archive`) and once after. --importtime CASE prints the slowest imports of one case (python
-X importtime, cumulative microseconds), which is where start-up time goes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

HOME = tempfile.mkdtemp(prefix="bench-startup-")  # the children's cwd: no checkout in it shadows PYTHONPATH

CASES = {
    "--help": ["--help"],
    "info digits-sam": ["info", "digits-sam"],
    "info (bad path)": ["info", "/no/such/model"],
    "sharpness (bad path)": ["sharpness", "/no/such/model"],
    "audit --quick (bad path)": ["audit", "/no/such/model", "--quick"],
    "compare (one bad path)": ["compare", "digits-base", "/no/such/model"],
    "sharpness digits-sam --data (bad path)": ["sharpness", "digits-sam", "--data", "/no/such/images"],
    "fid digits-sam --ref (bad path)": ["fid", "digits-sam", "--ref", "/no/such/ref.npz"],
}

# Runs the command, then says at exit whether torch came in and the process's resident high-water mark.
CHILD = """
import atexit, runpy, sys
def report():
    hwm = next((l for l in open("/proc/self/status") if l.startswith("VmHWM:")), "VmHWM: 0 kB")
    sys.stderr.write(f"\\nSTARTUP {int(hwm.split()[1])} {'torch' in sys.modules}\\n")
atexit.register(report)
sys.argv = ["flatcheck", *sys.argv[1:]]
runpy.run_module("flatcheck", run_name="__main__")
"""


def run_once(args: list[str]) -> tuple[float, int, bool, int]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, cwd=HOME)
    wall = time.perf_counter() - t0
    line = next(ln for ln in reversed(proc.stderr.splitlines()) if ln.startswith("STARTUP"))
    _, kib, torch = line.split()
    return wall, int(kib), torch == "True", proc.returncode


def importtime(args: list[str], top: int = 15) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CHILD, *args], capture_output=True, text=True, cwd=HOME
    )
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
            rows.append((int(cumulative), name))
    for cumulative, name in sorted(rows, reverse=True)[:top]:
        print(f"{cumulative / 1e6:8.2f} s  {name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--importtime", choices=sorted(CASES), help="print the slowest imports of this case instead")
    args = ap.parse_args()
    where = subprocess.run(
        [sys.executable, "-c", "import flatcheck; print(flatcheck.__file__)"], capture_output=True, text=True, cwd=HOME
    )
    print(f"flatcheck measured: {where.stdout.strip() or where.stderr.strip()}\n")
    if args.importtime:
        importtime(CASES[args.importtime])
        return
    print("| case | exit | wall s, median (fastest) | peak RSS MiB | imports torch |\n|---|---:|---:|---:|---|")
    for name, argv in CASES.items():
        runs = [run_once(argv) for _ in range(args.repeat)]
        walls = [r[0] for r in runs]
        print(
            f"| `{name}` | {runs[0][3]} | {statistics.median(walls):.2f} ({min(walls):.2f}) | "
            f"{max(r[1] for r in runs) / 1024:.0f} | {'yes' if any(r[2] for r in runs) else 'no'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
