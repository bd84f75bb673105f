"""AuraFlow (flatcheck.families.auraflow) against AuraFlowPipeline's own code, on the tiny fixture
(tests/fixtures/auraflow.py): the sampler's pixels at a second guidance value, what guidance does, the call
(timestep sigma = t / 1000, no packing, no mask, the output as the velocity), the null prompt, the schedule,
the latent space, the block names and a plan on the meta device."""

from __future__ import annotations

import json

import pytest
import torch

from flatcheck.cli import run
from flatcheck.core.checkpoint import load
from flatcheck.core.conditioning import NULL, ConditionOptions
from flatcheck.core.denoiser import Denoiser
from flatcheck.core.sampling import make_sampler, sample, set_timesteps
from flatcheck.core.seeds import sample_seed
from flatcheck.errors import InputError
from flatcheck.families import family_of
from flatcheck.measures.sharpness.blocks import GROUP_ORDER, group_name

from . import families

SEED, N, STEPS = 3, 2, 3


@pytest.fixture(scope="module")
def model(family_dir):
    return family_dir("auraflow")


@pytest.fixture(scope="module")
def pipe(model):
    return families.load_pipeline(model, "auraflow")


@pytest.fixture(scope="module")
def images(model, pipe):
    """guidance scale (None: the default) -> (flatcheck's pixels, the pipeline's), 2 images, 3 steps; cached."""
    cache = {}

    def get(g):
        if g not in cache:
            den = Denoiser.from_checkpoint(load(str(model)), ConditionOptions(guidance_scale=g))
            ours = sample(den, make_sampler(den.scheduler, None), STEPS, N, SEED, batch_size=N)
            ours = (den.pixels(ours) / 2 + 0.5).clamp(0, 1)
            c = den.conditioning
            prompts = [c.names[i] for i in c.ids(SEED, range(N)).tolist()]
            theirs = families.pipeline_images(
                pipe,
                "auraflow",
                seeds=[sample_seed(SEED, i) for i in range(N)],
                steps=STEPS,
                prompts=prompts,
                guidance_scale=c.guidance_scale,
            )
            cache[g] = ours, theirs
        return cache[g]

    return get


@pytest.mark.parametrize("g", [1.0, 6.0])
def test_sampler_pixels_equal_the_pipeline_at_other_guidance(images, g):
    ours, theirs = images(g)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=0)


def test_guidance_moves_samples_as_the_pipelines(images):
    """Guidance 1 (one pass) against the default 3.5 (two passes): a visible change, the pipeline's own."""
    ours_1, theirs_1 = images(1.0)
    ours_g, theirs_g = images(None)
    ours, theirs = ours_g - ours_1, theirs_g - theirs_1
    assert theirs.abs().max() > 1e-3  # the fixture's guidance is visible at this tolerance
    torch.testing.assert_close(ours, theirs, atol=4e-5, rtol=0)
    assert torch.nn.functional.cosine_similarity(ours.flatten(), theirs.flatten(), dim=0) > 0.999


@pytest.fixture(scope="module")
def den(model):
    return Denoiser.from_checkpoint(load(str(model)))


def test_the_call_is_the_pipelines(den, pipe):
    """x_t goes in unpacked, the time as sigma = t / 1000 exactly as the pipeline computes it, the encoded prompt
    with no mask; what comes back is the velocity (no sign flip, no variance channels). Rows: two prompts, then
    the null prompt."""
    assert den.conditioning.guidance_scale == 3.5 and den.conditioning.guided
    x, t = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor(776.2392578125)
    ids = torch.tensor([0, 1, NULL])
    seen = []
    hook = den.net.register_forward_pre_hook(lambda m, a, k: seen.append(dict(k)), with_kwargs=True)
    with torch.no_grad():
        ours = den.model_output(x, t, ids)
    hook.remove()
    assert set(seen[0]) == {"hidden_states", "timestep", "encoder_hidden_states", "return_dict"}
    assert torch.equal(seen[0]["timestep"], torch.tensor([t / 1000]).expand(3).to(x.dtype))  # bit for bit
    assert seen[0]["hidden_states"].shape == x.shape
    prompts = list(den.conditioning.names[:2])
    with torch.no_grad():
        pe, _, ne, _ = pipe.encode_prompt(
            prompt=prompts, negative_prompt=None, do_classifier_free_guidance=True, device=torch.device("cpu")
        )
        theirs = pipe.transformer(
            x,
            encoder_hidden_states=torch.cat([pe, ne[:1]]),
            timestep=torch.tensor([t / 1000]).expand(3),
            return_dict=False,
        )[0]
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_the_null_row_is_the_encoded_empty_prompt(den, pipe):
    """The pipeline guides against the encoding of "" (one </s> token, 255 zeroed pads), not against zeros."""
    table = den.conditioning.tables["encoder_hidden_states"]
    assert table.shape == (len(den.conditioning.names) + 1, 256, 32) and set(den.conditioning.tables) == {
        "encoder_hidden_states"
    }
    with torch.no_grad():
        empty = pipe.encode_prompt(prompt=[""], do_classifier_free_guidance=False, device=torch.device("cpu"))[0][0]
    torch.testing.assert_close(table[-1], empty, atol=1e-6, rtol=0)
    assert table[-1, 0].abs().sum() > 0 and not table[-1, 1:].any()


def test_the_schedule_is_the_pipelines(den, pipe):
    from diffusers.pipelines.aura_flow.pipeline_aura_flow import retrieve_timesteps

    sched = make_sampler(den.scheduler, None)
    for steps in (2, 4):
        set_timesteps(sched, steps, den)
        theirs, _ = retrieve_timesteps(pipe.scheduler, steps, "cpu", sigmas=None)
        assert torch.equal(sched.timesteps, theirs) and torch.equal(sched.sigmas, pipe.scheduler.sigmas)
    assert sched.timesteps[-1] == pytest.approx(2.987, abs=1e-3)  # shift 1.73, applied twice (the note in the fixture)
    dynamic = type(sched).from_config({**sched.config, "use_dynamic_shifting": True})
    with pytest.raises(InputError, match="passes no mu"):
        set_timesteps(dynamic, 2, den)


def test_the_latent_space_is_the_pipelines(den, pipe):
    """Decoding is vae.decode(z / scaling_factor): no shift factor even if the config names one."""
    family = family_of("AuraFlowTransformer2DModel", {})
    assert family.latent_scale_shift({"scaling_factor": 0.13025, "shift_factor": 0.5}) == (0.13025, 0.0)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = pipe.vae.decode(z / pipe.vae.config.scaling_factor, return_dict=False)[0]
        torch.testing.assert_close(den.decode(z), theirs, atol=1e-6, rtol=0)
    assert den.vae_factor == pipe.vae_scale_factor == 2


def test_every_parameter_is_in_a_known_block(den):
    family = family_of("AuraFlowTransformer2DModel", {})
    groups = {group_name(n, family.blocks) for n, _ in den.net.named_parameters()}
    assert groups == {"embed", "io", "blocks"} and groups <= set(GROUP_ORDER)
    assert family.default_sample_size({"sample_size": 8}) is None and family.default_sample_size({}) == 128


def test_planned_on_the_meta_device(model, capsys):
    """encode_prompt cannot run on meta (UMT5 reads its mask's values): the plan shapes the prompts instead."""
    code = run(
        [
            "plan",
            str(model),
            "--data",
            "none",
            "--samples",
            "2",
            "--steps",
            "2",
            "--probes",
            "2",
            "--batch-size",
            "2",
            "--no-timing",
            "--json",
            "-",
            "--quick",
            "--device",
            "cuda",
            "--memory",
            "80GB",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["fits"]
