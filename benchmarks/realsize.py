"""Every command at real size: SD 1.5's published configs with random weights, on this machine.

    .venv/bin/python benchmarks/realsize.py [--root /tmp/realsize] [--threads 2] [--only info,sample,...]
    .venv/bin/python benchmarks/realsize.py --plans-only        # SDXL and Flux plans for one 80 GB GPU in bf16
    .venv/bin/python benchmarks/realsize.py --extra '--device cuda --dtype bfloat16'   # on a GPU

For each command, at the smallest settings that exercise it (names below), the script first asks
flatcheck's own plan (`--dry-run --json`). When the plan says the run does not fit this machine, the
command is run with the first option set the plan recommends (its advice), and the table says which.
Then the command runs in a child process: wall time, peak RSS (the child's core.memory.process_peak at
exit, else its VmHWM) and exit code, next to the plan's estimated peak and time (the plan's time covers
the measures, not the process's start and loading). Folders are built by
benchmarks/realsize_build.py (sd15 with seeded random weights, about 40 s and 4 GB on disk; sdxl and
flux-dev header-only: sparse files, nothing loads them). A long benchmark (an hour and more on a
2-core CPU), not a test: every row is one run, its machine and date printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# The child: flatcheck's CLI, then its peak memory on stderr (flatcheck's PeakMemory resets the kernel's
# high-water mark per phase; process_peak keeps the whole process's).
CHILD = """
import atexit, runpy, sys
def peak():
    memory = sys.modules.get("flatcheck.core.memory")
    if memory is not None:
        sys.stderr.write(f"\\nRSS_PEAK {memory.process_peak('cpu')}\\n")
    else:
        hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
        sys.stderr.write(f"\\nRSS_PEAK {int(hwm.split()[1]) * 1024}\\n")
atexit.register(peak)
sys.argv = ["flatcheck", *sys.argv[1:]]
runpy.run_module("flatcheck", run_name="__main__")
"""

SMALL_SHARPNESS = [
    "--data",
    "none",
    "--samples",
    "2",
    "--steps",
    "2",
    "--probes",
    "2",
    "--batch-size",
    "2",
    "--buckets",
    "1",
]
# name -> (command, arguments after the model folder, whether it has a plan (--dry-run))
COMMANDS = {
    "info": (["info"], False),
    "sample": (["sample", "--samples", "1", "--steps", "2", "--batch-size", "1", "--no-png"], False),
    "sharpness-hessian": (
        [
            "sharpness",
            *SMALL_SHARPNESS,
            "--measures",
            "hessian",
            "--hessian-probes",
            "2",
            "--top-k",
            "1",
            "--lanczos-iters",
            "3",
            "--lanczos-basis",
            "3",
            "--hutchinson-draws",
            "2",
        ],
        True,
    ),
    "sharpness-avg-worst": (
        [
            "sharpness",
            *SMALL_SHARPNESS,
            "--measures",
            "avg,worst",
            "--norms",
            "adaptive",
            "--radii",
            "0.01",
            "--worst-radii",
            "1e-4",
            "--draws",
            "1",
            "--ascent-steps",
            "2",
            "--no-block-average",
        ],
        True,
    ),
    "exposure": (
        [
            "exposure",
            "--data",
            "none",
            "--steps",
            "2",
            "--samples",
            "2",
            "--probes",
            "2",
            "--batch-size",
            "2",
            "--no-fid",
        ],
        True,
    ),
    "quantize": (
        [
            "quantize",
            "--data",
            "none",
            "--bits",
            "8",
            "--samples",
            "2",
            "--steps",
            "2",
            "--calib-samples",
            "2",
            "--sensitivity-samples",
            "0",
            "--probes",
            "2",
            "--batch-size",
            "2",
            "--no-fid",
        ],
        True,
    ),
    "fid": (
        ["fid", "--samples", "2", "--steps", "2", "--batch-size", "2", "--ref", "patches", "--features", "patches-cnn"],
        True,
    ),
    "audit-quick": (
        [
            "audit",
            "--quick",
            "--data",
            "none",
            "--probes",
            "2",
            "--samples",
            "2",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--ref",
            "patches",
            "--features",
            "patches-cnn",
            "--config",
            "{config}",
        ],
        True,
    ),
}
# The quick profile's sharpness and quantize at the smallest sizes (audit --quick --config): every measure runs.
AUDIT_CONFIG = """[audit.sharpness]
hessian_probes = 2
lanczos_iters = 3
lanczos_basis = 3
hutchinson_draws = 2
landscape_points = 3
landscape_probes = 2
buckets = 1

[audit.quantize]
calib_samples = 2
sensitivity_samples = 0
"""


def child(args: list[str], threads: int) -> tuple[float, int | None, int, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args, "--threads", str(threads)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - t0
    peak = None
    for line in proc.stderr.splitlines():
        if line.startswith("RSS_PEAK "):
            peak = int(line.split()[1])
    last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip() and not ln.startswith("RSS_PEAK")), "")
    return seconds, peak, proc.returncode, last


def plan_of(args: list[str], threads: int) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plan.json"
        child([*args, "--dry-run", "--json", str(out)], threads)
        return json.loads(out.read_text()) if out.is_file() else None


def gib(n) -> str:
    return "-" if n is None else f"{n / 2**30:.2f}"


def run_sd15(root: Path, threads: int, only: list[str] | None, extra_args: list[str] = ()) -> None:
    from realsize_build import build

    model = root / "sd15"
    if not (model / "model_index.json").is_file():
        print(f"building {model} ...", flush=True)
        build("sd15", root, True)
    config = root / "audit-small.toml"
    config.write_text(AUDIT_CONFIG)
    print(
        f"\nSD 1.5 (random weights, published configs) on {platform.node()}, {os.cpu_count()} CPUs, torch threads "
        f"{threads}, {date.today()}"
    )
    print(
        f"{'command':<22} {'options the plan recommended':<48} {'wall s':>8} {'plan s':>8} {'peak GiB':>9} "
        f"{'plan GiB':>9} {'plan/peak':>9} exit"
    )
    for name, (cmd, planned) in COMMANDS.items():
        if only and name not in only:
            continue
        args = [
            cmd[0],
            str(model),
            *(a.replace("{config}", str(config)) for a in cmd[1:]),
            *(extra_args if cmd[0] != "info" else ()),
        ]
        extra: list[str] = []
        estimate = est_seconds = None
        if planned:
            plan = plan_of(args, threads)
            if plan is not None and not plan["fits"] and plan["advice"]:
                extra = plan["advice"][0].replace("'", "").split()
                plan = plan_of([*args, *extra], threads)
            estimate = plan["peak_bytes"] if plan is not None else None
            if plan is not None and all(p["seconds"] is not None for p in plan["phases"]):
                est_seconds = sum(p["seconds"] for p in plan["phases"])
        with tempfile.TemporaryDirectory() as tmp:
            run_args = [*args, *extra] + (["--out", str(Path(tmp) / "out")] if cmd[0] == "sample" else [])
            seconds, peak, code, last = child(run_args, threads)
        ratio = f"{estimate / peak:.2f}" if estimate and peak else "-"
        planned_s = "-" if est_seconds is None else f"{est_seconds:.0f}"
        print(
            f"{name:<22} {' '.join(extra) or '(defaults fit)':<48} {seconds:>8.0f} {planned_s:>8} {gib(peak):>9} "
            f"{gib(estimate):>9} {ratio:>9} {code}" + (f"  {last[:160]}" if code not in (0, 1) else ""),
            flush=True,
        )


def run_plans(root: Path, threads: int) -> None:
    from realsize_build import build

    print(
        "\nPlans for one 80 GB GPU in bfloat16 (header-only folders: nothing loads; `flatcheck plan --memory 80GB "
        "--device cuda --dtype bfloat16 --quick`)"
    )
    print(f"{'model':<10} {'parameters':>14} {'plan GiB':>9} {'fits':>5}  options it needs / worst phase")
    for name in ("sd15", "sdxl", "flux-dev"):
        model = root / name
        if not (model / "model_index.json").is_file():
            build(name, root, False)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "plan.json"
            child(
                [
                    "plan",
                    str(model),
                    "--quick",
                    "--memory",
                    "80GB",
                    "--device",
                    "cuda",
                    "--dtype",
                    "bfloat16",
                    "--no-timing",
                    "--json",
                    str(out),
                ],
                threads,
            )
            if not out.is_file():
                print(f"{name:<10} (no plan)")
                continue
            plan = json.loads(out.read_text())
        worst = max(plan["phases"], key=lambda p: p["peak_bytes"])
        print(
            f"{name:<10} {plan['parameters']:>14,} {gib(plan['peak_bytes']):>9} {str(plan['fits']):>5}  "
            f"{'; '.join(plan['advice']) or '-'} / {worst['work']['phase']}",
            flush=True,
        )
        if not plan["fits"] and plan["advice"]:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "plan.json"
                child(
                    [
                        "plan",
                        str(model),
                        "--quick",
                        "--memory",
                        "80GB",
                        "--device",
                        "cuda",
                        "--dtype",
                        "bfloat16",
                        "--no-timing",
                        *plan["advice"][0].replace("'", "").split(),
                        "--json",
                        str(out),
                    ],
                    threads,
                )
                fixed = json.loads(out.read_text())
            print(f"{'':<10} {'':>14} {gib(fixed['peak_bytes']):>9} {str(fixed['fits']):>5}  with {plan['advice'][0]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/realsize"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma list of the SD 1.5 rows to run (" + ", ".join(COMMANDS) + ")")
    ap.add_argument("--plans-only", action="store_true", help="only the SDXL and Flux plans (minutes, no weights)")
    ap.add_argument(
        "--extra",
        default="",
        help="options added to every SD 1.5 command but info, e.g. '--device cuda --dtype bfloat16' on a GPU",
    )
    args = ap.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    if not args.plans_only:
        run_sd15(args.root, args.threads, args.only.split(",") if args.only else None, args.extra.split())
    run_plans(args.root, args.threads)


if __name__ == "__main__":
    main()
