"""Sana (flatcheck/families/sana.py) against SanaPipeline's own code, on the tiny fixture (tests/fixtures/sana.py).

test_families.py checks the default guidance; here: the sampler at guidance 1 (no CFG) and 2, the guidance's
effect, the prompt tables (instruction, null row, masks), the call (timestep x timestep_scale, velocity as
is), the DC-AE's real spatial factor, and the plan on the meta device.
"""

from __future__ import annotations

import json

import pytest
import torch

from flatcheck.core.checkpoint import load
from flatcheck.core.conditioning import ConditionOptions, pipeline_default
from flatcheck.core.denoiser import Denoiser
from flatcheck.core.sampling import make_sampler, sample
from flatcheck.core.seeds import sample_seed
from flatcheck.families import sana

from . import families

SEED, N, STEPS = 3, 4, 3


@pytest.fixture(scope="module")
def model(family_dir):
    return family_dir("sana")


@pytest.fixture(scope="module")
def ckpt(model):
    return load(str(model))


@pytest.fixture(scope="module")
def pipe(model):
    return families.load_pipeline(model, "sana")


@pytest.fixture(scope="module")
def images(ckpt, pipe):
    """guidance -> (flatcheck's pixels, the pipeline's), N images, STEPS steps, prompt i mod 8 (DEFAULT_PROMPTS)."""
    cache = {}

    def get(g):
        if g not in cache:
            den = Denoiser.from_checkpoint(ckpt, ConditionOptions(guidance_scale=g))
            ours = sample(den, make_sampler(den.scheduler, None), STEPS, N, SEED, batch_size=N)
            ours = (den.pixels(ours) / 2 + 0.5).clamp(0, 1)
            c = den.conditioning
            theirs = families.pipeline_images(
                pipe,
                "sana",
                seeds=[sample_seed(SEED, i) for i in range(N)],
                steps=STEPS,
                prompts=[c.names[i] for i in c.ids(SEED, range(N)).tolist()],
                guidance_scale=c.guidance_scale,
            )
            cache[g] = ours, theirs
        return cache[g]

    return get


@pytest.mark.parametrize("guidance", [None, 1.0, 2.0])
def test_sampler_pixels_equal_the_pipeline(images, guidance):
    """None: the pipeline's default 4.5 (CFG); 1: one conditional pass; 2: CFG at another scale."""
    ours, theirs = images(guidance)
    assert ours.shape == theirs.shape == (N, 3, 16, 16)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=0)


def test_guidance_moves_the_samples_as_the_pipeline_does(images):
    (ours_g, theirs_g), (ours_1, theirs_1) = images(None), images(1.0)
    effect, pipeline_effect = ours_g - ours_1, theirs_g - theirs_1
    assert pipeline_effect.abs().max() > 0.05  # guidance matters on this fixture...
    torch.testing.assert_close(effect, pipeline_effect, atol=4e-5, rtol=0)  # ...and the same way for both


def test_prompt_tables_are_the_pipelines(ckpt, pipe):
    """Rows: each prompt with __call__'s complex_human_instruction; the null row: the negative prompt "" without
    it; masks kept (int64, <bos> always on)."""
    den = Denoiser.from_checkpoint(ckpt, ConditionOptions())
    c = den.conditioning
    assert c.guidance_scale == 4.5 and c.guided and c.encoders == ("Gemma2Model",)
    instruction = pipeline_default("SanaPipeline", "complex_human_instruction")
    assert instruction  # the default the pipeline prepends
    pe, pm, ne, nm = pipe.encode_prompt(
        list(c.names),
        True,
        negative_prompt="",
        device=torch.device("cpu"),
        clean_caption=False,
        max_sequence_length=300,
        complex_human_instruction=instruction,
    )
    emb, mask = c.tables["encoder_hidden_states"], c.tables["encoder_attention_mask"]
    assert emb.shape == (len(c.names) + 1, 300, 8) and mask.dtype == torch.int64
    torch.testing.assert_close(emb[:-1], pe, atol=0, rtol=0)
    torch.testing.assert_close(emb[-1], ne[0], atol=0, rtol=0)
    assert torch.equal(mask[:-1], pm) and torch.equal(mask[-1], nm[0])
    assert mask[-1].tolist() == [1] + [0] * 299  # "" is <bos> alone
    plain = pipe.encode_prompt(list(c.names), False, device=torch.device("cpu"), complex_human_instruction=None)[0]
    assert not torch.allclose(plain, pe)  # the instruction does change the rows


def test_the_call_is_the_pipelines(ckpt):
    """timestep = t x config.timestep_scale as the pipeline passes it; the output is the velocity, unflipped."""
    den = Denoiser.from_checkpoint(ckpt, ConditionOptions(guidance_scale=1.0))
    net, c = den.net, den.conditioning
    x, t, ids = (
        torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)),
        torch.tensor([700.0, 46.75]),
        torch.tensor([0, 1]),
    )
    seen = []
    hook = net.register_forward_pre_hook(lambda m, a, k: seen.append(k["timestep"].clone()), with_kwargs=True)
    scale = net.config.timestep_scale
    try:
        with torch.no_grad():
            out = den.model_output(x, t, ids)
            direct = net(
                x,
                encoder_hidden_states=c.tables["encoder_hidden_states"][ids],
                encoder_attention_mask=c.tables["encoder_attention_mask"][ids],
                timestep=t * scale,
                return_dict=False,
            )[0]
            net.register_to_config(timestep_scale=0.5)
            den.model_output(x, t, ids)
    finally:
        net.register_to_config(timestep_scale=scale)
        hook.remove()
    assert torch.equal(out, direct)
    assert torch.equal(seen[0], t) and torch.equal(seen[2], t * 0.5)
    assert den.flow and den.prediction_type == "flow"


@pytest.mark.parametrize("layers", [(1, 0, 1), (1, 1, 1), (0, 1, 1), (2, 1, 0, 1)])
def test_dc_ae_factor_is_the_autoencoders_own(layers):
    """AutoencoderDC resamples in the blocks that have layers (and in its stem when the first has none):
    the family counts those, not 2 ** (blocks - 1) (the pipeline's vae_scale_factor)."""
    from diffusers import AutoencoderDC

    n = len(layers)
    torch.manual_seed(0)
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types="ResBlock",
        decoder_block_types="ResBlock",
        encoder_block_out_channels=(8,) * n,
        decoder_block_out_channels=(8,) * n,
        encoder_qkv_multiscales=((),) * n,
        decoder_qkv_multiscales=((),) * n,
        encoder_layers_per_block=layers,
        decoder_layers_per_block=layers,
        downsample_block_type="conv",
        upsample_block_type="interpolate",
    ).eval()
    factor = sana.FAMILY.vae_factor(vae.config)
    with torch.no_grad():
        assert vae.decode(torch.zeros(1, 4, 2, 2)).sample.shape[-1] == 2 * factor
        assert vae.encode(torch.zeros(1, 3, 32, 32)).latent.shape[-1] == 32 // factor
    assert sana.dc_ae_factor({"decoder_layers_per_block": (3,) * 6}) == 32  # DC-AE f32c32: Sana's


def test_fixture_factor_and_default_size(ckpt):
    assert sana.FAMILY.vae_factor(ckpt.vae.config) == 2 and ckpt.vae.spatial_compression_ratio == 4
    assert sana.FAMILY.default_sample_size(ckpt.denoiser.config) is None  # the config's sample_size (8) is used
    assert sana.FAMILY.default_sample_size({}) == 32  # 1024 px at DC-AE's 32


def test_planned_on_the_meta_device(model, cli):
    """The plan builds the pipeline on meta, Gemma2 included, and encodes the prompts there."""
    code, out, err = cli(
        "plan",
        model,
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
        "--quick",
        "--device",
        "cuda",
        "--memory",
        "80GB",
        "--json",
        "-",
    )
    assert code == 0 and json.loads(out)["fits"], err
