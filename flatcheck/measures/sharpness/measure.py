"""How flat is the denoiser's training loss around its weights, on a fixed probe bank.

Radius convention (one number for every measure, every norm, every model size): a perturbation
delta = s * u, with u in a ball ||u|| <= r sqrt(d) (d = number of parameters) and a per-weight
scale s:
    absolute  s_i = |theta| / sqrt(d)   -> ||delta|| <= r |theta|: an isotropic ball whose
                                           radius is r times the weight norm
    adaptive  s_i = |theta_i| + eta     -> each weight moves by about r of its own size
                                           (ASAM, Kwon et al. 2021: scale-invariant)
Both give E||delta|| ~ r |theta|, so r reads as "relative size of the perturbation".

Measures (each one optional, all on the same bank):
    average-case   E[L(theta + delta)] - L(theta), delta = s * u with u a Gaussian direction
                   scaled to the sphere of radius r sqrt(d) (a Gaussian of that norm, up to the
                   O(1/sqrt(d)) spread of its length); drawn in antithetic pairs +-delta (same
                   expectation, the first-order term cancels); standard error over the pairs
    worst-case     max over the ball of L(theta + delta) - L(theta), by m steps of projected
                   gradient ascent in u (step 2 r sqrt(d) / m along s * grad); m = 1 is SAM's
                   (absolute) or ASAM's (adaptive) one-step estimate. The best iterate counts.
                   Adaptive: the ball in u is an ellipsoid in delta (ASAM), so the worst delta
                   concentrates on large weights and can be longer than r |theta|.
                   The ascent direction finds loss increases at radii ~100x smaller than a
                   random one: the two have their own default sweeps.
    hessian        top-k eigenvalues with multiplicity (block Lanczos) and trace (Hutchinson) on a
                   spread sub-bank
    landscape      filter-normalised 1-D and 2-D loss landscapes (landscape.py)
    breakdowns     per timestep bucket (free: losses are kept per probe) and per top-level
                   block (down / mid / up ...: the average case with only that block
                   perturbed, and the Hessian trace of its diagonal block)
Every perturbation writes theta0 + delta into the measured parameters and is undone from theta0,
the one saved copy, in a `finally`: the weights are back bit for bit after a normal return, an
exception or Ctrl-C (parameters outside --params and buffers are never written).

Memory (core/params.py): weights + theta0 + at most 3 more parameter-sized vectors in the average
and worst cases (a direction; u, the gradient at theta and a work vector), + the Hessian's
(hessian.py), + one batch's graph; the counts are checked by tests/test_memory_bounds.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ...core import lora
from ...core.checkpointing import checkpointed
from ...core.denoiser import Denoiser
from ...core.params import Blocks, ParamSpace, measured_parameters
from ...core.probes import ProbeBank, bank_losses
from ...core.seeds import generator
from ...core.stats import Estimate, mean_estimate
from ...errors import InputError, OptionError
from .blocks import bucket_edges, bucket_index, parameter_groups, spread_indices
from .config import MEASURES, NORMS, SharpnessConfig  # noqa: F401 - re-exported
from .hessian import BankLoss, Eigenpairs, TraceEstimate, block_lanczos, hutchinson
from .landscape import Landscape, loss_landscape
from .reference import SharpnessReference

Progress = Callable[[str, int, int], None] | None


@dataclass
class AveragePoint:
    radius: float
    delta_norm: float  # ||delta||, mean over draws
    increase: Estimate  # E[L(theta + delta)] - L(theta); stderr over draws
    relative: float  # increase / L(theta)
    by_bucket: list[Estimate | None]  # same, on the probes of each timestep bucket
    per_draw: list[float] = field(default_factory=list)  # the increase of each +-delta pair (same seed: same
    # directions for every checkpoint of one architecture, so two checkpoints compare draw by draw)


@dataclass
class AverageCase:
    norm: str
    draws: int
    points: list[AveragePoint]


@dataclass
class WorstPoint:
    radius: float
    delta_norm: float  # ||delta|| of the worst point found
    increase: float  # max L(theta + delta) - L(theta) over the ascent iterates
    relative: float
    ascent: list[float]  # increase after each step
    by_bucket: list[float | None]  # increase per bucket at the worst point


@dataclass
class WorstCase:
    norm: str
    steps: int
    points: list[WorstPoint]


@dataclass
class BlockSharpness:
    block: str
    parameters: int
    average: dict[str, Estimate]  # norm (the first one asked for) -> average-case increase, only this block perturbed
    hessian_trace: Estimate | None  # trace of the block's diagonal Hessian block
    trace_per_parameter: float | None


@dataclass
class HessianSummary:
    probes: int
    eigen: Eigenpairs
    trace: Estimate
    trace_per_parameter: float
    trace_by_bucket: list[Estimate | None]
    hvps: int


@dataclass
class SharpnessResult:
    source: str  # where the bank's x0 came from
    probes: int
    seed: int
    t_range: tuple[int | float, int | float]
    buckets: list[tuple[int, int]]
    parameters: int  # the number measured (all, or those --params selects)
    weight_norm: float
    loss: Estimate  # L(theta): mean per-probe loss, stderr over probes
    loss_by_bucket: list[Estimate | None]
    average: list[AverageCase] = field(default_factory=list)
    worst: list[WorstCase] = field(default_factory=list)
    blocks: list[BlockSharpness] = field(default_factory=list)
    block_radius: float | None = None
    hessian: HessianSummary | None = None
    landscape: Landscape | None = None
    config: SharpnessConfig | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per measure
    # The headline numbers' percentiles among known checkpoints (reference.py); None: not compared (reference =
    # "none", or a result made outside the audit)
    reference: SharpnessReference | None = None
    parameter_selection: str = "all"  # --params globs, or "all"


class _Context:
    """What every measure shares: parameters, theta, baseline losses, scales, buckets.

    Parameter-sized vectors held for the whole run: theta0 (the saved weights, which also restore
    them) and, once the worst case asked for it, the gradient at theta (shared by every radius).
    Scales are never stored: absolute is one number, adaptive |theta0| + eta slice by slice.
    """

    def __init__(self, denoiser: Denoiser, bank: ProbeBank, config: SharpnessConfig, progress: Progress, named):
        self.denoiser, self.bank, self.config, self.progress = denoiser, bank, config, progress
        self.params = [p for _, p in named]
        self.groups = parameter_groups(named, denoiser.family.blocks)
        self.space = ParamSpace(self.params)
        self.vdtype = self.space.dtype
        self.theta0 = self.space.read()
        self.dim = self.space.dim
        self.weight_norm = self.space.norm(self.theta0)
        self.absolute = torch.tensor(
            self.weight_norm / math.sqrt(self.dim), dtype=self.vdtype, device=self.space.device
        )
        self.edges = bucket_edges(bank.t_range, config.buckets)
        self.bucket = bucket_index(bank.t, self.edges)
        self.base = bank_losses(denoiser, bank, config.batch_size).double()  # [N] at theta
        self.base_mean = float(self.base.mean())
        self.blocks = Blocks(self.space, self.groups)
        self._grad0: torch.Tensor | None = None

    def scale(self, norm: str, sl: slice) -> torch.Tensor:
        """The per-weight scale s on a slice: |theta| / sqrt(d) (absolute) or |theta_i| + eta (adaptive)."""
        return self.absolute if norm == "absolute" else self.theta0[sl].abs() + self.config.eta

    def restore(self) -> None:
        """The weights back to theta, bit for bit (theta0 is an exact copy, float32 holds half precision exactly)."""
        self.space.write(self.theta0)

    def gradient_at_theta(self) -> torch.Tensor:
        if self._grad0 is None:
            self.restore()
            _, self._grad0 = BankLoss(self.denoiser, self.bank, self.params, self.config.batch_size).value_and_grad()
        return self._grad0

    def release_gradient(self) -> None:
        self._grad0 = None

    def losses_at(self, point) -> torch.Tensor:
        """Per-probe losses with the weights at point(slice) (theta0 + delta, written slice by slice)."""
        self.space.write(point)
        return bank_losses(self.denoiser, self.bank, self.config.batch_size).double()

    def by_bucket(self, per_probe: torch.Tensor) -> list[float | None]:
        """Mean of per-probe values [..., N] within each bucket -> list over buckets (None if empty)."""
        out = []
        for b in range(len(self.edges)):
            m = self.bucket == b
            out.append(per_probe[..., m].mean(-1) if m.any() else None)
        return out

    def direction(
        self, gen: torch.Generator, norm: str, radius: float, block: str | None, out: torch.Tensor
    ) -> torch.Tensor:
        """out <- delta = s * u, u a Gaussian direction on the sphere of radius r sqrt(d_S) (S: the perturbed
        set, one block or all). Two passes over the same draws (the generator is rewound): the norm of z,
        then delta chunk by chunk; the generator ends where one whole draw leaves it."""
        keep = self.blocks.restrict(block) if block is not None else None
        d_s = self.dim if block is None else self.blocks.sizes[block]
        state = gen.get_state()
        znorm = self.space.gaussian(gen, out, None, keep, norm_only=True)
        gen.set_state(state)
        c = radius * math.sqrt(d_s) / znorm
        self.space.gaussian(gen, out, lambda sl, z: (self.scale(norm, sl).double() * (z * c)).to(self.vdtype), keep)
        return out

    def tick(self, stage: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(stage, done, total)


def _average_case(
    ctx: _Context,
    norm: str,
    radii,
    draws: int,
    gen: torch.Generator,
    block: str | None = None,
    stage: str | None = "average",
) -> list[tuple[torch.Tensor, list[float]]]:
    """Per radius: per-probe loss increases [draws, N] and ||delta|| per draw (one draw = a +-delta
    pair, two evaluations). The same directions serve every radius (common random numbers: the
    curve over radii is smooth and comparable). One direction is alive at a time: each is drawn
    once and evaluated at every radius."""
    rows: list[list[torch.Tensor]] = [[] for _ in radii]
    norms: list[list[float]] = [[] for _ in radii]
    u = ctx.space.empty()
    done, total = 0, len(radii) * draws
    theta0 = ctx.theta0
    for _ in range(draws):
        ctx.direction(gen, norm, 1.0, block, u)
        for i, r in enumerate(radii):
            # Antithetic pair: delta and -delta are equally likely, and their mean cancels the
            # first-order term g.delta exactly, which otherwise drowns the curvature at small r.
            plus = ctx.losses_at(lambda sl: theta0[sl] + r * u[sl])
            minus = ctx.losses_at(lambda sl: theta0[sl] + -(r * u[sl]))
            rows[i].append(0.5 * (plus + minus) - ctx.base)
            norms[i].append(ctx.space.norm(lambda sl: r * u[sl]))
            done += 1
            if stage:
                ctx.tick(stage, done, total)
    return [(torch.stack(r), n) for r, n in zip(rows, norms)]


def _worst_case(ctx: _Context, norm: str, radius: float, steps: int, done0: int, total: int) -> WorstPoint:
    """Projected gradient ascent in u over ||u|| <= r sqrt(d); the best iterate is the estimate.

    Vectors: u and one work vector (the gradient, then the ascent direction s * grad in place),
    besides the context's theta0 and gradient at theta."""
    bound = radius * math.sqrt(ctx.dim)
    step = 2 * bound / steps
    op = BankLoss(ctx.denoiser, ctx.bank, ctx.params, ctx.config.batch_size)
    theta0 = ctx.theta0
    s = lambda sl: ctx.scale(norm, sl)  # noqa: E731
    u = ctx.space.zeros()
    work = ctx.space.empty()
    best, best_per, best_norm, ascent = 0.0, ctx.base * 0, 0.0, []
    for k in range(steps):
        if k == 0:
            grad = ctx.gradient_at_theta()  # the same first step for every radius: computed once
        else:
            ctx.space.write(lambda sl: theta0[sl] + s(sl) * u[sl])
            per, grad = op.value_and_grad(out=work)
        if k > 0:  # u_0 = 0 is theta itself
            inc = float(per.mean()) - ctx.base_mean
            ascent.append(inc)
            if inc > best:
                best, best_per, best_norm = inc, per - ctx.base, ctx.space.norm(lambda sl: s(sl) * u[sl])
        for sl in ctx.space.slices:  # the ascent direction s * grad, into the work vector
            torch.mul(s(sl), grad[sl], out=work[sl])
        gnorm = ctx.space.norm(work)
        if gnorm == 0.0:
            break
        for sl in ctx.space.slices:
            u[sl].add_((step / gnorm) * work[sl])
        un = ctx.space.norm(u)
        if un > bound:
            u.mul_(bound / un)
        ctx.tick("worst", done0 + k + 1, total)
    per = ctx.losses_at(lambda sl: theta0[sl] + s(sl) * u[sl]) - ctx.base
    inc = float(per.mean())
    ascent.append(inc)
    if inc > best:
        best, best_per, best_norm = inc, per, ctx.space.norm(lambda sl: s(sl) * u[sl])
    return WorstPoint(
        radius,
        best_norm,
        best,
        best / ctx.base_mean,
        ascent,
        [None if v is None else float(v) for v in ctx.by_bucket(best_per)],
    )


def _estimates_by_bucket(ctx: _Context, rows: torch.Tensor) -> list[Estimate | None]:
    """rows [draws, N] -> per bucket, mean over the bucket's probes, Estimate over draws."""
    return [None if v is None else mean_estimate(v.numpy()) for v in ctx.by_bucket(rows)]


def measure_sharpness(
    denoiser: Denoiser, bank: ProbeBank, config: SharpnessConfig | None = None, progress: Progress = None
) -> SharpnessResult:
    """Every selected measure on one bank; the network's weights are unchanged afterwards.

    progress(stage, done, total) is called as work completes (stages: average, worst, blocks,
    hessian, hutchinson, landscape); an exception it raises (e.g. KeyboardInterrupt) stops the
    run with the weights restored.
    """
    config = (config or SharpnessConfig()).validate()
    if len(bank) < 1:
        raise InputError("the probe bank is empty")
    if config.params == lora.PARAMS_KEYWORD:  # the adapter's own parameters: its layers unfused, the base frozen
        handle = lora.attached(denoiser.net)
        if handle is None:
            raise OptionError("params", "'lora' measures a LoRA adapter's parameters: none is loaded (give --lora)")
        with handle.unfused():
            return _measure_selected(denoiser, bank, config, progress)
    return _measure_selected(denoiser, bank, config, progress)


def _measure_selected(denoiser: Denoiser, bank: ProbeBank, config: SharpnessConfig, progress) -> SharpnessResult:
    named = measured_parameters(denoiser.net, config.params)
    if not named:
        if config.params is not None:
            raise OptionError(
                "params",
                f"'{config.params}' matches no parameter of {type(denoiser.net).__name__} "
                f"(names look like '{next(iter(dict(denoiser.net.named_parameters())), '?')}')",
            )
        raise InputError("the denoiser has no floating-point parameters to perturb")
    timings: dict[str, float] = {}
    with checkpointed(denoiser.net, config.gradient_checkpointing), torch.no_grad():
        ctx = _Context(denoiser, bank, config, progress, named)
        try:
            result = _measure(ctx, timings)
        finally:
            ctx.restore()  # the weights as they were, bit for bit: after a return, an exception or Ctrl-C
    result.timings = timings
    return result


def _hessian(ctx: _Context) -> tuple[HessianSummary, dict[str, Estimate]]:
    cfg = ctx.config
    sub = ctx.bank.subset(spread_indices(len(ctx.bank), cfg.hessian_probes))
    groups = bucket_index(sub.t, ctx.edges)
    op = BankLoss(ctx.denoiser, sub, ctx.params, cfg.batch_size, groups, n_groups=len(ctx.edges))
    eig = block_lanczos(
        op.hvp,
        op.dim,
        cfg.top_k,
        cfg.lanczos_iters,
        cfg.tol,
        generator(cfg.seed, "lanczos"),
        ctx.theta0.device,
        ctx.vdtype,
        ctx.progress,
        max_vectors=cfg.lanczos_basis * cfg.top_k,
    )
    op.release()  # Hutchinson differentiates bucket by bucket: the whole-bank graph is not needed again
    tr: TraceEstimate = hutchinson(
        op, cfg.hutchinson_draws, generator(cfg.seed, "hutchinson"), ctx.blocks, ctx.vdtype, ctx.progress
    )
    summary = HessianSummary(len(sub), eig, tr.trace, tr.trace.value / op.dim, tr.by_group, eig.hvps + tr.hvps)
    return summary, tr.by_block


def _measure(ctx: _Context, timings: dict[str, float]) -> SharpnessResult:
    """Every selected measure, in order, on the context's bank; the weights may be left moved (the caller restores
    them)."""
    config, bank, denoiser, progress = ctx.config, ctx.bank, ctx.denoiser, ctx.progress
    result = SharpnessResult(
        source=bank.source,
        probes=len(bank),
        seed=config.seed,
        t_range=tuple(bank.t_range),
        buckets=ctx.edges,
        parameters=ctx.dim,
        weight_norm=ctx.weight_norm,
        parameter_selection=config.params or "all",
        loss=mean_estimate(ctx.base.numpy()),
        loss_by_bucket=[
            None if v is None else mean_estimate(ctx.base[ctx.bucket == b].numpy())
            for b, v in enumerate(ctx.by_bucket(ctx.base))
        ],
        config=config,
    )
    block_avg: dict[str, dict[str, Estimate]] = {g.name: {} for g in ctx.groups}
    block_trace: dict[str, Estimate] = {}
    if "avg" in config.measures:
        t0 = time.perf_counter()
        for norm in config.norms:
            rows = _average_case(ctx, norm, config.radii, config.draws, generator(config.seed, f"avg-{norm}"))
            points = []
            for r, (inc, norms) in zip(config.radii, rows):
                per_draw = inc.mean(1)
                est = mean_estimate(per_draw.numpy())
                points.append(
                    AveragePoint(
                        r,
                        sum(norms) / len(norms),
                        est,
                        est.value / ctx.base_mean,
                        _estimates_by_bucket(ctx, inc),
                        per_draw.tolist(),
                    )
                )
            result.average.append(AverageCase(norm, config.draws, points))
        # Per block: the same radius per weight, only that block moved (quadratic regime: additive).
        # One norm (the first asked for) is enough to say which block is sharp.
        done, total = 0, len(ctx.groups) * config.draws
        for norm in config.norms[:1] if config.block_average else ():
            for g in ctx.groups:
                gen = generator(config.seed, f"block-{norm}-{g.name}")
                inc, _ = _average_case(ctx, norm, [config.block_radius], config.draws, gen, g.name, stage=None)[0]
                block_avg[g.name][norm] = mean_estimate(inc.mean(1).numpy())
                done += config.draws
                ctx.tick("blocks", done, total)
        result.block_radius = config.block_radius if config.block_average else None
        timings["avg"] = time.perf_counter() - t0
    if "worst" in config.measures:
        t0 = time.perf_counter()
        total = len(config.norms) * len(config.worst_radii) * config.ascent_steps
        done = 0
        for norm in config.norms:
            pts = []
            for r in config.worst_radii:
                pts.append(_worst_case(ctx, norm, r, config.ascent_steps, done, total))
                done += config.ascent_steps
            result.worst.append(WorstCase(norm, config.ascent_steps, pts))
        ctx.release_gradient()
        timings["worst"] = time.perf_counter() - t0
    if "hessian" in config.measures:
        t0 = time.perf_counter()
        ctx.restore()  # back at theta (bit for bit: theta0 is a copy)
        result.hessian, block_trace = _hessian(ctx)
        timings["hessian"] = time.perf_counter() - t0
    if "landscape" in config.measures:
        t0 = time.perf_counter()
        ctx.restore()
        sub = bank.subset(spread_indices(len(bank), config.landscape_probes))
        result.landscape = loss_landscape(
            denoiser,
            sub,
            ctx.params,
            generator(config.seed, "landscape"),
            config.landscape_span,
            config.landscape_points,
            config.landscape_grid,
            config.batch_size,
            progress,
            theta0=ctx.theta0,
        )
        timings["landscape"] = time.perf_counter() - t0
    result.blocks = (
        [
            BlockSharpness(
                g.name,
                g.numel,
                block_avg[g.name],
                block_trace.get(g.name),
                block_trace[g.name].value / g.numel if g.name in block_trace else None,
            )
            for g in ctx.groups
        ]
        if (block_trace or ("avg" in config.measures and config.block_average))
        else []
    )
    return result
