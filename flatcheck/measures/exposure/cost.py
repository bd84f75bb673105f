"""What `measure_exposure` computes for a config (core.work), read off measure.py."""

from __future__ import annotations

from ...core.work import RunShape, Work
from .config import ExposureConfig


def work(config: ExposureConfig, run: RunShape, net=None) -> list[Work]:
    """Per step count: run (a) from noise (the shared samples when they are that run), the forward
    reference at each new timestep, run (b) from the noised reference, and one rerun per checked scaling.
    The reference is the probe bank's x0 (data) or drawn from the samples (data-free): run.probes points."""
    out = []
    n, m, bs = config.samples, run.probes, config.batch_size
    reruns = (2 if config.linear_scale else 1) if config.check_scaling else 0
    for i, steps in enumerate(config.steps):
        k = run.evals(steps)
        shared = steps == run.steps and n == run.samples and not run.samples_made
        runs = (0 if shared else 1) + reruns
        # the forward reference is computed at timesteps not seen by an earlier step count: at most all k
        out.append(
            Work(
                f"exposure: {steps} steps",
                forwards=(runs * n + 2 * m) * k,
                batch=min(bs, max(n, m)),
                guided=run.guided,
                upper_bound=i > 0,
                note=f"{runs} sampler run(s) of {n} (besides the shared samples), one of {m} from the reference, "
                f"{m} reference points at {k} timesteps",
            )
        )
    return out
