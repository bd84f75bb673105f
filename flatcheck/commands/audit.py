"""`flatcheck audit`: every measure on one shared bank and sample set, and every report format."""

from __future__ import annotations

from .options import AUDIT_SIZES, BATCH, COMMON, COND, DATA, FD, PROFILE, REPORTS, SAMPLES, SEED, TIMESTEPS, ModelArg, audit_options, console, load_checkpoint, run_with_progress, takes

# The audit's run, shared by audit, compare and gate: sizes default to the profile's (None).
AUDIT_RUN = (PROFILE, SEED, DATA, TIMESTEPS, SAMPLES, BATCH, COND, FD)


@takes(*AUDIT_RUN, REPORTS, COMMON, **AUDIT_SIZES)
def audit(model: ModelArg = None, o=None) -> None:
    """Audit a checkpoint: sharpness, exposure bias, quantization and FD/FID, with one verdict per measure.

    Bundled digits models use their training set as reference data (--data none for data-free).
    """
    from ..audit import audit_checkpoint
    from ..report.writers import write_reports

    ckpt, dev = load_checkpoint(model, o)
    opts = audit_options(o, dev)
    con = console(o.json)
    report = run_with_progress(con, audit_checkpoint, ckpt, opts)
    write_reports(report, con, json=o.json, out=o.out, markdown=o.markdown, html=o.html)
