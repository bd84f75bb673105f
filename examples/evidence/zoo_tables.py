"""The tables of examples/evidence/zoo.md, from the `flatcheck rank --json` documents of the zoos.

    python examples/evidence/zoo_tables.py examples/zoo/runs/rank-digits.json [examples/zoo/runs/rank-rgb.json ...]
    python examples/evidence/zoo_tables.py --split examples/zoo/runs/rank-digits.json DIR
        # one audit report per member, for `flatcheck rank --reports` on a subset of the zoo

Prints Markdown: per zoo, the members' sharpness and robustness numbers, the paired-free
comparisons of SAM against EMA and SWA, and the rank correlations (Spearman rho with its 95%
bootstrap interval over checkpoints and the permutation p) of every measure with every outcome.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MEMBER_MEASURES = ("hessian.top_eigenvalue", "hessian.trace", "avg.adaptive.r0.1", "worst.absolute.r0.001")
MEMBER_OUTCOMES = (
    "quantize.W8A8.drift",
    "quantize.W4A4.drift",
    "quantize.W4A4.fd_change",
    "quantize.bnb-nf4.drift",
    "exposure.20.gap",
)


def g(x, sig: int = 3) -> str:
    if x is None:
        return "-"
    s = f"{x:.{sig}g}"
    return s.replace("e-0", "e-").replace("e+0", "e+")


def name_of(path: str) -> str:
    return Path(path.rstrip("/")).name or path


def quantities(doc: dict) -> dict[str, dict]:
    return {q["key"]: q for q in doc["measures"] + doc["outcomes"]}


def members_table(doc: dict) -> str:
    q = quantities(doc)
    keys = [k for k in MEMBER_MEASURES + MEMBER_OUTCOMES if k in q]
    head = "| member | " + " | ".join(q[k]["short"] for k in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for i, m in enumerate(doc["models"]):
        cells = []
        for k in keys:
            v, se = q[k]["signed"][i] if q[k].get("signed") else q[k]["values"][i], q[k]["stderrs"][i]
            cells.append(f"{g(v)} ± {g(se, 2)}" if se is not None else g(v))
        lines.append(f"| {name_of(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sam_vs(doc: dict, others=("ema", "swa")) -> str:
    """SAM members against EMA and SWA on the whole-bank sharpness measures: ratio of values, and for
    measures with standard errors the difference in units of its (independent) standard error."""
    q = quantities(doc)
    names = [name_of(m) for m in doc["models"]]
    sams = [n for n in names if n.startswith("sam") or n.startswith("asam")]
    lines = [
        "| measure | SAM member | vs " + " | vs ".join(o for o in others if o in names) + " |",
        "|---|---|" + "---|" * sum(o in names for o in others),
    ]
    for k in ("hessian.top_eigenvalue", "hessian.trace", "avg.adaptive.r0.1"):
        if k not in q:
            continue
        for s in sams:
            i = names.index(s)
            cells = []
            for o in others:
                if o not in names:
                    continue
                j = names.index(o)
                a, b = q[k]["values"][i], q[k]["values"][j]
                sa, sb = q[k]["stderrs"][i], q[k]["stderrs"][j]
                z = f", {((a - b) / (sa**2 + sb**2) ** 0.5):+.1f} s.e." if sa and sb else ""
                cells.append(f"{g(a)} vs {g(b)} (x{a / b:.2f}{z})")
            lines.append(f"| {q[k]['label']} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def correlations(doc: dict, outcomes=None) -> str:
    outs = [o for o in doc["outcomes"] if outcomes is None or o["key"] in outcomes]
    meas = doc["measures"]
    pairs = {(p["measure"], p["outcome"]): p for p in doc["pairs"]}
    lines = ["| measure | " + " | ".join(o["short"] for o in outs) + " |", "|---|" + "---|" * len(outs)]
    for m in meas:
        cells = []
        for o in outs:
            p = pairs.get((m["key"], o["key"]))
            if p is None or p["spearman"]["value"] is None:
                cells.append("-")
                continue
            ci = p["spearman"]["checkpoints"]
            iv = f" [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci and ci.get("low") is not None else ""
            bold = "**" if p["spearman"]["value"] >= 0.8 else ""
            cells.append(f"{bold}{p['spearman']['value']:+.2f}{bold}{iv} p={g(p['p_value'], 2)}")
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best(doc: dict, outcome_prefix: str) -> list[str]:
    out = []
    for o in doc["outcomes"]:
        if not o["key"].startswith(outcome_prefix):
            continue
        ps = [p for p in doc["pairs"] if p["outcome"] == o["key"] and p["spearman"]["value"] is not None]
        if ps:
            p = max(ps, key=lambda p: p["spearman"]["value"])
            out.append(p["sentence"])
    return out


def main(paths: list[str]) -> None:
    for path in paths:
        doc = json.loads(Path(path).read_text())
        print(f"## {path}: {doc['n']} checkpoints\n")
        print(members_table(doc) + "\n")
        print(sam_vs(doc) + "\n")
        print(correlations(doc) + "\n")
        for s in best(doc, "quantize.W4A4"):
            print("-", s)
        print()


def split(path: str, out: str) -> None:
    doc = json.loads(Path(path).read_text())
    Path(out).mkdir(parents=True, exist_ok=True)
    for m, report in zip(doc["models"], doc["reports"]):
        (Path(out) / f"{name_of(m)}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--split"]:
        split(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1:])
