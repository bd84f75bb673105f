"""The sampling engine: equality with diffusers' pipelines, per-sample seeds, hooks, resumable sample folders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flatcheck.core.denoiser import Denoiser
from flatcheck.core.sample_store import SampleStore, generate, model_fingerprint
from flatcheck.core.sampling import (
    RecordSteps,
    StepReducer,
    check_sampler_name,
    generators,
    make_sampler,
    parse_steps,
    sample,
    sample_batch,
)
from flatcheck.errors import InputError

from .conftest import make_scheduler, make_unet


@pytest.fixture(scope="module")
def den():
    return Denoiser(make_unet(), make_scheduler())


def _to01(x: torch.Tensor) -> np.ndarray:
    # The pipelines' own postprocessing for output_type="np".
    return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("pipeline, sampler", [("DDPMPipeline", "ddpm"), ("DDIMPipeline", "ddim")])
def test_same_pixels_as_diffusers_pipeline(pipeline, sampler):
    import diffusers

    unet = make_unet()
    pipe = getattr(diffusers, pipeline)(unet=unet, scheduler=make_scheduler())
    pipe.set_progress_bar_config(disable=True)
    n, steps, seed = 5, 7, 11
    ref = pipe(batch_size=n, generator=generators(seed, range(n)), num_inference_steps=steps, output_type="np").images
    ours = sample(
        Denoiser(unet, make_scheduler()), make_sampler(make_scheduler(), sampler), steps, n, seed, batch_size=n
    )
    assert np.abs(_to01(ours) - ref).max() <= 1e-6


def test_sample_i_is_the_same_whatever_the_batch(den):
    sched = make_sampler(den.scheduler, "ddpm")  # ancestral: per-step noise must follow the sample too
    all_at_once = sample(den, sched, 6, 7, seed=3, batch_size=7)
    one_by_one = sample(den, sched, 6, 7, seed=3, batch_size=1)
    odd_batches = sample(den, sched, 6, 7, seed=3, batch_size=3)
    # Float noise only: batch composition changes the kernels' accumulation order (seen up to
    # 1.2e-5 here, thread-count dependent); a seeding mistake would differ by O(1).
    torch.testing.assert_close(all_at_once, one_by_one, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(all_at_once, odd_batches, atol=1e-4, rtol=1e-4)
    # ... and a subset of indices gives the same samples as in the full run.
    subset = sample(den, sched, 6, [4, 2], seed=3, batch_size=2)
    torch.testing.assert_close(subset, all_at_once[[4, 2]], atol=1e-4, rtol=1e-4)
    # Another seed gives other samples.
    assert not torch.allclose(all_at_once, sample(den, sched, 6, 7, seed=4, batch_size=7), atol=1e-2)


@pytest.mark.parametrize("name", ["ddim", "dpm-solver++", "euler", "euler-ancestral", "unipc"])
def test_named_samplers_run_and_are_deterministic(den, name):
    a = sample(den, make_sampler(den.scheduler, name), 4, 3, seed=1, batch_size=3)
    b = sample(den, make_sampler(den.scheduler, name), 4, 3, seed=1, batch_size=3)
    assert a.shape == (3, 1, 8, 8) and torch.isfinite(a).all()
    assert torch.equal(a, b)


def test_bad_sampler_and_steps_are_input_errors(den):
    with pytest.raises(InputError, match="unknown sampler 'nope'"):
        check_sampler_name("nope")
    with pytest.raises(InputError, match="unknown sampler"):
        make_sampler(den.scheduler, "nope")
    with pytest.raises(InputError, match="--steps must be >= 1"):
        sample(den, make_sampler(den.scheduler), 0, 2, seed=0)
    with pytest.raises(InputError, match="--steps must be >= 1"):
        parse_steps("20,0")
    with pytest.raises(InputError, match="comma-separated"):
        parse_steps("20,x")
    assert parse_steps("20, 100,20") == (20, 100)


def test_hooks_share_one_record_and_stream_statistics(den):
    """StepReducer's per-step mean/stderr and per-sample totals equal a computation on every kept tensor."""
    sched = make_sampler(den.scheduler, "ddpm")
    keep = RecordSteps()
    seen_records: list[int] = []
    norms = StepReducer(lambda r: r.eps.flatten(1).norm(dim=1), per_sample=True)

    def same_record(rec):
        seen_records.append(id(rec))

    def same_record_again(rec):
        assert seen_records[-1] == id(rec)  # every hook of a step gets the same record: eps computed once

    out = sample(den, sched, 5, 6, seed=2, batch_size=4, hooks=[same_record, keep, norms, same_record_again])
    eps = keep.stacked("eps")  # [steps, N, C, H, W]
    per = eps.flatten(2).norm(dim=2).double()  # [steps, N]
    assert np.allclose(norms.mean(), per.mean(1).numpy(), rtol=1e-6)
    assert np.allclose(norms.stderr(), (per.std(1, unbiased=True) / math.sqrt(6)).numpy(), rtol=1e-5)
    assert torch.allclose(norms.sample_totals(), per.sum(0), rtol=1e-6)
    # The kept x0 at the last step is the network's prediction there (independent recomputation).
    x_last, t_last = keep.stacked("x_t")[-1], norms.timesteps[-1]
    assert torch.allclose(keep.stacked("x0")[-1], den.x0(x_last, t_last), atol=1e-5)
    assert out.shape == (6, 1, 8, 8)


def test_x_init_and_output_transform(den):
    sched = make_sampler(den.scheduler, "ddim")
    x_init = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    first = RecordSteps(("x_t",))
    sample_batch(den, sched, 4, [0, 1, 2], seed=0, x_init=x_init, hooks=[first])
    assert torch.equal(first.stacked("x_t")[0], x_init)  # DDIM: the first network input is x_init itself
    # An identity transform changes nothing; a scaled eps changes the samples.
    base = sample_batch(den, sched, 4, [0, 1, 2], seed=0)
    same = sample_batch(den, sched, 4, [0, 1, 2], seed=0, output_transform=lambda r: r.model_output)
    scaled = sample_batch(den, sched, 4, [0, 1, 2], seed=0, output_transform=lambda r: r.model_output / 1.05)
    assert torch.equal(base, same)
    assert not torch.allclose(base, scaled, atol=1e-4)


# ------------------------------------------------------------------------------------ sample folders
class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_uninterrupted_set(den, tmp_path):
    sched = make_sampler(den.scheduler, "ddpm")
    full = generate(tmp_path / "full", den, sched, 5, 10, seed=7, batch_size=3).load()

    calls = []

    def stop_after_two_shards(k):
        calls.append(k)
        if len(calls) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        generate(tmp_path / "resumed", den, sched, 5, 10, seed=7, batch_size=3, progress=stop_after_two_shards)
    assert SampleStore.read(tmp_path / "resumed").count == 6  # two finished shards survived
    made = []
    # A different batch size on resume: the folder's shard size (3) still decides the batches.
    store = generate(tmp_path / "resumed", den, sched, 5, 10, seed=7, batch_size=8, progress=made.append)
    assert sum(made) == 4  # only the missing samples were generated
    assert torch.equal(store.load(), full)  # bit for bit the uninterrupted run
    assert torch.equal(full, sample(den, sched, 5, 10, seed=7, batch_size=3))
    # Asking again generates nothing.
    again = []
    generate(tmp_path / "resumed", den, sched, 5, 10, seed=7, progress=again.append)
    assert again == []


def test_lost_shard_is_regenerated_and_damage_is_detected(den, tmp_path):
    sched = make_sampler(den.scheduler, "ddim")
    store = generate(tmp_path / "s", den, sched, 3, 6, seed=1, batch_size=2)
    want = store.load()
    (tmp_path / "s" / store.shards[-1].file).unlink()
    assert SampleStore.read(tmp_path / "s").count == 4
    assert torch.equal(generate(tmp_path / "s", den, sched, 3, 6, seed=1, batch_size=2).load(), want)
    # A shard whose bytes changed is refused on load.
    p = tmp_path / "s" / store.shards[0].file
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum"):
        SampleStore.read(tmp_path / "s").load()


@pytest.mark.parametrize(
    "change, why",
    [
        (dict(steps=4), "steps 3, not 4"),
        (dict(seed=2), "seed 1, not 2"),
        (dict(sampler="ddpm"), "sampler DDIMScheduler, not DDPMScheduler"),
        (dict(model=1), "another model"),
    ],
)
def test_mismatched_folder_is_refused(den, tmp_path, change, why):
    generate(tmp_path / "s", den, make_sampler(den.scheduler, "ddim"), 3, 2, seed=1, batch_size=2)
    args = dict(steps=3, seed=1, sampler="ddim", model=0)
    args.update(change)
    d = den if args["model"] == 0 else Denoiser(make_unet(seed=5), make_scheduler())
    with pytest.raises(InputError, match=why):
        generate(tmp_path / "s", d, make_sampler(den.scheduler, args["sampler"]), args["steps"], 2, seed=args["seed"])


def test_fingerprint_tracks_weights():
    a, b = make_unet(seed=0), make_unet(seed=0)
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6
    assert model_fingerprint(a) != model_fingerprint(b)
