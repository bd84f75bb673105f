"""Sharpness: how flat the denoiser's training loss is around its weights (see measure.py)."""

from __future__ import annotations

from ..base import Measure, Readings, Verdict, lazy
from .config import SharpnessConfig

# Audit profiles (config overrides). "default" is the config's own defaults.
PROFILES = {
    # quick: per block only the Hessian trace (Hutchinson's draws give it at no extra cost), not the per-block
    # average case (2 x draws bank evaluations per block: 20 of the profile's 36 batch-64 forwards on digits)
    "quick": dict(
        norms=("adaptive",),
        radii=(0.01, 0.1),
        worst_radii=(1e-4, 1e-3),
        draws=2,
        ascent_steps=1,
        top_k=1,
        hessian_probes=16,
        landscape_probes=32,
        landscape_grid=0,
        buckets=2,
        block_average=False,
        lanczos_iters=16,  # digits-sam's top eigenvalue needs 11 Lanczos steps to converge
        hutchinson_draws=4,
        landscape_points=11,
    ),
    "default": {},
    "full": dict(
        draws=16, hessian_probes=256, landscape_probes=512, lanczos_iters=90, hutchinson_draws=64, landscape_points=41
    ),
}

STAGES = {
    "average": "average case",
    "blocks": "per-block average case",
    "worst": "worst case (gradient ascent)",
    "hessian": "Hessian eigenvalues (block Lanczos)",
    "hutchinson": "Hessian trace (Hutchinson)",
    "landscape": "loss landscape",
}


def run(inputs, config: SharpnessConfig, progress=None):
    from .measure import measure_sharpness

    def stage(name: str, done: int, total) -> None:
        if progress:
            progress(f"sharpness: {STAGES.get(name, name)}", done, total)

    result = measure_sharpness(inputs.denoiser, inputs.bank, config, stage)
    if (config.reference or "").lower() != "none":
        from ...results import to_jsonable
        from .reference import compare, context_of_denoiser, load_table

        # compared as JSON data: the same code reads the reports the table was made from
        result.reference = compare(
            to_jsonable(result), context_of_denoiser(inputs.denoiser), *load_table(config.reference)
        )
    return result


def verdict(result) -> Verdict:
    parts = []
    if result.hessian is not None:
        eig = result.hessian.eigen
        parts.append(
            f"top Hessian eigenvalue {eig.eigenvalues[0]:.4g}{'' if eig.converged else ' (not converged)'}, "
            f"trace {result.hessian.trace}"
        )
    for case in result.average[:1]:
        p = case.points[-1]
        parts.append(f"loss {p.relative:+.1%} under {case.norm} noise r={p.radius:g}")
    for case in result.worst[:1]:
        p = case.points[-1]
        parts.append(f"worst case {p.relative:+.1%} at r={p.radius:g}")
    if result.landscape is not None:
        parts.append(f"landscape curvature {result.landscape.curvature:.4g}")
    # No absolute scale for flatness: percentiles among known checkpoints (reference.py) where a reference set
    # matches, else the numbers are for comparing checkpoints and gating on a baseline.
    reference = getattr(result, "reference", None)  # None also for results made before report 1.6
    if reference is not None and parts:
        from .reference import summary

        parts.append(summary(reference))
    return Verdict("sharpness", "info", "; ".join(parts) or "no sharpness measure selected")


MEASURE = Measure(
    name="sharpness",
    title="loss-surface sharpness under weight perturbation",
    config=SharpnessConfig,
    run=run,
    verdict=verdict,
    view=lazy(f"{__name__}.view", "view"),
    plot=lazy(f"{__name__}.view", "plot"),
    save=lazy(f"{__name__}.view", "save"),
    profiles=PROFILES,
    order=30,
    cost=lazy(f"{__name__}.cost", "work"),
    readings=Readings("measures", "sharpness measures", lazy(f"{__name__}.readings", "readings")),
    paths=lazy(f"{__name__}.paths", "produces"),
)
