"""FD/FID and KID of the shared full-precision samples against the run's reference (torch-fidelity).

The scoring itself (features, Frechet distance, bootstrap, reference statistics) is the engine's
(core/fd): the quantize and exposure measures score their own samples with the same scorer.
"""

from __future__ import annotations

from ..base import Measure, Skipped, Verdict, lazy
from .config import FidConfig

NO_REFERENCE = "FD/FID needs reference images: pass --data (a folder, an .npz, or digits)"


def run(inputs, config: FidConfig, progress=None):
    if inputs.scorer is None:
        raise Skipped(inputs.fd_problem or NO_REFERENCE)
    samples = inputs.samples.get()
    if progress:
        progress("FD/FID", 0, 1)
    result = inputs.scorer.score(samples)
    if progress:
        progress("FD/FID", 1, 1)
    return result


def verdict(result) -> Verdict:
    """No absolute scale ('info'): FD depends on N and on the feature network; compare at equal N."""
    from .view import fd_text

    line = (
        f"{fd_text(result)} ({result.ci_level:.0%} {result.ci_method}) "
        f"vs {result.reference.spec} ({result.num_samples} samples)"
    )
    if result.kid is not None:
        line += f", KID {result.kid} (± s.e. over {result.kid_subsets} subsets)"
    if result.warning:
        line += " (small N: compare only at equal N)"
    return Verdict("fid", "info", line)


MEASURE = Measure(
    name="fid",
    title="FD/FID and KID of the samples",
    config=FidConfig,
    run=run,
    verdict=verdict,
    view=lazy(f"{__name__}.view", "view"),
    plot=lazy(f"{__name__}.plot", "plot"),
    uses_bank=False,
    order=40,
    cost=lazy(f"{__name__}.cost", "work"),
)

__all__ = ["MEASURE", "FidConfig"]
