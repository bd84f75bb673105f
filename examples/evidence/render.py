"""The tables of examples/evidence/*.md, rendered from the JSON in runs/ (make.sh calls this).

Each table sits between `<!-- evidence:NAME -->` and `<!-- /evidence -->` in its .md file and is
replaced whole; the prose around it is written by hand against these numbers.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

MODELS = ("digits-base", "digits-ema", "digits-sam")


# ---------------------------------------------------------------------------- formatting
def g(x, sig: int = 4) -> str:
    """A number to `sig` significant digits, without exponent where it reads well."""
    if x is None:
        return "-"
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    if x == 0:
        return "0"
    s = f"{x:.{sig}g}"
    return s.replace("e-0", "e-").replace("e+0", "e+")


def pm(e: dict | None, sig: int = 4, se_sig: int = 2) -> str:
    """An Estimate as 'value ± stderr'."""
    if e is None:
        return "-"
    return f"{g(e['value'], sig)} ± {g(e['stderr'], se_sig)}" if e.get("stderr") is not None else g(e["value"], sig)


def signed(x, sig: int = 3) -> str:
    return ("+" if x >= 0 else "") + g(x, sig)


def pct(x, sig: int = 3) -> str:
    return ("+" if x >= 0 else "") + g(100 * x, sig) + "%"


def interval(lo, hi, sig: int = 4) -> str:
    return f"[{g(lo, sig)}, {g(hi, sig)}]"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- sharpness
def _sharp_rows(docs: dict[str, dict]) -> list[list[str]]:
    s = {m: d["sharpness"] for m, d in docs.items()}
    ms = list(docs)
    rows = [["L(theta) (± over probes)"] + [pm(s[m]["loss"]) for m in ms]]
    first = s[ms[0]]
    for kind in ("average", "worst"):
        for i, fam in enumerate(first[kind]):
            name = (
                fam["norm"]
                if kind == "average"
                else f"{fam['norm']} ({'ASAM' if fam['norm'] == 'adaptive' else 'SAM'})"
            )
            for j, pt in enumerate(fam["points"]):
                cells = []
                for m in ms:
                    p = s[m][kind][i]["points"][j]
                    value = (
                        pm(p["increase"], 3) if kind == "average" else g(p["increase"], 3)
                    )  # worst case: no standard error
                    cells.append(f"{value} ({pct(p['relative'])})")
                rows.append([f"{kind}, {name}, r={g(pt['radius'])}"] + cells)
    eig = []
    for m in ms:
        e = s[m]["hessian"]["eigen"]
        conv = "" if e["converged"] else ", NOT converged"
        eig.append(
            f"{', '.join(g(v) for v in e['eigenvalues'])} (joint bound {g(e['bound'], 2)}; {e['hvps']} HVPs{conv})"
        )
    k = len(first["hessian"]["eigen"]["eigenvalues"])
    rows.append([f"Hessian lambda_1..{k} (block Lanczos)"] + eig)
    rows.append(
        [f"Hessian trace ({first['hessian']['trace']['n']} draws)"] + [pm(s[m]["hessian"]["trace"]) for m in ms]
    )
    for b, (lo, hi) in enumerate(first["buckets"]):
        rows.append([f"trace, t in [{lo},{hi})"] + [pm(s[m]["hessian"]["trace_by_bucket"][b], 3) for m in ms])
    rows.append(["landscape curvature at 0"] + [g(s[m]["landscape"]["curvature"]) for m in ms])
    rows.append(
        ["landscape L at -1 / +1"]
        + [f"{g(s[m]['landscape']['curve'][0], 3)} / {g(s[m]['landscape']['curve'][-1], 3)}" for m in ms]
    )
    rows.append(["measures, wall s (1 thread, shared machine)"] + [g(sum(s[m]["timings"].values()), 3) for m in ms])
    return rows


def sharpness_tables(runs: Path) -> dict[str, str]:
    out = {}
    for kind in ("data", "free"):
        docs = {m: _load(runs / f"sharpness-{kind}-{m}.json") for m in MODELS}
        out[f"sharpness-{kind}"] = table(["measure", *MODELS], _sharp_rows(docs))
    # Paired against digits-base: same bank, same directions, draw by draw.
    docs = {m: _load(runs / f"sharpness-data-{m}.json")["sharpness"] for m in MODELS}
    base = docs["digits-base"]
    rows = []
    for i, fam in enumerate(base["average"]):
        for j, pt in enumerate(fam["points"]):
            cells = []
            b = pt["per_draw"]
            for m in MODELS[1:]:
                d = [x - y for x, y in zip(docs[m]["average"][i]["points"][j]["per_draw"], b)]
                mean = sum(d) / len(d)
                se = (sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)) ** 0.5
                cells.append(f"{signed(mean)} ± {g(se, 2)} ({pct(mean / pt['increase']['value'], 2)})")
            rows.append([f"average, {fam['norm']}, r={g(pt['radius'])}"] + cells)
    out["sharpness-paired"] = table(
        ["paired difference vs digits-base (same bank, same directions)", *MODELS[1:]], rows
    )
    rows = []
    for k, blk in enumerate(base["blocks"]):
        cells = [
            f"{pm(docs[m]['blocks'][k]['average']['adaptive'], 3)} / "
            f"{g(docs[m]['blocks'][k]['trace_per_parameter'], 3)}"
            for m in MODELS
        ]
        rows.append([f"{blk['block']} ({blk['parameters']:,})"] + cells)
    out["sharpness-blocks"] = table(
        [f"block (adaptive avg r={g(base['block_radius'])} / trace per parameter)", *MODELS], rows
    )
    return out


# ---------------------------------------------------------------------------- quantize
def _setting_label(s: dict) -> str:
    if s["backend"] == "bnb":
        return f"bnb-{s['bnb_type']} (Linear only, {100 * s['weight_share']:.1f}% of weights)"
    return s["name"]


def quantize_tables(runs: Path) -> dict[str, str]:
    out, rows = {}, []
    docs = {m: _load(runs / f"quantize-{m}.json")["quantize"] for m in MODELS}
    for m, q in docs.items():
        rows.append([m, f"full precision: probe loss {pm(q['full_precision']['probe_loss'], 3)}", "0", "0", "∞", "-"])
        for s in q["settings"]:
            rows.append(
                [
                    m,
                    _setting_label(s),
                    pm(s["sample_mse"], 3, 1),
                    g(s["relative_mse"], 2),
                    g(s["sample_psnr"]["value"], 3),
                    f"{signed(s['probe_loss_change']['value'], 2)} ± {g(s['probe_loss_change']['stderr'], 1)}",
                ]
            )
    out["quantize-main"] = table(["model", "setting", "sample MSE", "MSE / var", "PSNR dB", "Δ probe loss"], rows)
    rows = []
    for m in MODELS:
        q = {s["name"]: s for s in _load(runs / f"quantize-seed1-{m}.json")["quantize"]["settings"]}
        rows.append(
            [
                m,
                pm(q["W6A6"]["sample_mse"], 2, 1),
                pm(q["W4A4"]["sample_mse"], 2, 1),
                signed(q["W4A4"]["probe_loss_change"]["value"], 2),
            ]
        )
    out["quantize-seed1"] = table(["model", "W6A6 sample MSE", "W4A4 sample MSE", "W4A4 Δ probe loss"], rows)
    rows = []
    for m, q in docs.items():
        top = sorted(q["sensitivity"], key=lambda r: r["rank"])[:3]
        rows.append(
            [f"{m} ({g(q['sensitivity_setting_drift'], 3)})"]
            + [f"{r['name']} {g(r['drift_mse']['value'], 2)}" for r in top]
        )
    out["quantize-scan"] = table(["model", "1st", "2nd", "3rd"], rows)
    rows = []
    for m in MODELS:
        (s,) = _load(runs / f"quantize-first-last-8-{m}.json")["quantize"]["settings"]
        d = s["probe_loss_change"]
        rows.append([m, pm(s["sample_mse"], 3, 1), f"{signed(d['value'], 2)} ± {g(d['stderr'], 1)}"])
    out["quantize-first-last-8"] = table(["model", "W4A4 sample MSE", "W4A4 Δ probe loss"], rows)
    return out


# ---------------------------------------------------------------------------- exposure
def exposure_tables(runs: Path) -> dict[str, str]:
    rows = []
    docs = {m: _load(runs / f"exposure-{m}.json")["exposure"] for m in MODELS}
    steps = [r["steps"] for r in docs[MODELS[0]]["runs"]]
    for k, n in enumerate(steps):
        for m in MODELS:
            r = docs[m]["runs"][k]
            const = next(s for s in r["scaling"] if s["form"] == "constant")
            gap, after = r["gap_total"], const["gap_total"]
            rows.append(
                [
                    m,
                    str(n),
                    f"{signed(gap['value'], 3)} ± {g(gap['stderr'], 2)}",
                    pct(r["gap_relative"], 2),
                    signed(r["gap"]["mean"][-1], 3),
                    pm(r["variance_error_mean"], 2, 2),
                    pm(r["eps_scale_forward"], 4, 1),
                    g(const["b"], 5),
                    f"{signed(after['value'], 3)} ± {g(after['stderr'], 2)}",
                    f"{g(r['gap_abs_total'], 3)} -> {g(const['gap_abs_total'], 3)}",
                    "yes" if const["helps"] else "no",
                ]
            )
    header = [
        "model",
        "steps",
        "gap (sum over steps)",
        "gap/fwd",
        "gap at last step",
        "variance error",
        "eps scale (data)",
        "constant lambda",
        "gap after (constant)",
        "sum of abs(gap_t): before -> after",
        "helps",
    ]
    return {"exposure-main": table(header, rows)}


# ---------------------------------------------------------------------------- fid
def fid_tables(runs: Path) -> dict[str, str]:
    pairs = _load(runs / "fid-pairs.json")
    rows = []
    for name, r in pairs["sanity"].items():
        rows.append(
            [
                name,
                f"{g(r['fd'], 4)} {interval(*r['fd_interval'])}",
                f"{g(r['kid'], 3)} ± {g(r['kid_stderr'], 2)} ({g(r['kid_subset_std'], 3)})",
            ]
        )
    out = {
        "fid-sanity": table(
            ["samples vs half B", "FD (digits-cnn) [95% basic interval]", "KID ± s.e. (std over subsets)"], rows
        )
    }
    rows = []
    wall = _wall(runs)
    for m in MODELS:
        f = _load(runs / f"fid-{m}.json")["fid"]
        v = f["value"]
        rows.append(
            [
                m,
                f"{g(v['value'], 4)} {interval(v['ci_low'], v['ci_high'])}",
                g(v["stderr"], 3),
                f"{g(f['kid']['value'], 3)} ± {g(f['kid']['stderr'], 2)} ({g(f['kid_subset_std'], 2)})",
                f"{wall.get(f'fid-{m}', '-')} s",
                "yes" if pairs["rescored_equals_fid"][m] else "NO",
            ]
        )
    out["fid-models"] = table(
        [
            "model",
            "FD (digits-cnn) [95% basic interval]",
            "bootstrap s.e.",
            "KID ± s.e. (std over subsets)",
            "wall (1 thread)",
            "rescored = fid",
        ],
        rows,
    )
    rows = [
        [
            k,
            f"{signed(p['value'], 4)} {interval(*p['interval'])}",
            f"{g(p['stderr'], 2)} (independent: {g(p['independent_stderr'], 2)})",
        ]
        for k, p in pairs["pairs"].items()
    ]
    out["fid-pairs"] = table(["difference", "FD change [95% basic interval]", "paired s.e."], rows)
    return out


# ---------------------------------------------------------------------------- audit, compare, gate
def audit_tables(runs: Path) -> dict[str, str]:
    a = _load(runs / "audit.json")
    wall = _wall(runs)
    t = a["timings"]
    total = sum(v for v in t.values() if isinstance(v, (int, float)))
    share = " / ".join(f"{100 * t.get(k, 0) / total:.0f}%" for k in ("exposure", "quantize", "sharpness"))
    rest = 100 * sum(t.get(k, 0) for k in ("bank", "bank_loss", "fid")) / total
    out = {
        "audit-time": table(
            ["", ""],
            [
                ["wall time, whole process (imports included), 1 thread", f"**{wall.get('audit', '-')} s**"],
                ["measures (report timings)", f"{g(total, 3)} s"],
                ["share: exposure / quantize / sharpness / bank + FD", f"{share} / {rest:.0f}%"],
            ],
        )
    }
    out["audit-verdicts"] = table(
        ["area", "verdict", "summary"], [[v["area"], v["status"], v["line"]] for v in a["verdicts"]]
    )
    c = _load(runs / "compare.json")
    by_path = {r["path"]: r for r in c["rows"]}
    wanted = [
        "bank.loss",
        "sharpness.hessian.eigen.eigenvalues.0",
        "sharpness.hessian.trace",
        "sharpness.average.adaptive.points.1.relative",
        "sharpness.worst.adaptive.points.1.relative",
        "sharpness.landscape.curvature",
        "exposure.runs.0.gap_relative",
        "quantize.settings.W8A8.relative_mse",
        "quantize.settings.W4A4.relative_mse",
        "quantize.settings.W4A4.probe_loss_change",
        "quantize.settings.W4A4.fid_change",
        "fid.value",
    ]
    rows = []
    for p in wanted:
        r = by_path.get(p)
        if r is None:
            continue
        rows.append(
            [f"`{p}`"]
            + [f"{g(v, 4)} ± {g(se, 2)}" if se is not None else g(v, 4) for v, se in zip(r["values"], r["stderrs"])]
        )
    out["audit-compare"] = table(["metric (gate path)", *c["models"]], rows)
    gb, gn = _load(runs / "gate-base.json")["gate"], _load(runs / "gate-noisy.json")["gate"]
    rows = []
    for rb, rn in zip(gb["rows"], gn["rows"]):
        cell = lambda r: f"{g(r['value'], 4)} {'pass' if r['passed'] else '**FAIL**'}"  # noqa: E731
        rows.append([f"`{rb['metric']}` {rb['condition']}", cell(rb), cell(rn)])
    out["audit-gate"] = table(["rule", "digits-base", "NOISY"], rows)
    return out


# ---------------------------------------------------------------------------- files
FILES = {
    "sharpness.md": sharpness_tables,
    "quantize.md": quantize_tables,
    "exposure.md": exposure_tables,
    "fid.md": fid_tables,
    "audit.md": audit_tables,
}
MARK = re.compile(r"(<!-- evidence:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /evidence -->)", re.S)


def render_all(runs: Path, folder: Path) -> None:
    for name, make in FILES.items():
        path = folder / name
        try:
            tables = make(runs)
        except FileNotFoundError as exc:  # that area was not run
            print(f"{name}: skipped ({Path(exc.filename).name} missing)")
            continue
        text = path.read_text()
        seen = set()

        def sub(m):
            seen.add(m["name"])
            if m["name"] not in tables:
                raise SystemExit(f"{name}: no table '{m['name']}'")
            return m.group(1) + tables[m["name"]] + "\n" + m.group(4)

        new = MARK.sub(sub, text)
        missing = set(tables) - seen
        if missing:
            raise SystemExit(f"{name}: tables without a marker: {', '.join(sorted(missing))}")
        path.write_text(new)
        print(f"{name}: {len(seen)} tables")


def _load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _wall(runs: Path) -> dict[str, str]:
    f = runs / "wall.tsv"
    if not f.exists():
        return {}
    return {line.split("\t")[0]: line.split("\t")[1] for line in f.read_text().splitlines() if line.strip()}
