"""FD of every zoo member's samples against its training data, with flatcheck's own `fid` command.

    python examples/zoo/fd_zoo.py --dataset rgb       # FD (patches-cnn) vs --ref patches -> examples/zoo/fd-rgb.json
    python examples/zoo/fd_zoo.py --dataset digits    # FD (digits-cnn) vs --ref digits  -> examples/zoo/fd.json

Each member: `flatcheck fid MEMBER --ref REF --features NET --samples N --steps 25 --threads 1`
(DDIM, sample seed 0: the same noise for every member), its JSON report kept under
<models>/<member>/../fd-reports/. Members already in the output file are skipped (resumable).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETUP = {
    "digits": dict(models=HERE / "models", ref="digits", features="digits-cnn", out=HERE / "fd.json"),
    "rgb": dict(models=HERE / "models-rgb", ref="patches", features="patches-cnn", out=HERE / "fd-rgb.json"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=tuple(SETUP), default="digits")
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--models", type=Path, default=None, help="models folder (default: the zoo's)")
    ap.add_argument("--out", type=Path, default=None, help="output JSON (default examples/zoo/fd.json or fd-rgb.json)")
    args = ap.parse_args()
    s = dict(SETUP[args.dataset])
    s["models"] = args.models or s["models"]
    out = args.out or s["out"]
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc["setup"] = dict(
        ref=s["ref"],
        features=s["features"],
        samples=args.samples,
        sampler="ddim",
        steps=args.steps,
        sample_seed=0,
        bootstrap=args.bootstrap,
        threads=1,
    )
    doc.setdefault("members", {})
    reports = s["models"] / "fd-reports"
    reports.mkdir(parents=True, exist_ok=True)
    members = sorted(p.name for p in s["models"].iterdir() if (p / "model_index.json").exists())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for m in members:
        if m in doc["members"]:
            continue
        t0 = time.time()
        cmd = [
            sys.executable,
            "-m",
            "flatcheck",
            "fid",
            str(s["models"] / m),
            "--ref",
            s["ref"],
            "--features",
            s["features"],
            "--samples",
            str(args.samples),
            "--steps",
            str(args.steps),
            "--bootstrap",
            str(args.bootstrap),
            "--threads",
            "1",
            "--json",
            str(reports / f"{m}.json"),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(f"{m}: flatcheck fid failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        fid = json.loads((reports / f"{m}.json").read_text())["fid"]
        v = fid["value"]
        doc["members"][m] = dict(
            label=fid["label"],
            fd=v["value"],
            ci_low=v["ci_low"],
            ci_high=v["ci_high"],
            stderr=v["stderr"],
            seconds=round(time.time() - t0, 1),
        )
        print(
            f"{m}: {fid['label']} {v['value']:.4g} [{v['ci_low']:.4g}, {v['ci_high']:.4g}]  {time.time() - t0:.0f} s",
            flush=True,
        )
        out.write_text(json.dumps(doc, indent=2) + "\n")
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
