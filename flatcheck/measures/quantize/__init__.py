"""Quantization: generation quality under W/A quantization, per setting and per layer (see measure.py)."""

from __future__ import annotations

from ..base import Measure, Readings, Verdict, lazy
from .config import QuantizeConfig

AUDIT_SETTINGS = ("W8A8", "W4A8", "W8A4", "W4A4")  # weights and activations apart, then together
PROFILES = {
    "quick": dict(settings=("W8A8", "W4A4"), calib_samples=16, sensitivity_samples=0),
    "default": dict(settings=AUDIT_SETTINGS),
    "full": dict(settings=AUDIT_SETTINGS, calib_samples=256, sensitivity_samples=64),
}


def run(inputs, config: QuantizeConfig, progress=None):
    """Against the shared full-precision samples (the config's sampler, steps, samples and seed are
    the run's); FD/FID of full precision and of every setting when the run has a reference (scored
    by the measure in its one pass over the decoded batches)."""
    from .measure import measure_quantization

    fp = inputs.samples.get()

    def stage(name: str, done: int, total) -> None:
        if progress:
            progress(f"quantize: {name}", done, total)

    scorer = inputs.scorer
    result = measure_quantization(
        inputs.denoiser,
        inputs.bank,
        config,
        stage,
        fp_samples=fp,
        fp_seconds=inputs.samples.plain_seconds,
        scorer=scorer,
    )
    if scorer is None and inputs.fd_problem:  # a reference was implied (--data) but cannot be scored: say why
        result.fid_warning = f"FD/FID {inputs.fd_problem}"
    if not config.keep_samples:
        result._fp_samples = None
        for s in result.settings:
            s._samples = None
    return result


def check_bitsandbytes() -> None:
    """InputError (one line) when --bnb is asked for and bitsandbytes does not import."""
    from .bnb_backend import import_bitsandbytes

    import_bitsandbytes()


def verdict(result) -> Verdict:
    """Rule of thumb: 8-bit sample drift below 1% of the sample variance is good, below 5% fair
    (with no 8-bit setting, the worst setting is judged at 10% / 30%)."""
    parts = [f"{s.name} drift {s.relative_mse:.2%}" for s in result.settings]
    eight = [s for s in result.settings if (s.wbits or 16) >= 8 and (s.abits or 16) >= 8]
    judged = max(eight, key=lambda s: s.relative_mse) if eight else max(result.settings, key=lambda s: s.relative_mse)
    limits = (0.01, 0.05) if eight else (0.10, 0.30)
    status = "good" if judged.relative_mse < limits[0] else "fair" if judged.relative_mse < limits[1] else "poor"
    worst = max(result.settings, key=lambda s: s.relative_mse)
    line = (
        f"sample drift (MSE / sample variance): {', '.join(parts)}; {worst.name} probe loss "
        f"{worst.probe_loss_change.value:+.3g} ± {worst.probe_loss_change.stderr or 0:.2g}"
    )
    changes = [
        f"{s.name} {s.fid_change.value:+.3g} ± {s.fid_change.stderr or 0:.2g}"
        for s in result.settings
        if getattr(s, "fid_change", None) is not None
    ]
    if changes:
        line += f"; {getattr(result, 'fid_label', None) or 'FD'} change {', '.join(changes)}"
    return Verdict("quantize", status, line)


MEASURE = Measure(
    name="quantize",
    title="quality under 8/6/4-bit weight-activation quantization",
    config=QuantizeConfig,
    run=run,
    verdict=verdict,
    view=lazy(f"{__name__}.view", "view"),
    plot=lazy(f"{__name__}.view", "plot"),
    save=lazy(f"{__name__}.view", "save"),
    profiles=PROFILES,
    order=20,
    cost=lazy(f"{__name__}.cost", "work"),
    readings=Readings("outcomes", "quantization outcomes", lazy(f"{__name__}.readings", "readings"), order=10),
    paths=lazy(f"{__name__}.paths", "produces"),
)

__all__ = ["MEASURE", "QuantizeConfig"]
