"""Chroma's family (flatcheck/families/chroma.py) against ChromaPipeline's own code, on the tiny fixture.

tests/test_families.py checks the default guidance (5.0) end to end; here: the sampler at other guidance
scales (1: one pass; 0.5: the pipeline runs no CFG below 1), that guidance moves flatcheck's samples as it
moves the pipeline's, each piece of the network call (packing, image ids, timestep, the float attention
mask, prompt states and the null row) next to the pipeline's helpers, the sampler set-up with and without
dynamic shifting, and a plan on the meta device.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flatcheck.cli import run
from flatcheck.core.checkpoint import load
from flatcheck.core.conditioning import NULL, ConditionOptions
from flatcheck.core.denoiser import Denoiser
from flatcheck.core.sampling import make_sampler, sample
from flatcheck.core.seeds import sample_seed
from flatcheck.families import family_of

from . import families  # first: it imports the fixture modules
from .fixtures import chroma as fx

SEED, N, STEPS = 3, 2, 3


@pytest.fixture(scope="module")
def built(tmp_path_factory, family_dir):
    prompts = tmp_path_factory.mktemp("chroma") / "prompts.txt"
    prompts.write_text("\n".join(families.DEFAULT_PROMPTS) + "\n")
    return family_dir("chroma"), prompts


@pytest.fixture(scope="module")
def pipe(built):
    return fx.load(built[0])


@pytest.fixture(scope="module")
def images(built, pipe):
    """guidance -> (flatcheck's pixels, the pipeline's), computed once per scale."""
    path, prompts = built
    cache = {}

    def get(g):
        if g not in cache:
            den = Denoiser.from_checkpoint(
                load(str(path)), ConditionOptions(prompts=str(prompts), sample_size=fx.SAMPLE_SIZE, guidance_scale=g)
            )
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


@pytest.mark.parametrize("guidance", [1.0, 0.5])
def test_sampler_pixels_equal_the_pipeline_at_other_guidance(images, guidance):
    ours, theirs = images(guidance)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=0)


def test_guidance_moves_samples_as_it_moves_the_pipelines(images):
    (o5, t5), (o1, t1) = images(None), images(1.0)
    ours, theirs = (o5 - o1).flatten(), (t5 - t1).flatten()
    assert theirs.abs().max() > 0.05  # guidance 5 really changes the images
    assert torch.nn.functional.cosine_similarity(ours, theirs, dim=0) > 0.999
    torch.testing.assert_close(ours.norm(), theirs.norm(), rtol=1e-3, atol=0)


def test_guidance_below_one_is_no_cfg(built):
    """ChromaPipeline guides only when guidance_scale > 1 (as every diffusers pipeline): flatcheck runs the
    conditional pass alone at 0.5 and its report says so."""
    den = Denoiser.from_checkpoint(
        load(str(built[0])), ConditionOptions(prompts=str(built[1]), sample_size=8, guidance_scale=0.5)
    )
    assert den.conditioning.guidance_scale == 0.5 and not den.conditioning.guided
    assert "no CFG pass" in den.conditioning.describe()["guidance_source"]


@torch.no_grad()
def test_the_network_call_is_the_pipelines(built, pipe):
    path, prompts = built
    den = Denoiser.from_checkpoint(load(str(path)), ConditionOptions(prompts=str(prompts), sample_size=8))
    fam, c = den.family, den.conditioning
    assert fam is family_of("ChromaTransformer2DModel", {}) and fam.name == "chroma"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([1000.0, 666.6666, 3.0])
    ids = torch.tensor([0, 1, NULL])
    kwargs = fam.call_kwargs(den.net, x, t, c.kwargs(ids, x.device, x.dtype))
    # packing, its inverse, and the image position ids: the pipeline's helpers
    packed = pipe._pack_latents(x, 3, 4, 8, 8)
    assert torch.equal(kwargs["hidden_states"], packed)
    assert torch.equal(fam.output(packed, x), x)
    vsf = pipe.vae_scale_factor
    assert torch.equal(fam.output(packed, x), pipe._unpack_latents(packed, 8 * vsf, 8 * vsf, vsf))
    assert torch.equal(kwargs["img_ids"], pipe._prepare_latent_image_ids(3, 4, 4, x.device, x.dtype))
    # the timestep: t in the latents' dtype / 1000, as the pipeline passes it (exactly)
    assert torch.equal(kwargs["timestep"], t.to(torch.float32) / 1000)
    # prompts, the null row (the encoded "" of the pipeline's CFG) and their float masks, image tokens appended
    pe, txt_ids, pm, ne, neg_ids, nm = pipe.encode_prompt(
        prompt=list(c.names[:2]), negative_prompt=None, device=x.device, do_classifier_free_guidance=True
    )
    assert torch.equal(kwargs["encoder_hidden_states"], torch.cat([pe, ne[:1]]))
    assert torch.equal(kwargs["txt_ids"], txt_ids) and torch.equal(txt_ids, neg_ids)
    mask = pipe._prepare_attention_mask(3, 16, x.dtype, torch.cat([pm, nm[:1]]))
    assert kwargs["attention_mask"].dtype == torch.float32  # additive: a bool mask would change the output
    assert torch.equal(kwargs["attention_mask"], mask)
    assert int(nm[0].sum()) == 2  # "" is </s> plus the one kept pad token
    # the call itself: the transformer's velocity, unpacked, no sign flip
    out = den.model_output(x, t, ids)
    raw = pipe.transformer(
        hidden_states=packed,
        timestep=t / 1000,
        encoder_hidden_states=kwargs["encoder_hidden_states"],
        txt_ids=txt_ids,
        img_ids=kwargs["img_ids"],
        attention_mask=mask,
        return_dict=False,
    )[0]
    assert torch.equal(out, pipe._unpack_latents(raw, 16, 16, vsf))


@pytest.mark.parametrize("dynamic", [False, True])
def test_sampler_setup_is_the_pipelines(built, dynamic):
    """Sigmas linspace(1, 1/steps, steps) and mu from the packed token count, as ChromaPipeline passes them
    (with dynamic shifting, FLUX.1-dev-style, mu matters)."""
    import diffusers
    from diffusers.pipelines.chroma.pipeline_chroma import calculate_shift, retrieve_timesteps

    extra = {"shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15} if dynamic else {}
    ours = diffusers.FlowMatchEulerDiscreteScheduler(**extra)
    theirs = diffusers.FlowMatchEulerDiscreteScheduler(**extra)
    steps, shape = 4, (4, 64, 48)
    family_of("ChromaTransformer2DModel", {}).set_timesteps(ours, steps, shape, {})
    cfg = theirs.config
    mu = calculate_shift(32 * 24, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
    retrieve_timesteps(theirs, steps, "cpu", sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    assert torch.equal(ours.timesteps, theirs.timesteps) and torch.equal(ours.sigmas, theirs.sigmas)


def test_plan_on_the_meta_device(built, tmp_path, capsys):
    """The plan encodes prompts on the meta device (T5 cannot: it reads its mask's values): exit 0 or 1, never 3."""
    out = tmp_path / "plan.json"
    code = run(
        [
            "plan",
            str(built[0]),
            "--quick",
            "--device",
            "cuda",
            "--memory",
            "80GB",
            "--sample-size",
            "8",
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
            str(out),
        ]
    )
    assert code in (0, 1), capsys.readouterr().err[-2000:]
    assert json.loads(out.read_text())["fits"] is (code == 0)
