"""How the audit calls each measure, and the one verdict line it draws from each result.

Each runner takes the shared AuditInputs (bank, samples, options) and the results so far,
and returns (result dataclass, Verdict). Sizes come from AuditOptions (the profile).

Verdict thresholds are rules of thumb, stated in the line itself, not a standard:
  quantize  8-bit sample drift below 1% of the sample variance is good, below 5% fair;
  exposure  an eps-norm gap below 1% of the forward norm (summed over steps) is good, below 3% fair;
  sharpness and FD/FID have no absolute scale: 'info', to compare checkpoints or gate on a baseline.
"""

from __future__ import annotations

from typing import Any

from .audit import AREA_RUNNERS, AuditInputs, Progress, Verdict


def _ticker(progress: Progress | None, task: str, total: int):
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if progress:
            progress(task, min(done[0], total), total)

    return tick


# ---------------------------------------------------------------------------- exposure
def run_exposure(inputs: AuditInputs, results: dict, progress: Progress | None):
    from .exposure import ExposureConfig, measure_exposure, work_units

    o = inputs.options
    make_samples = inputs.fp_samples is None
    config = ExposureConfig(steps=(o.steps,), sampler=o.sampler, samples=o.samples, batch_size=o.batch_size, seed=o.seed,
                            linear_scale=o.profile != "quick", keep_samples=make_samples)
    bank = inputs.bank
    # The bank is the reference: its x0 and its noise (common random numbers with the other measures).
    total = work_units(inputs.denoiser, config, len(bank))
    result = measure_exposure(inputs.denoiser, bank.x0, config, _ticker(progress, "exposure", total), reference_noise=bank.noise,
                              reference_source=f"probe bank: {bank.source}")
    run = result.runs[0]
    if make_samples:  # run (a) is exactly the full-precision sampling: share it
        inputs.fp_samples = run._samples
    return result, exposure_verdict(run)


def exposure_verdict(run) -> Verdict:
    rel = run.gap_relative
    status = "good" if abs(rel) < 0.01 else "fair" if abs(rel) < 0.03 else "poor"
    best = min(run.scaling, key=lambda s: s.gap_abs_total) if run.scaling else None
    fix = ""
    if best is not None:
        fix = (f"; eps scaling ({best.form}, b={best.b:.4f}) {'shrinks' if best.helps else 'does not shrink'} it"
               f" ({run.gap_abs_total:.3g} -> {best.gap_abs_total:.3g})")
    return Verdict("exposure", status,
                   f"eps-norm gap {rel:+.2%} of the forward norm over {run.steps} steps ({run.gap_total}){fix}; variance error {run.variance_error_mean}")


# ---------------------------------------------------------------------------- quantize
def run_quantize(inputs: AuditInputs, results: dict, progress: Progress | None):
    from .quant.settings import QuantSetting
    from .quantize import QuantizeConfig, measure_quantization

    o = inputs.options
    settings = [_setting(name) for name in o.quantize_settings]
    config = QuantizeConfig(settings=settings, sampler=o.sampler, steps=o.steps, samples=len(inputs.fp_samples),
                            calib_samples=o.quantize_calib_samples, sensitivity_samples=o.quantize_sensitivity_samples,
                            seed=o.seed, batch_size=o.batch_size, keep_samples="fid" not in o.skip)
    result = measure_quantization(inputs.denoiser, inputs.bank, config, _stage_ticker(progress, "quantize"), fp_samples=inputs.fp_samples)
    return result, quantize_verdict(result)


def _stage_ticker(progress: Progress | None, task: str):
    done = [0]

    def tick(stage: str, k: int, total: int) -> None:
        done[0] += k
        if progress:
            progress(task, min(done[0], total), total)

    return tick


def _setting(name: str):
    import re

    from .errors import InputError
    from .quant.settings import QuantSetting

    m = re.fullmatch(r"W(\d+|-fp)A(\d+|-fp)", name.strip(), re.IGNORECASE)
    if m:
        w, a = (None if g.lower() == "-fp" else int(g) for g in m.groups())
        return QuantSetting.simulated(w, a)
    m = re.fullmatch(r"bnb-(int8|nf4|fp4)", name.strip(), re.IGNORECASE)
    if m:
        return QuantSetting.bnb(m.group(1).lower())
    raise InputError(f"quantize setting '{name}' is not WxAy (e.g. W8A8, W4A-fp) or bnb-int8/nf4/fp4")


def quantize_verdict(result) -> Verdict:
    parts = [f"{s.name} drift {s.relative_mse:.2%}" for s in result.settings]
    eight = [s for s in result.settings if (s.wbits or 16) >= 8 and (s.abits or 16) >= 8]
    judged = max(eight, key=lambda s: s.relative_mse) if eight else max(result.settings, key=lambda s: s.relative_mse)
    limits = (0.01, 0.05) if eight else (0.10, 0.30)
    status = "good" if judged.relative_mse < limits[0] else "fair" if judged.relative_mse < limits[1] else "poor"
    worst = max(result.settings, key=lambda s: s.relative_mse)
    return Verdict("quantize", status,
                   f"sample drift (MSE / sample variance): {', '.join(parts)}; {worst.name} probe loss {worst.probe_loss_change.value:+.3g} "
                   f"± {worst.probe_loss_change.stderr or 0:.2g}")


AREA_RUNNERS.update(exposure=run_exposure, quantize=run_quantize)


# ---------------------------------------------------------------------------- sharpness
# Per profile: the sharpness sweep. "default" is the measure's own defaults.
SHARPNESS_PROFILE = {
    "quick": dict(norms=("adaptive",), radii=(0.01, 0.1), worst_radii=(1e-4, 1e-3), draws=2, ascent_steps=1, top_k=1,
                  hessian_probes=16, landscape_probes=32, landscape_grid=0, buckets=2),
    "default": dict(),
    "full": dict(draws=16, hessian_probes=256, landscape_probes=512),
}


def run_sharpness(inputs: AuditInputs, results: dict, progress: Progress | None):
    from .sharpness import SharpnessConfig, measure_sharpness

    o = inputs.options
    n = len(inputs.bank)
    sizes = dict(SHARPNESS_PROFILE[o.profile])
    config = SharpnessConfig(**{**sizes, "lanczos_iters": max(o.sharpness_iters, sizes.get("top_k", 3)),
                                "hutchinson_draws": max(2, o.sharpness_hutchinson), "landscape_points": max(3, o.landscape_points),
                                "hessian_probes": min(sizes.get("hessian_probes", 32), n),
                                "landscape_probes": min(sizes.get("landscape_probes", 64), n),
                                "batch_size": o.batch_size, "seed": o.seed})
    result = measure_sharpness(inputs.denoiser, inputs.bank, config, _stage_ticker(progress, "sharpness"))
    return result, sharpness_verdict(result)


def sharpness_verdict(result) -> Verdict:
    parts = []
    if result.hessian is not None:
        eig = result.hessian.eigen
        parts.append(f"top Hessian eigenvalue {eig.eigenvalues[0]:.4g}{'' if eig.converged else ' (not converged)'}, "
                     f"trace {result.hessian.trace}")
    for case in result.average[:1]:
        p = case.points[-1]
        parts.append(f"loss {p.relative:+.1%} under {case.norm} noise r={p.radius:g}")
    for case in result.worst[:1]:
        p = case.points[-1]
        parts.append(f"worst case {p.relative:+.1%} at r={p.radius:g}")
    if result.landscape is not None:
        parts.append(f"landscape curvature {result.landscape.curvature:.4g}")
    # No absolute scale for flatness: the numbers are for comparing checkpoints and gating on a baseline.
    return Verdict("sharpness", "info", "; ".join(parts) or "no sharpness measure selected")


# ---------------------------------------------------------------------------- FD / FID
FID_BOOTSTRAP = {"quick": 50, "default": 200, "full": 200}


def run_fid(inputs: AuditInputs, results: dict, progress: Progress | None):
    from .errors import InputError
    from .fid.attach import FidSetup, attach_to_quantization, score

    o = inputs.options
    if o.data is None:
        return None, Verdict("fid", "skipped", "FD/FID needs reference images: pass --data (a folder, an .npz, or digits)")
    d = inputs.denoiser
    setup = FidSetup(o.data, o.fid_features or "inception", o.fid_weights, d.device, o.batch_size, o.seed)
    extra = dict(bootstrap=FID_BOOTSTRAP[o.profile], kid_subsets=20 if o.profile == "quick" else 100)
    q = results.get("quantize")
    try:
        if q is not None and q.samples_of("full-precision") is not None:
            # The quantize result holds the shared full-precision samples and every setting's:
            # one call scores them all, with paired changes (same seeds, same bootstrap draws).
            result = attach_to_quantization(setup, d, q, **extra)
        else:
            result = score(setup, d, inputs.fp_samples, **extra)
    except InputError as exc:  # e.g. Inception weights not available offline: the other areas still stand
        return None, Verdict("fid", "skipped", f"not scored: {exc}")
    exposure = results.get("exposure")
    if exposure is not None:  # its run (a) made exactly these samples: same score, not recomputed
        run = exposure.runs[0]
        run.fid, run.fid_label = result.value, result.label
        exposure.fid_warning = result.warning
    if progress:
        progress("fd/fid", 1, 1)
    return result, fid_verdict(result, q)


def fid_verdict(result, quantize) -> Verdict:
    line = f"{result.label} {result.value} vs {result.reference.spec} ({result.num_samples} samples)"
    if result.kid is not None:
        line += f", KID {result.kid}"
    if quantize is not None:
        changes = [f"{s.name} {s.fid_change.value:+.3g} ± {s.fid_change.stderr or 0:.2g}" for s in quantize.settings if s.fid_change is not None]
        if changes:
            line += "; under quantization " + ", ".join(changes)
    if result.warning:
        line += " (small N: compare only at equal N)"
    return Verdict("fid", "info", line)


AREA_RUNNERS.update(sharpness=run_sharpness, fid=run_fid)
