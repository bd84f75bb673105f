"""Tiny audits shared by test_audit.py and test_report.py (one per session: audits cost seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

# Every size at its floor: 8 probes, 4 samples x 2 steps. Numbers are meaningless, plumbing is real.
# The cheapest sharpness sweep that still runs every measure kind the report shows (two radii, as --quick:
# the paths the docs show, e.g. sharpness.average.adaptive.points.1.relative, exist in it).
TINY_SHARPNESS = dict(
    norms=("adaptive",),
    radii=(0.01, 0.1),
    worst_radii=(1e-4, 1e-3),
    draws=1,
    ascent_steps=1,
    top_k=1,
    hessian_probes=4,
    landscape_probes=4,
    landscape_grid=0,
    buckets=1,
    lanczos_iters=2,
    hutchinson_draws=2,
    landscape_points=3,
    # synthetic values for the tiny model's family, size and settings: its headline numbers get percentiles
    reference=str(Path(__file__).parent / "fixtures" / "sharpness_reference_tiny.json"),
)
TINY = dict(
    probes=8,
    samples=4,
    steps=2,
    batch_size=8,
    data="digits",
    fid_features="digits-cnn",
    sharpness=TINY_SHARPNESS,
    quantize=dict(settings=["W8A8", "W4A4"], calib_samples=2),
)
TINY_CLI = ["--quick", "--probes", "8", "--samples", "4", "--steps", "2", "--batch-size", "8", "--data", "digits"]


def tiny_options(**overrides):
    from flatcheck.auditing import options_for

    return options_for("quick", **{**TINY, **overrides})


@pytest.fixture(scope="session")
def tiny_audit(tiny_pipeline):
    """(AuditReport, its JSON document) of the tiny pipeline, every area run."""
    from flatcheck.auditing import audit_checkpoint
    from flatcheck.core.checkpoint import load
    from flatcheck.results import to_jsonable

    report = audit_checkpoint(load(str(tiny_pipeline)), tiny_options())
    return report, to_jsonable(report)
