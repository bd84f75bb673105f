"""Exposure bias: the sampler's own inputs against the forward process, step by step (see measure.py)."""

from __future__ import annotations

from dataclasses import replace

from ...core.progress import Counter
from ..base import Measure, Readings, Verdict, lazy
from .config import ExposureConfig

# Audit profiles: the CI profile fits the constant eps scaling but does not rerun the sampler to check it
# (a quarter of the measure's work); the others also fit and check the linear form.
PROFILES = {"quick": {"check_scaling": False}, "default": {"linear_scale": True}, "full": {"linear_scale": True}}


def run(inputs, config: ExposureConfig, progress=None):
    """On the probe bank (its x0 and its noise are the forward reference: common random numbers with
    the other measures); the run of the shared samples' step count is the shared sampling itself.
    FD/FID of each step count's samples when the run has a reference."""
    from .measure import measure_exposure, work_units

    scorer = inputs.scorer
    work = replace(config, keep_samples=config.keep_samples or scorer is not None)
    tick = Counter(progress, "exposure", work_units(inputs.denoiser, work, inputs.options.probes))

    def reference():  # data-free, the bank is drawn from the shared samples: asked for after run (a) made them
        bank = inputs.bank
        return bank.x0, bank.noise, bank.cond, bank.source

    result = measure_exposure(inputs.denoiser, reference, work, tick.add, shared=inputs.samples)
    if scorer is not None:
        scores = [scorer.score(r._samples) for r in result.runs]
        for r, fd in zip(result.runs, scores):
            r.fid, r.fid_label = fd.value, fd.label
        result.fid_warning = scores[0].warning if scores else None
    elif inputs.fd_problem:  # a reference was implied (--data) but cannot be scored: say why
        result.fid_warning = f"FD/FID {inputs.fd_problem}"
    if config.keep_samples:  # what a sample folder of these samples records (--save-samples)
        from ...core.sample_store import SampleSpec
        from ...core.sampling import make_sampler

        for r in result.runs:
            r._spec = SampleSpec.of_run(
                inputs.denoiser, make_sampler(inputs.denoiser.scheduler, config.sampler), r.steps, config.seed
            )
    else:
        for r in result.runs:
            r._samples = None
    result.config = config
    return result


def verdict(result) -> Verdict:
    """Rule of thumb: an eps-norm gap below 1% of the forward norm (summed over steps) is good, below 3% fair."""
    run = result.runs[0]
    rel = run.gap_relative
    status = "good" if abs(rel) < 0.01 else "fair" if abs(rel) < 0.03 else "poor"
    checked = [s for s in run.scaling if s.checked]
    fix = ""
    if checked:
        best = min(checked, key=lambda s: s.gap_abs_total)
        fix = (
            f"; eps scaling ({best.form}, b={best.b:.4f}) {'shrinks' if best.helps else 'does not shrink'} it"
            f" ({run.gap_abs_total:.3g} -> {best.gap_abs_total:.3g})"
        )
    elif run.scaling:
        fix = f"; eps scaling fit ({run.scaling[0].form}) b={run.scaling[0].b:.4f}, not checked by a rerun"
    return Verdict(
        "exposure",
        status,
        f"{getattr(result, 'quantity', 'eps')}-norm gap {rel:+.2%} of the forward norm over {run.steps} steps "
        f"({run.gap_total}){fix}; variance error {run.variance_error_mean}",
    )


# --save-samples: each run (a)'s samples as a resumable sample folder (a run that kept them).
save_samples = lazy(f"{__name__}.view", "save_samples")


MEASURE = Measure(
    name="exposure",
    title="exposure-bias drift across sampling steps",
    config=ExposureConfig,
    run=run,
    verdict=verdict,
    view=lazy(f"{__name__}.view", "view"),
    plot=lazy(f"{__name__}.view", "plot"),
    save=lazy(f"{__name__}.view", "save"),
    profiles=PROFILES,
    order=10,  # first: its sampler run can be the one that makes the shared samples
    cost=lazy(f"{__name__}.cost", "work"),
    readings=Readings("outcomes", "exposure outcomes", lazy(f"{__name__}.readings", "readings"), order=20),
    paths=lazy(f"{__name__}.paths", "produces"),
)

__all__ = ["MEASURE", "ExposureConfig", "save_samples"]
