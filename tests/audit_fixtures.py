"""Tiny audits shared by test_audit.py and test_report.py (one per session: audits cost seconds)."""

from __future__ import annotations

import pytest

# Every size at its floor: 8 probes, 4 samples x 2 steps. Numbers are meaningless, plumbing is real.
TINY = dict(probes=8, samples=4, steps=2, batch_size=8, sharpness_iters=2, sharpness_hutchinson=2, landscape_points=3,
            quantize_settings=["W8A8", "W4A4"], quantize_calib_samples=2, data="digits", fid_features="digits-cnn")
# The cheapest sharpness sweep that still runs every measure kind the report shows.
TINY_SHARPNESS = dict(norms=("adaptive",), radii=(0.1,), worst_radii=(1e-3,), draws=1, ascent_steps=1, top_k=1,
                      hessian_probes=4, landscape_probes=4, landscape_grid=0, buckets=1)
TINY_CLI = ["--quick", "--probes", "8", "--samples", "4", "--steps", "2", "--batch-size", "8", "--data", "digits"]


def tiny_options(**overrides):
    from flatcheck.audit import options_for

    return options_for("quick", **{**TINY, **overrides})


@pytest.fixture(scope="session")
def tiny_audit(tiny_pipeline):
    """(AuditReport, its JSON document) of the tiny pipeline, every area run."""
    from flatcheck import audit_areas
    from flatcheck.audit import audit_checkpoint
    from flatcheck.checkpoint import load
    from flatcheck.report.jsonio import to_jsonable

    saved = audit_areas.SHARPNESS_PROFILE["quick"]
    audit_areas.SHARPNESS_PROFILE["quick"] = TINY_SHARPNESS
    try:
        report = audit_checkpoint(load(str(tiny_pipeline)), tiny_options())
    finally:
        audit_areas.SHARPNESS_PROFILE["quick"] = saved
    return report, to_jsonable(report)
