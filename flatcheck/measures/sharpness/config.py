"""The sharpness config: the only place its defaults live (torch-free, so the CLI's --help stays fast)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...errors import OptionError, at_least, check_bounds

MEASURES = ("avg", "worst", "hessian", "landscape")
NORMS = ("adaptive", "absolute")
# Measured on the bundled digits models (examples/evidence/sharpness.md): a random direction
# moves the loss by ~1e-4 at r = 0.003 and by tens of percent at r = 0.1; the ascent direction
# moves it by ~1% at r = 3e-5 and by ~5x at r = 1e-3. The two sweeps overlap at 0.003 and
# together span four decades.
DEFAULT_RADII = (0.003, 0.01, 0.03, 0.1, 0.3)
DEFAULT_WORST_RADII = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
DEFAULT_BLOCK_RADIUS = 0.1


@dataclass
class SharpnessConfig:
    measures: tuple[str, ...] = MEASURES
    norms: tuple[str, ...] = NORMS
    radii: tuple[float, ...] = DEFAULT_RADII  # average case
    worst_radii: tuple[float, ...] = DEFAULT_WORST_RADII
    draws: int = field(
        default=4, metadata=at_least(1)
    )  # antithetic pairs +-delta per radius (average case): 2 evaluations each
    ascent_steps: int = field(default=3, metadata=at_least(1))  # projected gradient ascent steps (worst case); 1 = SAM
    buckets: int = field(default=4, metadata=at_least(1))  # timestep buckets for the breakdowns
    block_radius: float = DEFAULT_BLOCK_RADIUS  # radius of the per-block average case
    block_average: bool = True  # the per-block average case (2 x draws bank evaluations per block); the
    # Hessian trace is broken down by block either way
    hessian_probes: int = field(default=32, metadata=at_least(1))  # sub-bank for the HVPs
    top_k: int = field(
        default=3, metadata=at_least(1)
    )  # counted with multiplicity: block Lanczos with blocks of top_k vectors
    # At most this many HVPs for the eigenvalues (whole blocks of top_k). Lanczos stops at tol, so the cap costs
    # only a run that reaches it. At the default basis the digits models' top 3 reach tol in 21-27 (base, ema)
    # and 30-39 (sam: its 2nd and 3rd eigenvalues sit close to the bulk) HVPs over seeds 0-4, --data digits and
    # none (examples/evidence/sharpness.md, Convergence): the old cap of 36 left sam NOT converged at seed 2
    # and exactly at the cap at seeds 3, 4 and data-free, so other rounding (another CPU's kernels) could tip
    # the default run over it (issue 27). 60 is 1.5x the most seen; tol and the basis were not the cause.
    lanczos_iters: int = field(default=60, metadata=at_least(1))
    # Krylov blocks kept (thick restart beyond): memory is lanczos_basis x top_k + 2 parameter-sized vectors,
    # whatever lanczos_iters is. 8 blocks cost the digits models +0, +0 and +3 HVPs against no cap; 4 blocks
    # +6, +9 and +69 (benchmarks/bench_lanczos_restart.py).
    lanczos_basis: int = field(default=8, metadata=at_least(3))
    tol: float = 1e-3  # joint error bound <= tol x the smallest |eigenvalue| of the top k
    hutchinson_draws: int = field(default=16, metadata=at_least(2))
    landscape_probes: int = field(default=64, metadata=at_least(1))
    landscape_span: float = 1.0
    landscape_points: int = field(default=21, metadata=at_least(3))
    landscape_grid: int = field(default=9, metadata=at_least(0))
    eta: float = field(default=1e-3, metadata=at_least(0))  # adaptive scale floor, so that zero weights still move
    batch_size: int = field(default=64, metadata=at_least(1))
    seed: int = 0
    params: str | None = None  # comma-separated globs of parameter names to measure; None: every parameter
    gradient_checkpointing: bool = False  # recompute activations in backward passes (HVPs of large models fit)
    # The reference table the headline numbers get percentiles from (reference.py): None = the shipped one
    # (flatcheck/assets/sharpness_reference.json), "none" = no comparison, else a path to a table of the same
    # format (examples/zoo/sharpness_reference.py makes one from a team's own reports).
    reference: str | None = None

    def validate(self) -> "SharpnessConfig":
        bad = [m for m in self.measures if m not in MEASURES]
        if bad or not self.measures:
            raise OptionError(
                "measures", f"'{','.join(bad) or '(none)'}' is not a measure (choose from {', '.join(MEASURES)})"
            )
        badn = [n for n in self.norms if n not in NORMS]
        if badn or not self.norms:
            raise OptionError("norms", f"'{','.join(badn) or '(none)'}' is not a norm (choose from {', '.join(NORMS)})")
        for opt, radii in (("radii", self.radii), ("worst_radii", self.worst_radii)):
            if not radii or any(not (math.isfinite(r) and r > 0) for r in radii):
                raise OptionError(opt, f"must be positive finite numbers (got {', '.join(map(str, radii)) or 'none'})")
        if not (math.isfinite(self.block_radius) and self.block_radius > 0):
            raise OptionError("block_radius", f"must be positive (got {self.block_radius})")
        check_bounds(self)
        if self.top_k > self.lanczos_iters:
            raise OptionError(
                "top_k",
                f"({self.top_k}) needs one block of {self.top_k} HVPs, more than lanczos_iters ({self.lanczos_iters})",
            )
        if not (0 < self.tol < 1):
            raise OptionError("tol", f"must be in (0, 1) (got {self.tol})")
        if not (math.isfinite(self.landscape_span) and self.landscape_span > 0):
            raise OptionError("landscape_span", f"must be positive (got {self.landscape_span})")
        if self.reference is not None and self.reference.lower() != "none":
            from .reference import load_table

            load_table(self.reference)  # a bad table is an input error before the run, not after it
        return self
