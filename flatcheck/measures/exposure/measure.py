"""Exposure bias: how far the sampler's own inputs drift from the forward process it was trained on.

After Ning et al., "Elucidating the Exposure Bias in Diffusion Models" (ADM-ES). For each
sampling step count T' (sampling timesteps t_0 > t_1 > ... > t_{T'-1}):

a. epsilon norms: the mean ||eps_theta(x_hat_t, t)|| over the sampler's own inputs x_hat_t
   (run from noise), and ||eps_theta(x_t, t)|| on reference data noised by the forward
   process to the same t; sqrt(d) is the norm of the true noise. gap_t = sampled - forward
   (> 0 is the exposure bias the paper reports).
b. variance error: the sampler run again, started from reference data noised to t_0;
   delta_t = E||x_hat_t - sqrt(abar_t) mean(x0)||^2 / d minus the same for the forward process's
   x_t (paired: same data point and noise), exactly 0 at t_0 (see _Spread). Measured about the
   forward mean, not about each point's own x0: the sampler forgets its starting point (an
   exact denoiser ends at a fresh sample), so a per-point spread would not vanish for it.
c. epsilon scaling: lambda_t fitted by least squares so that ||eps_theta(x_hat_t)|| / lambda_t
   matches ||eps_theta(x_t)|| (a constant b, and b + k t), then the sampler rerun stepping with
   eps / lambda_t from the same initial noise and the gap measured again. Beside it,
   eps_scale_forward: the scale that best maps the network's eps onto the true noise on
   forward-noised data, E||eps_theta||^2 / E<eps_theta, eps>; 1 for a calibrated denoiser
   (exactly, in expectation, for the optimal one), c for one whose eps is c times too big.
d. x0 drift: RMS distance per dimension between the x0 predicted at each step and the final sample.

Everything is accumulated step by step (sampling.StepReducer): no trajectory is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ...core.denoiser import Denoiser
from ...core.sampling import (
    StepRecord,
    StepReducer,
    check_run,
    generators,
    initial_noise,
    make_sampler,
    sample,
    scale_model_input,
    set_timesteps,
    timesteps_for,
)
from ...core.seeds import exposure_variance_seed
from ...core.stats import Estimate, mean_estimate, per_item
from ...errors import InputError
from .config import ExposureConfig


@dataclass
class Curve:
    """A per-step mean over samples and its standard error, one entry per sampling step."""

    mean: list[float]
    stderr: list[float]


@dataclass
class EpsilonScaling:
    form: str  # "constant" or "linear"
    b: float
    k: float  # lambda_t = b + k * t (k = 0 for the constant form)
    lambdas: list[float]  # lambda at each sampling step
    # The check: the sampler rerun with eps / lambda_t (None when the config skips it: --quick)
    eps_norm_raw: Curve | None = None  # the network's ||eps|| on the rescaled sampler's inputs
    eps_norm_applied: Curve | None = None  # ||eps / lambda_t||: what the sampler stepped with
    gap: Curve | None = None  # applied - forward
    gap_total: Estimate | None = None  # sum over steps
    gap_abs_total: float | None = None  # sum over steps of |gap_t|
    gap_change: Estimate | None = None  # gap_total after - before, paired by initial noise
    helps: bool | None = None  # gap_abs_total went down

    @property
    def checked(self) -> bool:
        return self.gap_total is not None


@dataclass
class ExposureRun:
    steps: int
    sampler: str
    timesteps: list[int]
    samples: int
    reference: int
    sqrt_d: float
    eps_norm_sampled: Curve
    eps_norm_forward: Curve
    gap: Curve
    gap_total: Estimate  # sum over steps of gap_t
    gap_relative: float  # gap_total / sum over steps of the forward norm
    gap_abs_total: float
    variance_forward: Curve  # per-dimension second moment of x_t about the forward mean
    variance_sampled: Curve  # the same for the sampler's x_hat_t, run from data noised to t_0
    variance_error: Curve  # delta_t = sampled - forward, paired per reference point
    variance_error_mean: Estimate  # mean over steps of delta_t
    x0_drift: Curve  # RMS per dimension of x0_pred(t) - final sample
    eps_scale_forward: Estimate
    scaling: list[EpsilonScaling]
    samples_dir: str | None = None  # where the generated samples were stored, if they were
    fid: Estimate | None = None  # FD/FID of run (a)'s samples, when a reference is known
    fid_label: str | None = None
    # Per-sample values behind gap_total (when paired with the reference) and variance_error_mean, for a gate
    # rule's paired difference against a baseline drawn with the same seeds (core.stats.per_item).
    gap_total_per_sample: list[float] | None = None
    variance_error_mean_per_sample: list[float] | None = None
    _samples: torch.Tensor | None = field(default=None, repr=False)  # run (a)'s samples if kept
    _spec: object = field(default=None, repr=False)  # their sample_store.SampleSpec, if kept


@dataclass
class ExposureResult:
    config: ExposureConfig
    reference: str  # where the reference data came from
    runs: list[ExposureRun]
    fid_warning: str | None = None  # set when runs were scored with too few samples
    quantity: str = "eps"  # what the norms are of: "eps" (DDPM family) or "v" (flow matching: the velocity)


# ---------------------------------------------------------------------------------- fits
def fit_epsilon_scaling(sampled: Sequence[float], forward: Sequence[float], timesteps: Sequence[float], linear: bool):
    """(b, k): least squares of sampled_t ~ (b + k t) * forward_t (k = 0 unless linear).

    Minimises the squared norm gap after dividing the sampled norms by lambda_t, to first
    order in the trajectory change (ADM-ES's lambda_t = ||eps(x_hat_t)|| / ||eps(x_t)||).
    """
    s = np.asarray(sampled, dtype=np.float64)
    f = np.asarray(forward, dtype=np.float64)
    t = np.asarray(timesteps, dtype=np.float64)
    if not linear:
        return float((s * f).sum() / (f * f).sum()), 0.0
    a = np.stack([f, t * f], axis=1)
    (b, k), *_ = np.linalg.lstsq(a, s, rcond=None)
    return float(b), float(k)


def ratio_estimate(num: torch.Tensor, den: torch.Tensor) -> Estimate:
    """sum(num)/sum(den) over independent draws, stderr by the delta method."""
    num, den = num.double(), den.double()
    n = len(num)
    r = float(num.sum() / den.sum())
    if n < 2:
        return Estimate(r, None, n=n)
    resid = num - r * den
    se = float(resid.std(unbiased=True) / math.sqrt(n) / abs(den.mean()))
    return Estimate(r, se, n=n)


# ---------------------------------------------------------------------------------- helpers
def _norm(x: torch.Tensor) -> torch.Tensor:
    return x.float().flatten(1).norm(dim=1)


def predicted(rec: StepRecord) -> torch.Tensor:
    """The prediction whose norm exposure compares: eps for the DDPM family, the velocity v for flow matching."""
    return rec.model_output if rec.denoiser.flow else rec.eps


def _output_with_eps(rec: StepRecord, eps: torch.Tensor) -> torch.Tensor:
    """The model output, in the model's own parametrisation, that corresponds to `eps` (to the
    prediction `predicted` returns: for flow models that is the output itself)."""
    d = rec.denoiser
    if d.prediction_type == "epsilon" or d.flow:
        return eps
    a, s = d.alpha_sigma(rec.timestep, rec.x_t)
    x0 = (rec.x_t - s * eps) / a
    return x0 if d.prediction_type == "sample" else a * eps - s * x0


class _X0Drift:
    """Per batch: x0 predicted at each step, compared with the batch's final sample at its end.

    Holds one batch's x0 predictions (steps x batch), never the whole run's.
    """

    def __init__(self):
        self.reducer = StepReducer()
        self._pending: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []

    def __call__(self, rec: StepRecord) -> None:
        self._pending.append((rec.step, rec.timestep, rec.indices, rec.x0.detach().float().cpu()))

    def end_batch(self, final: torch.Tensor, idx: torch.Tensor) -> None:
        d = final[0].numel()
        for step, t, indices, x0 in self._pending:
            self.reducer.add(step, t, indices, (x0 - final).flatten(1).norm(dim=1) / math.sqrt(d))
        self._pending = []


class _EpsNorms:
    """||eps|| per sample at every step, and optionally ||eps / lambda_t||, from one norm computation."""

    def __init__(self, lam: Callable[[int], float] | None = None):
        self.lam = lam
        self.raw = StepReducer(per_sample=True)
        self.applied = StepReducer(per_sample=True) if lam else None

    def __call__(self, rec: StepRecord) -> None:
        norms = _norm(predicted(rec))
        self.raw.add(rec.step, rec.timestep, rec.indices, norms)
        if self.applied is not None:
            self.applied.add(rec.step, rec.timestep, rec.indices, norms / self.lam(rec.timestep))


class _Spread:
    """Second moment per dimension about the forward process's mean, sampler vs forward, paired.

    For reference point j at timestep t: sampled_j = ||x_hat_t - sqrt(abar_t) mean(x0)||^2 / d on
    the sampler's input, forward_j = the same for x_t = sqrt(abar_t) x0_j + sqrt(1 - abar_t) eps_j,
    the point the forward process reaches with the noise that started the run. delta_t =
    mean_j (sampled_j - forward_j): exactly 0 at t_0, and its standard error is a paired one.
    A shift of the mean counts as spread: both are drift away from the forward process.
    """

    def __init__(self, ref: "_ForwardReference", coefficients: Callable):
        self.ref, self.coefficients = ref, coefficients
        self.center = ref.x0.mean(0, keepdim=True)
        self.sampled, self.forward, self.error = StepReducer(), StepReducer(), StepReducer(per_sample=True)

    def __call__(self, rec: StepRecord) -> None:
        a, s = (
            float(v) for v in self.coefficients(torch.tensor(rec.timestep))
        )  # x_t = a x0 + s eps, at fractional t too
        x0, nz = self.ref.x0[rec.indices], self.ref.noise[rec.indices]
        fwd = (a * (x0 - self.center) + s * nz).flatten(1).pow(2).mean(1)
        smp = (rec.x_t.float().cpu() - a * self.center).flatten(1).pow(2).mean(1)
        for r, v in ((self.sampled, smp), (self.forward, fwd), (self.error, smp - fwd)):
            r.add(rec.step, rec.timestep, rec.indices, v)


def _curve(r: StepReducer) -> Curve:
    return Curve(r.mean(), r.stderr())


def _total_gap(sampled_totals: torch.Tensor, forward_totals: torch.Tensor, paired: bool = False) -> Estimate:
    """Mean summed norm over samples minus over reference points; paired by index when the noise is shared."""
    if paired and len(sampled_totals) == len(forward_totals):
        return mean_estimate((sampled_totals - forward_totals).numpy())
    a, b = mean_estimate(sampled_totals.numpy()), mean_estimate(forward_totals.numpy())
    se = math.sqrt((a.stderr or 0.0) ** 2 + (b.stderr or 0.0) ** 2)
    return Estimate(a.value - b.value, se, n=min(a.n, b.n))


# ---------------------------------------------------------------------------------- forward reference
class _ForwardReference:
    """eps_theta on reference data noised by the forward process, cached per timestep.

    Each reference point j keeps one noise draw for every t (common random numbers), so
    curves over t are smooth and a timestep shared by two step counts is computed once.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        x0: torch.Tensor,
        noise: torch.Tensor,
        batch_size: int,
        paired: bool = False,
        cond: torch.Tensor | None = None,
    ):
        self.denoiser, self.x0, self.noise, self.batch_size, self.cond = denoiser, x0, noise, batch_size, cond
        self.paired = paired  # noise[j] is run (a)'s initial noise of sample j
        # keyed by the timestep value (a float for fractional timesteps: never rounded)
        self.norm: dict[int | float, torch.Tensor] = {}  # t -> [m] ||eps_theta||
        self.sq: dict[int | float, torch.Tensor] = {}  # t -> [m] ||eps_theta||^2
        self.dot: dict[int | float, torch.Tensor] = {}  # t -> [m] <eps_theta, eps>

    @torch.no_grad()
    def compute(self, timesteps: Sequence[int], progress: Callable[[int], None] | None = None) -> None:
        todo = sorted({t for t in timesteps} - set(self.norm), reverse=True)
        d = self.denoiser
        dev, dt = d.device, d.dtype
        for t in todo:
            norms, sqs, dots = [], [], []
            for s in range(0, len(self.x0), self.batch_size):
                x0 = self.x0[s : s + self.batch_size].to(dev, dt)
                nz = self.noise[s : s + self.batch_size].to(dev, dt)
                c = None if self.cond is None else self.cond[s : s + self.batch_size]
                # guided as the sampler's own eps is: the two sides of the gap are the same function
                x_t = d.add_noise(x0, t, nz)
                if d.flow:  # the velocity, against the true one eps - x0
                    eps, nz = d.model_output(x_t, t, c, guided=True).float(), nz - x0
                else:
                    eps = d.eps(x_t, t, c, guided=True).float()
                flat = eps.flatten(1)
                norms.append(flat.norm(dim=1).cpu())
                sqs.append((flat * flat).sum(1).cpu())
                dots.append((flat * nz.float().flatten(1)).sum(1).cpu())
                if progress:
                    progress(len(x0))
            self.norm[t], self.sq[t], self.dot[t] = (torch.cat(v).double() for v in (norms, sqs, dots))

    def curve(self, timesteps: Sequence[int]) -> Curve:
        m = len(self.x0)
        means = [float(self.norm[t].mean()) for t in timesteps]
        ses = [float(self.norm[t].std(unbiased=True) / math.sqrt(m)) if m > 1 else 0.0 for t in timesteps]
        return Curve(means, ses)

    def totals(self, timesteps: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.norm[t] for t in timesteps]).sum(0)

    def scale(self, timesteps: Sequence[int]) -> Estimate:
        sq = torch.stack([self.sq[t] for t in timesteps]).sum(0)
        dot = torch.stack([self.dot[t] for t in timesteps]).sum(0)
        return ratio_estimate(sq, dot)


# ---------------------------------------------------------------------------------- entry point
def work_units(denoiser: Denoiser, config: ExposureConfig, n_reference: int) -> int:
    """Number of (sample, network call) units measure_exposure will run: a progress bar's total."""
    seen: set = set()
    total = 0
    for steps in config.steps:
        ts = timesteps_for(make_sampler(denoiser.scheduler, config.sampler), steps, denoiser)
        new = set(ts) - seen
        seen |= new
        runs_from_noise = 1 + ((2 if config.linear_scale else 1) if config.check_scaling else 0)
        total += n_reference * len(new) + (runs_from_noise * config.samples + n_reference) * len(ts)
    return total


def measure_exposure(
    denoiser: Denoiser,
    reference_x0: torch.Tensor,
    config: ExposureConfig | None = None,
    progress: Callable[[int], None] | None = None,
    reference_noise: torch.Tensor | None = None,
    reference_source: str = "given tensor",
    shared=None,
    reference_cond: torch.Tensor | None = None,
) -> ExposureResult:
    """Exposure-bias measures for each step count in config.steps.

    reference_x0: [m, C, H, W] reference data in model space (e.g. a ProbeBank's x0), or a function
        returning (x0, noise, cond, source) that is called once, after the first run (a): data-free,
        the reference is drawn from the shared samples that run makes, so they are sampled once.
    reference_noise: the forward noise for each reference point. Default: run (a)'s own initial
        noise of sample j for point j, which pairs the two when samples == len(reference_x0)
        (the summed gap's stderr is then that of paired differences; per-step stderrs stay unpaired,
        i.e. conservative).
    progress(k): called as work is done, k in work_units' units.
    reference_cond: the condition id of each reference point (conditional models: the bank's).
    shared: the run's shared sample set (core.inputs.SampleSet): when it is exactly run (a) of a
        step count and not made yet, run (a) makes it (watched by the hooks) instead of sampling twice.
    """
    config = config or ExposureConfig()
    for s in config.steps:
        check_run(s, config.batch_size, config.samples)
    if callable(reference_x0):
        provide = reference_x0
    else:

        def provide():
            return reference_x0, reference_noise, reference_cond, reference_source

    made: dict = {}

    def reference() -> _ForwardReference:
        if not made:
            x0, noise, cond, made["source"] = provide()
            made["ref"] = _forward_reference(denoiser, x0, noise, cond, config)
        return made["ref"]

    if not callable(reference_x0):
        reference()  # a bad reference fails before any sampling
    runs = [_measure_steps(denoiser, reference, steps, config, progress, shared) for steps in config.steps]
    return ExposureResult(config, made["source"], runs, quantity="v" if denoiser.flow else "eps")


def _forward_reference(
    denoiser: Denoiser, x0: torch.Tensor, noise: torch.Tensor | None, cond: torch.Tensor | None, config: ExposureConfig
) -> "_ForwardReference":
    x0 = x0.detach().float().cpu()
    if x0.ndim < 2 or len(x0) < 2:
        raise InputError(f"exposure needs at least 2 reference samples (got {len(x0)})")
    if tuple(x0.shape[1:]) != tuple(denoiser.sample_shape):
        raise InputError(
            f"reference data is shaped {tuple(x0.shape[1:])}, the model samples {tuple(denoiser.sample_shape)}"
        )
    paired = noise is None
    if paired:
        # Reference point j is noised with the very noise sample j of run (a) starts from, so with
        # samples == reference points the summed gap is a paired difference: far lower variance.
        noise = initial_noise(denoiser.sample_shape, generators(config.seed, range(len(x0))))
    if denoiser.conditioning is not None and cond is None:
        raise InputError("a conditional model's exposure reference needs the condition of each reference point")
    return _ForwardReference(denoiser, x0, noise.float().cpu(), config.batch_size, paired, cond)


def _measure_steps(
    denoiser: Denoiser,
    reference: Callable[[], _ForwardReference],
    steps: int,
    config: ExposureConfig,
    progress,
    shared=None,
) -> ExposureRun:
    scheduler = make_sampler(denoiser.scheduler, config.sampler)
    ts = timesteps_for(scheduler, steps, denoiser)
    d = int(np.prod(denoiser.sample_shape))
    bs, n = config.batch_size, config.samples

    def tick(k: int) -> None:
        if progress:
            progress(k * len(ts))

    # (a) the sampler from noise: eps norms and x0 drift; then the forward reference on the same timesteps.
    eps_a, drift = _EpsNorms(), _X0Drift()
    if shared is not None and not shared.made and shared.serves(config.sampler, steps, n, config.seed):
        samples = shared.get(hooks=[eps_a, drift])  # the shared samples are this very run
        tick(n)
    else:
        samples = sample(denoiser, scheduler, steps, n, config.seed, batch_size=bs, hooks=[eps_a, drift], progress=tick)
    ref = reference()
    m = len(ref.x0)
    ref.compute(ts, progress)
    forward = ref.curve(ts)
    sampled = _curve(eps_a.raw)
    gap = _gap_curve(sampled, forward)
    fwd_totals = ref.totals(ts)
    sampled_totals = eps_a.raw.sample_totals()
    gap_total = _total_gap(sampled_totals, fwd_totals, ref.paired)
    paired_gap = ref.paired and len(sampled_totals) == len(fwd_totals)  # as _total_gap decides

    # (b) the sampler from reference data noised to t_0: its spread against the forward process's.
    set_timesteps(scheduler, steps, denoiser)
    unit = float(scale_model_input(scheduler, torch.ones(()), scheduler.timesteps[0]))  # x_in = x * unit
    x_init = denoiser.add_noise(ref.x0, ts[0], ref.noise) / unit
    spread = _Spread(ref, denoiser.coefficients)
    sample(
        denoiser,
        scheduler,
        steps,
        m,
        exposure_variance_seed(config.seed),
        batch_size=bs,
        x_init=x_init,
        cond=ref.cond,
        hooks=[spread],
        progress=tick,
    )
    var_err_items = (spread.error.sample_totals() / len(ts)).numpy()
    var_err_mean = mean_estimate(var_err_items)

    # (c) epsilon scaling, fitted on (a) and checked by rerunning the sampler with it.
    scaling = []
    for form in ("constant", "linear") if config.linear_scale else ("constant",):
        b, k = fit_epsilon_scaling(sampled.mean, forward.mean, ts, form == "linear")
        if config.check_scaling:
            scaling.append(
                _check_scaling(
                    denoiser,
                    scheduler,
                    steps,
                    config,
                    form,
                    b,
                    k,
                    ts,
                    forward,
                    fwd_totals,
                    ref.paired,
                    eps_a,
                    gap,
                    tick,
                )
            )
        else:
            _positive_scaling(form, b, k, ts)
            scaling.append(EpsilonScaling(form=form, b=b, k=k, lambdas=[b + k * t for t in ts]))

    run = ExposureRun(
        steps=steps,
        sampler=type(scheduler).__name__,
        timesteps=ts,
        samples=n,
        reference=m,
        sqrt_d=math.sqrt(d),
        eps_norm_sampled=sampled,
        eps_norm_forward=forward,
        gap=gap,
        gap_total=gap_total,
        gap_relative=gap_total.value / float(sum(forward.mean)),
        gap_abs_total=float(np.abs(gap.mean).sum()),
        variance_forward=_curve(spread.forward),
        variance_sampled=_curve(spread.sampled),
        variance_error=_curve(spread.error),
        variance_error_mean=var_err_mean,
        x0_drift=_curve(drift.reducer),
        eps_scale_forward=ref.scale(ts),
        scaling=scaling,
        gap_total_per_sample=per_item((sampled_totals - fwd_totals).numpy()) if paired_gap else None,
        variance_error_mean_per_sample=per_item(var_err_items),
    )
    if config.keep_samples:
        run._samples = samples
    return run


def _gap_curve(sampled: Curve, forward: Curve) -> Curve:
    return Curve(
        [a - b for a, b in zip(sampled.mean, forward.mean)],
        [math.hypot(a, b) for a, b in zip(sampled.stderr, forward.stderr)],
    )


def _positive_scaling(form: str, b: float, k: float, ts) -> None:
    if min(b + k * t for t in ts) <= 0:
        raise InputError(
            f"the {form} epsilon-scaling fit gave lambda <= 0 (b={b:.3g}, k={k:.3g}): "
            "the eps-norm curves are degenerate"
        )


def _check_scaling(
    denoiser, scheduler, steps, config, form, b, k, ts, forward, fwd_totals, paired, eps_a, gap_before, tick
):
    lam = lambda t: b + k * t  # noqa: E731 - lambda_t as the paper writes it
    _positive_scaling(form, b, k, ts)

    def scaled(rec: StepRecord) -> torch.Tensor:
        return _output_with_eps(rec, predicted(rec) / lam(rec.timestep))

    eps_c = _EpsNorms(lam)
    sample(
        denoiser,
        scheduler,
        steps,
        config.samples,
        config.seed,
        batch_size=config.batch_size,
        hooks=[eps_c],
        output_transform=scaled,
        progress=tick,
    )
    applied = _curve(eps_c.applied)
    gap = _gap_curve(applied, forward)
    after = eps_c.applied.sample_totals()
    change = mean_estimate((after - eps_a.raw.sample_totals()).numpy())  # same initial noise: paired
    abs_after = float(np.abs(gap.mean).sum())
    return EpsilonScaling(
        form=form,
        b=b,
        k=k,
        lambdas=[lam(t) for t in ts],
        eps_norm_raw=_curve(eps_c.raw),
        eps_norm_applied=applied,
        gap=gap,
        gap_total=_total_gap(after, fwd_totals, paired),
        gap_abs_total=abs_after,
        gap_change=change,
        helps=abs_after < float(np.abs(gap_before.mean).sum()),
    )
