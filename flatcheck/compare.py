"""`flatcheck compare A B [C ...]`: audit several checkpoints with one bank, one seed set, one option set.

Same bank: with --data the bank depends only on the data and the seed, so each column is a
separate `flatcheck audit` of that checkpoint with the same options. Data-free, the bank's x0 are
drawn from the pooled full-precision samples of all the checkpoints (no checkpoint's own samples
are favoured); each checkpoint's samples are generated once and reused by its measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .auditing import (
    AREAS,
    AuditOptions,
    AuditReport,
    RunMemory,
    audit_checkpoint,
    describe_model,
    resolve_for,
    run_measures,
    selected,
)
from .core.memory import PeakMemory
from .core.progress import Progress
from .errors import InputError
from .measures import REGISTRY
from .results import number_rows, to_jsonable


@dataclass
class Comparison:
    models: list[str]  # column names (the MODEL arguments)
    options: dict
    verdicts: dict  # area -> ["status: line", ...] one per model
    rows: list[dict]  # path, values, stderrs, text, diff, stderr_diff
    reports: list[AuditReport]


def audit_many(checkpoints: list, opts: AuditOptions, progress: Progress | None = None) -> list[AuditReport]:
    """Audit each loaded checkpoint with the same bank, seeds and settings."""
    import torch

    from .core.denoiser import Denoiser
    from .core.runtime import seed_everything

    if len(checkpoints) < 2:
        raise InputError("compare needs at least two checkpoints")
    resolved = [resolve_for(c, opts) for c in checkpoints]
    if len({(o.data, o.ref, o.fid_features) for o in resolved}) > 1:
        raise InputError(
            "the checkpoints default to different reference data or FD features: pass --data "
            "(or --data none) for all of them"
        )
    opts = resolved[0]
    if opts.data is not None:  # the bank comes from the data: each column is a plain audit
        return [audit_checkpoint(c, opts, progress) for c in checkpoints]
    from .core.inputs import SampleSet, build_inputs

    denoisers = [Denoiser.from_checkpoint(c, opts.conditions()) for c in checkpoints]
    shapes = {d.sample_shape for d in denoisers}
    if len(shapes) > 1:
        raise InputError(
            f"the checkpoints have different sample shapes ({', '.join(map(str, shapes))}): "
            "nothing to compare on one bank"
        )
    kinds = {(d.conditioning.kind, d.conditioning.count) if d.conditioning else ("none", 0) for d in denoisers}
    if len(kinds) > 1:
        raise InputError(
            f"the checkpoints are conditioned differently ({', '.join(f'{k} x{n}' for k, n in sorted(kinds))}): "
            "a shared bank needs the same conditions"
        )
    sets = []
    for d in denoisers:
        seed_everything(opts.seed)
        sets.append(SampleSet(d, opts.inputs(), progress))
        sets[-1].get()
    # Interleave so that the bank's random draw sees every model's samples equally.
    pool = torch.stack([s.get() for s in sets], 1).flatten(0, 1)
    pool_cond = None
    if denoisers[0].conditioning is not None:  # same seed, same conditions: sample i has one condition in every column
        ids = denoisers[0].conditioning.ids(opts.seed, range(len(sets[0].get())))
        pool_cond = ids.repeat_interleave(len(sets))
    note = (
        f"data-free: drawn from the pooled {len(pool)} full-precision samples of {len(sets)} checkpoints "
        f"({opts.sampler} {opts.steps} steps, seed {opts.seed})"
    )
    uses_bank = any(REGISTRY[n].uses_bank for n in selected(opts))
    reports = []
    for ckpt, d, samples in zip(checkpoints, denoisers, sets):
        seed_everything(opts.seed)
        with PeakMemory(d.device) as run:  # each column's peaks, as audit_checkpoint's (its samples were made above)
            memory = RunMemory(run)
            with memory.phase("inputs"):
                inputs = build_inputs(
                    d,
                    opts.inputs(),
                    bank=uses_bank,
                    progress=progress,
                    pool=pool,
                    pool_note=note,
                    samples=samples,
                    fd_optional=opts.ref is None,
                    pool_cond=pool_cond,
                )
            reports.append(run_measures(inputs, describe_model(ckpt), opts, progress, memory=memory))
    return reports


def compare_reports(reports: list, names: list[str]) -> Comparison:
    """Side by side: every number of every area (and the bank loss), with differences to the first model."""
    docs = [r if isinstance(r, dict) else to_jsonable(r) for r in reports]
    verdicts = {area: [_verdict_cell(doc, area) for doc in docs] for area in AREAS}
    tables = [_numbers(doc) for doc in docs]
    order = list(dict.fromkeys(p for t in tables for p in t))  # first model's order, then any extra paths
    rows = []
    for path in order:
        cells = [t.get(path) for t in tables]
        values = [c.value if c else None for c in cells]
        stderrs = [c.stderr if c else None for c in cells]
        diff, se_diff = [], []
        for v, se in zip(values[1:], stderrs[1:]):
            ok = v is not None and values[0] is not None
            diff.append(v - values[0] if ok else None)
            # Standard errors (every Estimate's stderr is one: KID's is that of its mean over subsets,
            # FD's the bootstrap's) add in quadrature when independent; the bank is shared, so this is
            # conservative for bank measures.
            se_diff.append(math.hypot(se, stderrs[0]) if ok and se is not None and stderrs[0] is not None else None)
        rows.append(
            {
                "path": path,
                "values": values,
                "stderrs": stderrs,
                "text": [c.text() if c else "—" for c in cells],
                "diff": diff,
                "stderr_diff": se_diff,
            }
        )
    return Comparison(list(names), docs[0].get("options", {}), verdicts, rows, reports)


def _verdict_cell(doc: dict, area: str) -> str:
    v = next((v for v in doc.get("verdicts", []) if v["area"] == area), None)
    return f"{v['status']}: {v['line']}" if v else "—"


def _numbers(doc: dict) -> dict:
    out = {}
    loss = doc.get("bank", {}).get("loss")
    if loss is not None:
        for r in number_rows(loss, "bank.loss"):
            out[r.path] = r
    for area in AREAS:
        if doc.get(area) is not None:
            for r in number_rows(doc[area], area):
                out[r.path] = r
    return out
