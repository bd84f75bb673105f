"""Lumina2's family (flatcheck/families/lumina2.py) against Lumina2Pipeline's own code, on the tiny fixture.

tests/test_families.py checks the default guidance (4.0, normalised CFG) end to end; here: the sampler at
other guidance scales (1: one pass; 0.5: the pipeline runs no CFG at <= 1), that guidance moves flatcheck's
samples as it moves the pipeline's, the network call (timestep 1 - t / 1000, unpacked latents, the prompt
states and attention masks with the null row, the sign of the output), the normalised guidance, the sampler
set-up with and without dynamic shifting, and a plan on the meta device.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flatcheck.core.checkpoint import load
from flatcheck.core.conditioning import NULL, ConditionOptions
from flatcheck.core.denoiser import Denoiser
from flatcheck.core.sampling import make_sampler, sample
from flatcheck.core.seeds import sample_seed
from flatcheck.families import family_of

from . import families  # noqa: F401 - first: it imports the fixture modules
from .fixtures import lumina2 as fx

SEED, N, STEPS = 3, 2, 3


@pytest.fixture(scope="module")
def built(tmp_path_factory, family_dir):
    prompts = tmp_path_factory.mktemp("lumina2") / "prompts.txt"
    prompts.write_text("\n".join(families.DEFAULT_PROMPTS) + "\n")
    return family_dir("lumina2"), prompts


@pytest.fixture(scope="module")
def pipe(built):
    return fx.load(built[0])


def denoiser(built, guidance=None) -> Denoiser:
    path, prompts = built
    return Denoiser.from_checkpoint(load(str(path)), ConditionOptions(prompts=str(prompts), guidance_scale=guidance))


@pytest.fixture(scope="module")
def images(built, pipe):
    """guidance -> (flatcheck's pixels, the pipeline's), computed once per scale."""
    cache = {}

    def get(g):
        if g not in cache:
            den = denoiser(built, g)
            ours = sample(den, make_sampler(den.scheduler, None), STEPS, N, SEED, batch_size=N)
            ours = (den.pixels(ours) / 2 + 0.5).clamp(0, 1)
            c = den.conditioning
            names = [c.names[i] for i in c.ids(SEED, range(N)).tolist()]
            theirs = fx.pipeline_images(
                pipe, seeds=[sample_seed(SEED, i) for i in range(N)], steps=STEPS, guidance_scale=g, prompts=names
            )
            cache[g] = (ours, theirs)
        return cache[g]

    return get


@pytest.mark.parametrize("guidance", [1.0, 0.5, 2.5])
def test_sampler_pixels_equal_the_pipeline_at_other_guidance(images, guidance):
    ours, theirs = images(guidance)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=0)


def test_guidance_moves_samples_as_it_moves_the_pipelines(images):
    (o4, t4), (o1, t1) = images(None), images(1.0)
    ours, theirs = (o4 - o1).flatten(), (t4 - t1).flatten()
    assert theirs.abs().max() > 0.05  # guidance 4 really changes the images
    assert torch.nn.functional.cosine_similarity(ours, theirs, dim=0) > 0.999
    torch.testing.assert_close(ours.norm(), theirs.norm(), rtol=1e-3, atol=0)


def test_guidance_below_one_is_no_cfg(built):
    """Lumina2Pipeline guides only when guidance_scale > 1 (as every diffusers pipeline): flatcheck runs the
    conditional pass alone at 0.5 and its report says so."""
    den = denoiser(built, 0.5)
    assert den.conditioning.guidance_scale == 0.5 and not den.conditioning.guided
    assert "no CFG pass" in den.conditioning.describe()["guidance_source"]
    assert denoiser(built).conditioning.guidance_scale == fx.DEFAULT_GUIDANCE == 4.0


@torch.no_grad()
def test_the_network_call_is_the_pipelines(built, pipe):
    """Unpacked latents, timestep 1 - t / 1000, the pipeline's prompt states and masks (null row: "" without the
    system prompt), and the output negated into flatcheck's velocity eps - x0."""
    den = denoiser(built)
    fam, c = den.family, den.conditioning
    assert fam is family_of("Lumina2Transformer2DModel", {}) and fam.name == "lumina2"
    pe, pm, ne, nm = pipe.encode_prompt(list(c.names), True, device=torch.device("cpu"))
    torch.testing.assert_close(c.tables["encoder_hidden_states"], torch.cat([pe, ne[:1]]), atol=1e-6, rtol=0)
    assert torch.equal(c.tables["encoder_attention_mask"], torch.cat([pm, nm[:1]]))
    assert int(nm[0].sum()) == 1 and int(pm[0].sum()) > 20  # "" is <bos> alone; a prompt carries the system prompt
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([1000.0, 857.1428, 3.0])
    ids = torch.tensor([0, 1, NULL])
    kwargs = fam.call_kwargs(den.net, x, t, c.kwargs(ids, x.device, x.dtype))
    assert kwargs["hidden_states"] is x  # the network patchifies itself
    assert torch.equal(kwargs["timestep"], torch.stack([1 - s / pipe.scheduler.config.num_train_timesteps for s in t]))
    assert torch.equal(kwargs["encoder_attention_mask"], torch.stack([pm[0], pm[1], nm[0]]))
    raw = pipe.transformer(
        hidden_states=x,
        timestep=1 - t / 1000,
        encoder_hidden_states=torch.stack([pe[0], pe[1], ne[0]]),
        encoder_attention_mask=torch.stack([pm[0], pm[1], nm[0]]),
        return_dict=False,
    )[0]
    ours = den.model_output(x, t, ids)
    torch.testing.assert_close(ours, -raw, atol=1e-6, rtol=0)
    # integer timesteps (the probes') reach the network as the same fraction, in float32
    lumina_t = fam.call_kwargs(den.net, x, torch.tensor([500, 0, 999]), {})["timestep"]
    assert lumina_t.dtype == torch.float32 and torch.equal(lumina_t, 1 - torch.tensor([500.0, 0.0, 999.0]) / 1000)


@torch.no_grad()
def test_output_sign_is_the_flow_velocity(built):
    """With x_t = (1 - sigma) x0 + sigma eps, one Euler step of flatcheck's output is the pipeline's step of -raw, and
    eps / x0 recovered from it put x_t back together."""
    den = denoiser(built, 1.0)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([600.0, 600.0])
    x_t = den.add_noise(x0, t, eps)
    torch.testing.assert_close(x_t, 0.4 * x0 + 0.6 * eps)
    ids = torch.tensor([0, 1])
    out = den.model_output(x_t, t, ids)
    torch.testing.assert_close(
        den.x0_from_output(out, x_t, t) * 0.4 + den.eps_from_output(out, x_t, t) * 0.6, x_t, atol=1e-5, rtol=0
    )
    # target of the loss: eps - x0, which the network (predicting x0 - eps) reaches with the opposite sign
    torch.testing.assert_close(den.target(x0, t, eps), eps - x0)


def test_normalised_guidance_is_the_pipelines():
    """cfg_normalization: uncond + g (cond - uncond), rescaled to the conditional norm along the last axis; the
    negated outputs give the negated result, bit for bit."""
    g = torch.Generator().manual_seed(2)
    cond, uncond = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    pred = uncond + 4.0 * (cond - uncond)
    pred = pred * (torch.norm(cond, dim=-1, keepdim=True) / torch.norm(pred, dim=-1, keepdim=True))
    fam = family_of("Lumina2Transformer2DModel", {})
    assert torch.equal(fam.combine_guidance(-cond, -uncond, 4.0), -pred)


@pytest.mark.parametrize("dynamic", [False, True])
def test_timesteps_are_the_pipelines(built, pipe, dynamic):
    """sigmas linspace(1, 1/steps, steps) through the scheduler's shift; with dynamic shifting, mu from the latent
    CHANNEL count, as Lumina2Pipeline computes it (latents.shape[1] of unpacked latents)."""
    from diffusers.pipelines.lumina2.pipeline_lumina2 import calculate_shift

    den = denoiser(built)
    sched = type(den.scheduler).from_config({**den.scheduler.config, "use_dynamic_shifting": dynamic})
    den.family.set_timesteps(sched, 5, den.sample_shape, den.net.config)
    ref = type(den.scheduler).from_config(sched.config)
    cfg = ref.config
    mu = calculate_shift(
        den.net.config.in_channels,
        cfg.get("base_image_seq_len", 256),
        cfg.get("max_image_seq_len", 4096),
        cfg.get("base_shift", 0.5),
        cfg.get("max_shift", 1.15),
    )
    ref.set_timesteps(sigmas=np.linspace(1.0, 1 / 5, 5), device="cpu", mu=mu)
    assert torch.equal(sched.timesteps, ref.timesteps) and torch.equal(sched.sigmas, ref.sigmas)


def test_plan_on_the_meta_device(built):
    """A plan traces the network on the meta device, where the caption lengths (mask values) are unknown: every
    padded token counted; a Hessian-vector product's trace runs the refiner's attention on the meta mask."""
    from flatcheck.footprint import call_bytes, meta_copy

    den = denoiser(built)
    meta = meta_copy(den)
    params = [p for p in meta.net.parameters()]
    assert call_bytes(meta, params, "forward", 2, guided=True) > 0
    assert call_bytes(meta, params, "hvp", 2) > 0
