"""Every command's default on a bundled model: wall time and peak memory, one process each.

    .venv/bin/python benchmarks/bench_commands.py [--model digits-base] [--only NAME,...] [--device cpu|cuda]

Each command runs as its own process (`python -m flatcheck ...`), so its peak resident memory is its
own: the kernel's ru_maxrss of that child (os.wait4), or, where the child measured phases with
flatcheck.core.memory.PeakMemory (every audit does: its resets of the kernel's high-water mark hide
the earlier peak from ru_maxrss), the child's own record of it (process_peak(), reported at exit),
whichever is larger. On CUDA the child also reports its peak allocated at exit (process_peak("cuda"),
or torch.cuda.max_memory_allocated where nothing reset it). Wall time includes start-up and imports, as a user sees it.
Rows with `--data none` are the same command on a model given without data (data-free: the bank is
drawn from the model's own samples). Prints a Markdown table; issue 14 aims at <= 60 s per command
on the bundled model on the 2-core CPU it was written on.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Reports the child's peak memory at exit (flatcheck's main ends in sys.exit: atexit runs): as core.memory
# kept it across PeakMemory's resets of the kernel's and the allocator's marks when flatcheck measured
# phases, else the resident high-water mark since its exec (VmHWM); CUDA's only if the command imported
# torch and used it (a command that never imports torch, info, must not pay for it here). wait4's
# ru_maxrss is not used where VmHWM exists: on Linux it also counts the memory the child inherited from
# this script at fork (torch is imported here: about 750 MB, 15 times info's own peak).
CHILD = """
import atexit, runpy, sys
def peak():
    try:
        memory = sys.modules.get("flatcheck.core.memory")
        if memory is not None:
            sys.stderr.write(f"\\nRSS_PEAK {memory.process_peak('cpu')}\\n")
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda = memory.process_peak("cuda") if memory is not None else torch.cuda.max_memory_allocated()
            sys.stderr.write(f"\\nCUDA_PEAK {cuda}\\n")
    except Exception:
        pass
    try:
        hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
        sys.stderr.write(f"\\nRSS_PEAK_KIB {int(hwm.split()[1])}\\n")
    except (OSError, StopIteration, ValueError):
        pass
atexit.register(peak)
sys.argv = ["flatcheck", *sys.argv[1:]]
runpy.run_module("flatcheck", run_name="__main__")
"""


def commands(model: str, tmp: Path) -> list[tuple[str, list[str]]]:
    gate = str(ROOT / "examples" / "gate" / "flatcheck.toml")
    return [
        ("info", ["info", model]),
        ("sample", ["sample", model, "--out", str(tmp / "sample")]),
        ("fid", ["fid", model]),
        ("exposure", ["exposure", model]),
        ("exposure --data none", ["exposure", model, "--data", "none"]),
        ("quantize", ["quantize", model]),
        ("quantize --data none", ["quantize", model, "--data", "none"]),
        ("sharpness", ["sharpness", model]),
        ("sharpness --data none", ["sharpness", model, "--data", "none"]),
        ("audit --quick", ["audit", model, "--quick"]),
        ("audit --quick --data none", ["audit", model, "--quick", "--data", "none"]),
        ("gate (examples/gate, quick)", ["gate", model, "--config", gate]),
        ("compare A B --quick", ["compare", model, "digits-sam", "--quick"]),
        ("audit (default profile)", ["audit", model]),
    ]


def run_one(args: list[str], device: str) -> tuple[float, float, float | None, int]:
    """(seconds, peak RSS in MiB, peak CUDA MiB or None, exit code)."""
    if args[0] not in ("info",):
        args = [*args, "--device", device]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    err_chunks = []
    while True:  # read stderr as it comes (a full pipe would block the child), then reap with its rusage
        line = proc.stderr.readline()
        if not line:
            break
        err_chunks.append(line)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = "".join(err_chunks)
    cuda = None
    rss = usage.ru_maxrss / 1024  # KiB on Linux; only where neither line below came
    kept = None
    for line in err.splitlines():
        if line.startswith("CUDA_PEAK "):
            cuda = int(line.split()[1]) / 2**20
        elif line.startswith("RSS_PEAK "):
            kept = int(line.split()[1]) / 2**20
        elif line.startswith("RSS_PEAK_KIB ") and kept is None:
            rss = int(line.split()[1]) / 1024
    if kept is not None:
        rss = kept
    if proc.returncode not in (0, 1):
        print(f"  exit {proc.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}", file=sys.stderr)
    return seconds, rss, cuda, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="digits-base")
    ap.add_argument("--only", default=None, help="comma list of row names to run (default: all)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    import platform

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        rows = commands(a.model, Path(tmp))
        if a.only:
            keep = {s.strip() for s in a.only.split(",")}
            rows = [r for r in rows if r[0] in keep]
        print(
            f"model {a.model}, device {a.device}; {os.cpu_count()} CPUs, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch {torch.__version__}, "
            f"{platform.processor() or platform.machine()}; {time.strftime('%Y-%m-%d')}"
        )
        print(
            "\n| command | wall time (s) | peak RSS (MiB) | peak CUDA allocated (MiB) | exit |\n"
            "|---|---:|---:|---:|---:|"
        )
        for name, args in rows:
            seconds, rss, cuda, code = run_one(args, a.device)
            print(
                f"| `{name}` | {seconds:.1f} | {rss:.0f} | {'-' if cuda is None else f'{cuda:.0f}'} | {code} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
