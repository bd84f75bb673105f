"""Memory is bounded by design, and the plan knows it (issue 23, items 1, 2 and 6).

A 3 M-parameter UNet (large enough that a parameter-sized vector stands out from every activation of
a small batch) runs each sharpness measure under core.memory.LiveTensors, which counts the storages of
at least one vector's size alive at any time:
  - the count at the peak is what the measure's cost function declares (measures/sharpness/cost.py),
    plus the buffers of the one call it makes (a gradient, an HVP's result);
  - it does not grow with the iteration counts (Lanczos steps, draws, ascent steps);
  - the peak bytes of the measure stay within the plan's estimate (vectors x one vector + the call's
    peak traced on the meta device).
And the meta-device traces the plan is made of agree with the same calls on the CPU.
"""

from __future__ import annotations

import pytest
import torch

from flatcheck.core.memory import LiveTensors
from flatcheck.core.params import ParamSpace, measured_parameters
from flatcheck.core.probes import probe_bank
from flatcheck.measures.sharpness.config import SharpnessConfig
from flatcheck.measures.sharpness.cost import work
from flatcheck.measures.sharpness.measure import measure_sharpness


@pytest.fixture(scope="module")
def mid():
    """A pixel UNet2DModel of about 3 M parameters at 16 x 16 and a bank of 8 probes."""
    from diffusers import DDPMScheduler, UNet2DModel

    from flatcheck.core.denoiser import Denoiser

    torch.manual_seed(0)
    net = (
        UNet2DModel(
            sample_size=16,
            in_channels=1,
            out_channels=1,
            layers_per_block=1,
            block_out_channels=(64, 96, 128),
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=32,
        )
        .eval()
        .requires_grad_(False)
    )
    den = Denoiser(net, DDPMScheduler(num_train_timesteps=1000))
    g = torch.Generator().manual_seed(1)
    pool = torch.randn(8, 1, 16, 16, generator=g)
    bank = probe_bank(pool, 8, 0, (0, 1000), "test pool")
    return den, bank


def _vector_bytes(den) -> int:
    space = ParamSpace([p for _, p in measured_parameters(den.net)])
    return space.dim * 4


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunked draws and reductions in pieces far below one vector, as they are at real size (4 M entries
    against SD 1.5's 860 M): at 3 M parameters the default chunk would be the whole vector."""
    import flatcheck.core.params as params

    monkeypatch.setattr(params, "CHUNK", 1 << 16)


def _run(den, bank, **config):
    config = {"batch_size": 8, "hessian_probes": 8, "landscape_probes": 8, "buckets": 2, **config}
    cfg = SharpnessConfig(**config)
    with LiveTensors(min_bytes=_vector_bytes(den)) as live:
        measure_sharpness(den, bank, cfg)
    return live, cfg


def test_mid_model_is_large_enough_to_tell_vectors_apart(mid):
    den, _ = mid
    n = sum(p.numel() for p in den.net.parameters())
    assert 2_000_000 < n < 6_000_000
    # the largest activation of a batch of 8 is far below one vector: a vector-sized storage is a vector
    assert 8 * 64 * 16 * 16 * 4 * 4 < _vector_bytes(den)


CASES = {
    # measure -> (config, the parameter-sized buffers of the one call it makes at its peak)
    "avg": (dict(measures=("avg",), norms=("adaptive",), radii=(0.01, 0.1), draws=2, block_average=True), 0),
    "worst": (dict(measures=("worst",), norms=("adaptive", "absolute"), worst_radii=(1e-4, 1e-3), ascent_steps=3), 1),
    "landscape": (dict(measures=("landscape",), landscape_points=5, landscape_grid=3), 0),
    "hessian": (dict(measures=("hessian",), top_k=2, lanczos_iters=8, hutchinson_draws=3, tol=1e-12), 1),
}


@pytest.mark.parametrize("measure", ["avg", "worst", "landscape"])
def test_parameter_sized_vectors_alive_at_the_peak_are_what_the_cost_declares(mid, measure):
    den, bank = mid
    config, own = CASES[measure]
    live, cfg = _run(den, bank, **config)
    declared = max(w.vectors for w in work(cfg, _shape(bank), den.net))
    assert live.peak_count == declared + own, (live.peak_count, declared, own)


@pytest.mark.parametrize("measure", list(CASES))
def test_peak_bytes_are_what_the_plan_estimates(mid, measure):
    """The measure's peak tensor bytes (weights excluded) against the plan's: its largest phase's vectors
    x one vector + that phase's call traced on the meta device."""
    from flatcheck.footprint import call_bytes, meta_copy

    den, bank = mid
    config, _ = CASES[measure]
    live, cfg = _run(den, bank, **config)
    meta = meta_copy(den)
    params = [p for _, p in measured_parameters(meta.net)]
    estimate = max(
        w.vectors * _vector_bytes(den) + call_bytes(meta, params, w.graph, w.batch)
        for w in work(cfg, _shape(bank), den.net)
    )
    assert 0.75 * estimate <= live.peak_bytes <= 1.05 * estimate, (live.peak_bytes, estimate)


def test_vectors_do_not_grow_with_iteration_counts(mid):
    den, bank = mid
    short, _ = _run(
        den,
        bank,
        measures=("avg", "worst"),
        norms=("adaptive",),
        radii=(0.01,),
        worst_radii=(1e-3,),
        draws=1,
        ascent_steps=2,
        block_average=False,
    )
    long, _ = _run(
        den,
        bank,
        measures=("avg", "worst"),
        norms=("adaptive",),
        radii=(0.01, 0.1),
        worst_radii=(1e-4, 1e-3),
        draws=3,
        ascent_steps=4,
        block_average=False,
    )
    assert long.peak_count == short.peak_count
    # Lanczos under its basis cap (3 blocks of 1): 4 and 8 HVPs hold the same memory
    hessian = dict(measures=("hessian",), top_k=1, hutchinson_draws=2, tol=1e-12, hessian_probes=4)
    few, _ = _run(den, bank, lanczos_iters=4, lanczos_basis=3, **hessian)
    many, _ = _run(den, bank, lanczos_iters=8, lanczos_basis=3, **hessian)
    assert many.peak_bytes == few.peak_bytes
    unbounded, _ = _run(den, bank, lanczos_iters=8, lanczos_basis=9, **hessian)
    assert unbounded.peak_bytes > many.peak_bytes + 4 * _vector_bytes(den)  # what the cap saves: the check can fail


def _shape(bank):
    from flatcheck.core.work import RunShape

    return RunShape(
        probes=len(bank),
        samples=8,
        steps=2,
        batch_size=8,
        guided=False,
        samples_made=False,
        fd=False,
        reference_images=0,
    )


@pytest.mark.parametrize("kind,batch", [("forward", 8), ("gradient", 8), ("hvp", 4)])
def test_meta_traces_match_the_cpu(mid, kind, batch):
    """The plan's traced peak of one call (meta device) against the same call's peak on the CPU."""
    from flatcheck.core.params import differentiable
    from flatcheck.footprint import call_bytes, meta_copy

    den, _ = mid
    params = [p for _, p in measured_parameters(den.net)]
    meta = meta_copy(den)
    estimate = call_bytes(meta, [p for _, p in measured_parameters(meta.net)], kind, batch)
    space = ParamSpace(params)
    x0 = torch.randn(batch, *den.sample_shape)
    noise, t = torch.randn_like(x0), torch.full((batch,), 500)
    v = space.views(space.zeros())
    with LiveTensors() as live:
        if kind == "forward":
            with torch.no_grad():
                den.model_output(den.add_noise(x0, t, noise), t)
        elif kind == "gradient":
            with differentiable(params):
                space.backward_into(space.zeros(), den.loss(x0, t, noise, reduction="none").mean())
        else:
            with differentiable(params, second_order=True):
                grads = torch.autograd.grad(den.loss(x0, t, noise), params, create_graph=True)
                space.backward_into(space.zeros(), grads, v)
    assert 0.85 * live.peak_bytes <= estimate <= 1.15 * live.peak_bytes, (estimate, live.peak_bytes)
