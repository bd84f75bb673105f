"""A model card's flatcheck section: the audit's headline numbers in a Hugging Face README.md (torch-free).

Two managed parts, the rest of the file left byte for byte as it was:
  - the body between `<!-- flatcheck:begin -->` and `<!-- flatcheck:end -->` (appended at the end the first
    time): the verdicts and the headline numbers as Markdown, with the gate path of each;
  - in the YAML front matter, the `model-index` results whose source is flatcheck (Hugging Face's evaluation
    results format); results from other sources and every other key stay. Only the `model-index` block's text
    is rewritten; the new front matter is parsed back and must hold the same other keys, or nothing is written.
Same report, same bytes: running twice changes nothing.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

BEGIN = "<!-- flatcheck:begin -->"
END = "<!-- flatcheck:end -->"
SOURCE = "flatcheck"  # model-index results whose source.name starts with this are flatcheck's
TASKS = {"text": ("text-to-image", "Text-to-image"), "none": ("unconditional-image-generation", "Image generation")}


@dataclass
class Headline:
    path: str  # the gate path
    type: str  # model-index metric type
    name: str
    value: float
    text: str  # as the reports print it (with its uncertainty)


def headlines(report: dict) -> list[Headline]:
    """The audit's headline numbers that this report has, in report order."""
    from .results import number_rows

    rows = {}
    for area in ("sharpness", "exposure", "quantize", "fid"):
        if report.get(area):
            rows.update({r.path: r for r in number_rows(report[area], area)})
    out: list[Headline] = []

    def add(path: str, kind: str, name: str) -> None:
        row = rows.get(path)  # absent: not in this report (skipped measure, other settings)
        if row is not None and row.value is not None:
            out.append(Headline(path, kind, name, row.value, row.text()))

    if report.get("sharpness"):
        add("sharpness.hessian.eigen.eigenvalues.0", "hessian_top_eigenvalue", "top Hessian eigenvalue")
        add("sharpness.hessian.trace", "hessian_trace", "Hessian trace")
        ref = report["sharpness"].get("reference") or {}
        for key, point in (ref.get("metrics") or {}).items():
            if point.get("percentile") is not None:
                name = f"{point['label']}, percentile among {point['n']} reference checkpoints ({ref['set']})"
                add(f"sharpness.reference.metrics.{key}.percentile", f"sharpness_percentile_{key}", name)
    for i, run in enumerate((report.get("exposure") or {}).get("runs") or []):
        add(f"exposure.runs.{i}.gap_relative", "exposure_gap_relative", f"eps-norm gap, {run.get('steps')} steps")
    for s in (report.get("quantize") or {}).get("settings") or []:
        add(f"quantize.settings.{s['name']}.relative_mse", "quantization_drift", f"sample drift {s['name']}")
    fid = report.get("fid")
    if fid:
        kind = "fid" if fid.get("features") == "inception" else "fd"
        add("fid.value", kind, f"{fid.get('label', 'FD')}, {fid.get('num_samples')} samples")
    return out


def _round(x: float) -> float:
    return float(f"{x:.5g}")


def model_index_results(report: dict) -> list[dict]:
    """The Hugging Face `model-index` results entry of this report (one: all its headline numbers)."""
    model, opts, env = (report.get(k) or {} for k in ("model", "options", "environment"))
    task_type, task_name = TASKS.get(model.get("conditioning"), ("image-generation", "Image generation"))
    data = opts.get("data")
    dataset = (
        {"type": data, "name": data} if data else {"type": "none", "name": "none (data-free: the model's samples)"}
    )
    metrics = [{"type": h.type, "value": _round(h.value), "name": h.name} for h in headlines(report)]
    if not metrics:
        return []
    source = f"{SOURCE} {env.get('flatcheck', '')} (profile {opts.get('profile')}, seed {opts.get('seed')})"
    return [
        {
            "task": {"type": task_type, "name": task_name},
            "dataset": dataset,
            "metrics": metrics,
            "source": {"name": source.replace("  ", " ")},
        }
    ]


def section(report: dict) -> str:
    """The managed Markdown section, markers included."""
    from .report.markdown import _table, verdict_table

    model, opts, env = (report.get(k) or {} for k in ("model", "options", "environment"))
    rows = [[h.name, h.text, f"`{h.path}`"] for h in headlines(report)]
    lines = [
        BEGIN,
        "## flatcheck audit",
        "",
        f"Measured by flatcheck {env.get('flatcheck')} on `{model.get('source')}` ({model.get('denoiser_class')}, "
        f"{model.get('parameters', 0):,} parameters): profile {opts.get('profile')}, seed {opts.get('seed')}, "
        f"data {opts.get('data') or 'none (data-free)'}, {env.get('device')}, torch {env.get('torch')}.",
        "",
        verdict_table(report),
        "",
    ]
    if rows:
        lines += [_table(["headline number", "value", "gate path"], rows), ""]
    ref = (report.get("sharpness") or {}).get("reference")
    if ref:
        lines += [f"Sharpness scale: {ref['label']}.", ""]
    lines += ["_This section and the flatcheck `model-index` results are rewritten by `flatcheck card`._", END]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- the file
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)(^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z))", re.S | re.M)


def update(text: str, report: dict, where: str = "the card") -> str:
    """`text` (a README.md, possibly empty) with its flatcheck section and model-index results for `report`."""
    import yaml

    m = _FRONT.match(text)
    front, body = (m.group(1), text[m.end() :]) if m else ("", text)
    try:
        meta = yaml.safe_load(front) if front.strip() else {}
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: its YAML front matter does not parse ({str(exc).splitlines()[0]})") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise InputError(f"{where}: its YAML front matter is not a mapping of keys")
    front = _with_model_index(front, meta, report, where)
    head = f"---\n{front}---\n" if not m else text[: m.start(1)] + front + m.group(2)
    return head + _with_section(body, section(report))


def _with_model_index(front: str, meta: dict, report: dict, where: str) -> str:
    import yaml

    entries = meta.get("model-index")
    if entries is not None and not (isinstance(entries, list) and all(isinstance(e, dict) for e in entries)):
        raise InputError(f"{where}: its model-index is not a list of models (Hugging Face's format)")
    entries = [dict(e) for e in entries or []] or [{"name": _model_name(report)}]
    mine = model_index_results(report)
    first = entries[0]
    kept = [r for r in first.get("results") or [] if not _is_flatcheck(r)]
    first["results"] = kept + mine
    if not first["results"]:
        del first["results"]
    block = yaml.safe_dump({"model-index": entries}, sort_keys=False, default_flow_style=False, allow_unicode=True)
    lines = front.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"model-index\s*:", line)), None)
    if start is None and "model-index" in meta:
        raise InputError(f"{where}: its model-index key is not written as a plain 'model-index:' line")
    if start is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        new = "".join(lines) + block
    else:
        end = start + 1
        last = start
        while end < len(lines):  # the block: indented lines and top-level '- ' items (blank lines inside it too)
            line = lines[end]
            if line[:1] in (" ", "\t", "-"):
                last = end
            elif line.strip() and not line.startswith("#"):
                break
            end += 1
        new = "".join(lines[:start]) + block + "".join(lines[last + 1 :])
    parsed = yaml.safe_load(new)
    others = {k: v for k, v in meta.items() if k != "model-index"}
    if {k: v for k, v in parsed.items() if k != "model-index"} != others or parsed.get("model-index") != entries:
        raise InputError(f"{where}: cannot rewrite model-index in its front matter without touching other keys")
    return new


def _is_flatcheck(result) -> bool:
    name = ((result or {}).get("source") or {}).get("name") if isinstance(result, dict) else None
    return isinstance(name, str) and name.startswith(SOURCE)


def _model_name(report: dict) -> str:
    source = str((report.get("model") or {}).get("source") or "model")
    return source.rstrip("/").rsplit("/", 1)[-1]


def _with_section(body: str, managed: str) -> str:
    start, end = body.find(BEGIN), body.find(END)
    if start >= 0 and end > start:
        tail = body[end + len(END) :]
        return body[:start] + managed + (tail[1:] if tail.startswith("\n") else tail)
    if start >= 0 or end >= 0:
        raise InputError(f"the card has a '{BEGIN if start >= 0 else END}' marker without its pair")
    if not body:
        return "\n" + managed
    return body + ("" if body.endswith("\n") else "\n") + "\n" + managed


def write_card(path: str | Path, report: dict) -> Path:
    """Create or update the model card at `path` (written atomically: a temporary file, then renamed)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8") if p.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the model card {p}: {exc}") from None
    new = update(text, report, where=f"model card {p}")
    if new == text:
        return p
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(new)
    if p.exists():
        os.chmod(tmp, p.stat().st_mode & 0o7777)
    os.replace(tmp, p)
    return p
