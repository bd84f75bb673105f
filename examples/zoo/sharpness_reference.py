"""Build a sharpness reference table (flatcheck/assets/sharpness_reference.json) from real reports.

Every checkpoint's headline sharpness numbers are read from a report flatcheck wrote (an audit or
`flatcheck sharpness` JSON, or a `flatcheck rank` JSON, which keeps each member's report), with the
same code the run uses to compare (flatcheck.measures.sharpness.reference). Checkpoints are grouped
into sets by family, size class, probe bank and the settings that define each number; a set needs
at least MIN_SET checkpoints. Nothing is typed in by hand.

    python examples/zoo/sharpness_reference.py              # the shipped table, from the committed runs
    python examples/zoo/sharpness_reference.py --out my.json runs/*.json   # a team's own table
    flatcheck audit MODEL --quick --config flatcheck.toml    # with [audit.sharpness] reference = "my.json"

With no inputs it reads the zoo's rank runs (examples/zoo/runs/rank-digits.json, rank-rgb.json:
`--quick` audits, see examples/zoo/README.md) and the bundled digits models' `flatcheck sharpness
--quick` reports (examples/zoo/runs/sharpness-quick-<model>.json, measured here with one thread when
missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from flatcheck.measures.sharpness.reference import FORMAT, bank_of, context_of_report, headline  # noqa: E402

MIN_SET = 5  # fewer checkpoints than this make no scale worth a percentile
BUNDLED = ("digits-base", "digits-ema", "digits-sam")
RUNS = HERE / "runs"
TITLES = {  # what a set is, by its name; a set not named here is titled by its checkpoints' origins
    "digits-quick": "the digits zoo (11 checkpoints: AdamW x3 seeds, EMA, SWA, SAM x5 radii, ASAM; 400 steps) and "
    "the bundled digits-base/ema/sam (1200 steps), --quick on the digits data",
    "patches-quick": "the RGB-patch zoo (6 checkpoints: AdamW, EMA, SWA, SAM x3 radii; 600 steps), --quick on "
    "the patches data",
}


def reports_in(path: Path) -> list[tuple[str, dict]]:
    """(checkpoint name, report) of a report file or of each member of a rank file."""
    doc = json.loads(path.read_text())
    reports = doc["reports"] if "reports" in doc else [doc]
    return [(Path(str(r["model"].get("source") or r["model"].get("path"))).name, r) for r in reports]


def measure_bundled(python: str) -> list[Path]:
    """`flatcheck sharpness --quick` of each bundled digits model, one thread (skipped when its file exists)."""
    out = []
    for name in BUNDLED:
        dest = RUNS / f"sharpness-quick-{name}.json"
        if not dest.exists():
            cmd = [python, "-m", "flatcheck", "sharpness", name, "--quick", "--threads", "1", "--json", str(dest)]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(
                cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)}
            )
        out.append(dest)
    return out


def set_name(report: dict) -> str:
    source = (report["sharpness"].get("source") or "data-free").removeprefix("data: ").split(" ")[0]
    return f"{source}-{report['options'].get('profile')}"


def build(inputs: list[Path]) -> dict:
    groups: dict[str, dict] = {}
    seen: set[tuple[str, str]] = set()
    for path in inputs:
        for name, report in reports_in(path):
            section = report.get("sharpness")
            if not section:
                print(f"skip {path}:{name}: no sharpness section", file=sys.stderr)
                continue
            numbers = headline(section)
            settings = {k: s for k, (_, s) in numbers.items()}
            key = json.dumps([context_of_report(report["model"]), bank_of(section), settings], sort_keys=True)
            group = groups.setdefault(
                key,
                dict(
                    name=set_name(report),
                    context=context_of_report(report["model"]),
                    bank=bank_of(section),
                    settings=settings,
                    measured_with=dict(
                        profile=report["options"].get("profile"),
                        seed=section.get("seed"),
                        sharpness=report["options"]["configs"]["sharpness"],
                    ),
                    checkpoints=[],
                ),
            )
            if (key, name) in seen:  # the same checkpoint in two inputs counts once
                continue
            seen.add((key, name))
            env = report.get("environment") or {}
            group["checkpoints"].append(
                dict(
                    name=name,
                    origin=str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
                    flatcheck=env.get("flatcheck"),
                    torch=env.get("torch"),
                    threads=env.get("torch_threads"),
                    values={k: v for k, (v, _) in numbers.items()},
                )
            )
    sets = []
    for g in groups.values():
        if len(g["checkpoints"]) < MIN_SET:
            print(f"left out: {g['name']} ({len(g['checkpoints'])} checkpoints < {MIN_SET})", file=sys.stderr)
            continue
        names = [s["name"] for s in sets]
        if g["name"] in names:  # the same data and profile under other settings
            g["name"] = f"{g['name']}-{names.count(g['name']) + 1}"
        origins = sorted({c["origin"] for c in g["checkpoints"]})
        g["title"] = TITLES.get(g["name"], f"{len(g['checkpoints'])} checkpoints from {', '.join(origins)}")
        sets.append({k: g[k] for k in ("name", "title", "context", "bank", "settings", "measured_with", "checkpoints")})
    return {
        "format": FORMAT,
        "generated_by": "examples/zoo/sharpness_reference.py",
        "what": "headline sharpness numbers of known checkpoints, by set (family, size class, probe bank, settings); "
        "flatcheck gives a run's numbers percentiles against the set that matches it",
        "sets": sets,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", type=Path, help="report or rank JSON files (default: the committed runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "flatcheck" / "assets" / "sharpness_reference.json")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs flatcheck for missing reports")
    args = ap.parse_args()
    inputs = args.inputs or [RUNS / "rank-digits.json", RUNS / "rank-rgb.json", *measure_bundled(args.python)]
    table = build([p.resolve() for p in inputs])
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    for s in table["sets"]:
        print(
            f"{s['name']}: {len(s['checkpoints'])} checkpoints, {s['context']['family']}, {s['context']['size_class']}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
