"""What a run computes, counted before it runs: the contract between the measures and the plan.

Each measure package says, from its config, the run's shape and the network (on the meta device:
its modules and parameter names), what its phases compute: images
through the denoiser (without gradients, with one, or inside a Hessian-vector product), images
decoded and scored, and the parameter-sized vectors each phase holds. The plan (flatcheck.plan)
turns that into memory, from meta-device traces of one call (flatcheck.footprint), and into time, from
one timed call on the real device. Counts are exact except where a loop stops early (Lanczos):
then they are the most it can do, and `upper_bound` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class RunShape:
    """What the cost of a run depends on besides each measure's own config."""

    probes: int  # probe bank size
    samples: int  # shared full-precision samples
    steps: int
    batch_size: int
    guided: bool  # sampling steps are classifier-free guided (two network passes per image)
    samples_made: bool  # the shared samples come from a folder (not generated)
    fd: bool  # FD/FID is scored (a reference and a feature network)
    reference_images: int  # images of the FD reference still to extract (0: statistics given or cached)
    evals: Callable[[int], int] = lambda steps: steps  # network evaluations of a sampling run of that many steps
    # (its scheduler's timesteps: Heun-type samplers evaluate twice per step)


@dataclass
class Work:
    """One phase of a run."""

    phase: str
    forwards: int = 0  # images through the denoiser without gradients (a guided step counts each pass)
    gradients: int = 0  # images through forward + backward
    hvps: int = 0  # images through a Hessian-vector product (each HVP over n probes counts n)
    hvps_kept: int = 0  # of those, the ones that reuse a kept gradient graph (the second backward only)
    decodes: int = 0  # images through the autoencoder's decoder
    features: int = 0  # images through the FD feature network
    batch: int = 1  # images per denoiser call: the graph that is alive
    guided: bool = False  # the forwards are guided sampling steps (2 x batch per call)
    graph: str = "forward"  # the largest call of the phase: forward, gradient or hvp
    vectors: int = 0  # parameter-sized vectors of the measured parameters held, besides the weights and the call's own
    upper_bound: bool = False  # a loop may stop early: the counts are its most
    note: str = ""

    @property
    def calls(self) -> int:
        return self.forwards + self.gradients + self.hvps
