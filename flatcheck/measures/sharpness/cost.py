"""What `measure_sharpness` computes for a config (core.work), read off measure.py and hessian.py.

Vectors held per phase (parameter-sized, of the measured parameters; the weights and one call's
own gradient/HVP buffers are counted by the call's trace):
    losses at theta   theta0
    average case      theta0 + the direction u
    worst case        theta0 + the gradient at theta (shared by every radius) + u
                      (the step's gradient, then s * grad, is the traced call's buffer)
    Hessian           theta0 + the Krylov basis and its work rows (hessian.lanczos_peak_vectors) + one
                      chunk's H v when the sub-bank takes several batches; then Hutchinson's v and
                      one chunk's H v
    landscape         theta0 + two directions
"""

from __future__ import annotations

from ...core.params import measured_parameters
from ...core.work import RunShape, Work
from ...families import family_of_network
from .blocks import parameter_groups
from .config import SharpnessConfig


def work(config: SharpnessConfig, run: RunShape, net) -> list[Work]:
    c = config
    blocks = len(parameter_groups(measured_parameters(net, c.params), family_of_network(net).blocks))
    p = run.probes
    b = min(c.batch_size, p)
    out = [Work("sharpness: losses at theta", forwards=p, batch=b, vectors=1)]
    if "avg" in c.measures:
        out.append(
            Work("sharpness: average case", forwards=len(c.norms) * len(c.radii) * c.draws * 2 * p, batch=b, vectors=2)
        )
        if c.block_average:
            out.append(Work("sharpness: per-block average case", forwards=blocks * c.draws * 2 * p, batch=b, vectors=2))
    if "worst" in c.measures:
        points = len(c.norms) * len(c.worst_radii)
        out.append(
            Work(
                "sharpness: worst case",
                forwards=points * p,
                gradients=p * (1 + points * (c.ascent_steps - 1)),
                batch=b,
                graph="gradient",
                vectors=3,
            )
        )
    if "hessian" in c.measures:
        from .hessian import lanczos_peak_vectors

        hp = min(c.hessian_probes, p)
        hb = min(c.batch_size, hp)
        # The gradient's graph is kept between HVPs when the sub-bank is one batch (hessian.BankLoss.retain):
        # then every HVP after a phase's first is the second backward only
        kept = hp <= c.batch_size
        out.append(
            Work(
                "sharpness: Hessian eigenvalues (Lanczos)",
                hvps=c.lanczos_iters * hp,
                batch=hb,
                graph="hvp",
                hvps_kept=(c.lanczos_iters - 1) * hp if kept else 0,
                # + one chunk's H v when the sub-bank takes several batches (hessian.BankLoss._hvp_once)
                vectors=1 + lanczos_peak_vectors(c) + (1 if hp > hb else 0),
                upper_bound=True,
                note=f"at most {c.lanczos_iters} HVPs of {hp} probes (stops at tol {c.tol:g})",
            )
        )
        out.append(
            Work(
                "sharpness: Hessian trace (Hutchinson)",
                hvps=c.hutchinson_draws * hp,
                batch=hb,
                graph="hvp",
                hvps_kept=(c.hutchinson_draws - 1) * hp if kept else 0,
                vectors=1 + 2,
                note=f"{c.hutchinson_draws} HVPs of {hp} probes",
            )
        )
    if "landscape" in c.measures:
        lp = min(c.landscape_probes, p)
        points = (c.landscape_points - (c.landscape_points % 2)) + max(0, c.landscape_grid**2 - (c.landscape_grid % 2))
        out.append(
            Work(
                "sharpness: loss landscape",
                forwards=(points + 1) * lp,
                batch=min(c.batch_size, lp),
                vectors=2 + (1 if c.landscape_grid else 0),
            )
        )
    return out
