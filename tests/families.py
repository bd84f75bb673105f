"""Tiny random-weight diffusers pipelines of every family we audit, built offline.

`build(family, root)` writes `root / family` with `save_pretrained(..., safe_serialization=True)`;
`load_pipeline(path, family)` loads it back (local files only, float32, CPU);
`pipeline_images(pipe, family, ...)` generates through the pipeline's own `__call__`.

Configs follow the `get_dummy_components()` of diffusers' own pipeline tests (shrunk where noted)
so that each pipeline has 45k-90k parameters (sd3 95k, flux 125k). Every component is
built right after `torch.manual_seed(0)`, so two builds give the same weights. Tokenizers are made
here from handmade vocabularies: nothing is downloaded.

Every family makes 3 x 16 x 16 images (in [0, 1]):

family            pipeline                   denoiser                                   scheduler
class-unet        DDPMPipeline               UNet2DModel 3ch 16px, num_class_embeds 10  DDPM eps
learned-variance  DDPMPipeline               UNet2DModel 3 -> 6ch (eps, var) 16px       DDPM eps, learned_range
ldm               LDMPipeline                UNet2DModel on VQModel latents 3x8x8       DDIM eps
sd                StableDiffusionPipeline    UNet2DConditionModel, KL latents 4x8x8     DDIM eps
sdxl              StableDiffusionXLPipeline  UNet2DConditionModel text_time, 4x8x8      EulerDiscrete eps
pixart            PixArtAlphaPipeline        PixArtTransformer2DModel 4 -> 8ch, 4x8x8   DDIM eps
dit               DiTPipeline                DiTTransformer2DModel 4 -> 8ch, 4x8x8      DDIM eps
sd3               StableDiffusion3Pipeline   SD3Transformer2DModel patch 2, 4x8x8       FlowMatchEuler, shift 3
flux              FluxPipeline               FluxTransformer2DModel, 4x8x8 packed 16x16 FlowMatchEuler, dynamic shift

The last two (FLOW_FAMILIES) are rectified-flow models: the denoiser predicts a velocity, the
schedule is in sigmas in [0, 1] (timestep = 1000 * sigma), and the VAE latents are shifted as well as
scaled (latents / scaling_factor + shift_factor before decoding).

Quirks found with diffusers 0.42.1 / transformers 5.x are noted next to each family below.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

FAMILIES = ("class-unet", "learned-variance", "ldm", "sd", "sdxl", "pixart", "dit", "sd3", "flux")

# Families with a fixture module of their own (tests/fixtures/<name>.py: NAME, PIPELINE, TRUTH, SAMPLE_SIZE,
# DEFAULT_GUIDANCE, build, load, pipeline_images), registered at the end of this file (they import it).
FIXTURES: dict = {}

# Rectified-flow families (FlowMatchEulerDiscreteScheduler, velocity prediction).
FLOW_FAMILIES = ("sd3", "flux")

DEFAULT_PROMPTS = ("a photo of a cat", "a red car on a road", "a drawing of a house", "a dog in the snow")

# Class names of the class-conditional families (CIFAR-10 order). The DiT pipeline stores them as
# `id2label`; class-unet has no place for them (DDPMPipeline keeps no labels).
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ID2LABEL = {i: name for i, name in enumerate(CLASS_NAMES)}

# The pipeline class each family is saved as (model_index.json `_class_name`); every name resolves
# with getattr(diffusers, name), LDMPipeline included (it lives in diffusers.pipelines.deprecated
# but is still exported at the top level).
PIPELINE_CLASS = {
    "class-unet": "DDPMPipeline",
    "learned-variance": "DDPMPipeline",
    "ldm": "LDMPipeline",
    "sd": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "pixart": "PixArtAlphaPipeline",
    "dit": "DiTPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "flux": "FluxPipeline",
}

IMAGE_SIZE = 16  # every family generates 3 x 16 x 16 images
IMAGE_CHANNELS = 3

# Guidance scale each pipeline uses when none is given (None: the pipeline takes no guidance).
DEFAULT_GUIDANCE = {
    "class-unet": None,
    "learned-variance": None,
    "ldm": None,
    "sd": 7.5,
    "sdxl": 5.0,
    "pixart": 4.5,
    "dit": 4.0,
    "sd3": 7.0,  # classifier-free guidance (2N rows) when > 1
    "flux": 3.5,  # embedded guidance: a transformer input, one pass (FLUX.1-dev's default)
}

_TEXT_FAMILIES = ("sd", "sdxl", "pixart", "sd3", "flux")


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")


# --------------------------------------------------------------------------------------------
# Tokenizers, from handmade vocabularies
# --------------------------------------------------------------------------------------------


def _prompt_words() -> list[str]:
    return sorted({w for p in DEFAULT_PROMPTS for w in p.lower().split()})


def _bpe_segment(word_pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges (lowest rank first) to a list of symbols, as `tokenizers` does."""
    pieces = list(word_pieces)
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(pieces, pieces[1:]))]
        pairs = [(r, i) for r, i in pairs if r is not None]
        if not pairs:
            break
        _, i = min(pairs)
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style byte-level BPE vocabulary in which each word of DEFAULT_PROMPTS is one token.

    Vocabulary: a-z, 0-9 and ,.!?'-:; alone and with </w> (so any plain lowercase prompt tokenizes;
    other characters map to the unk token, which is <|endoftext|> as in CLIP, and CLIP pools at the
    first <|endoftext|>), one token per merge, then
    `<|startoftext|>` and `<|endoftext|>` last (as in real CLIP, so `argmax(input_ids)` finds the
    end token). Merges are added word by word at the lowest priority, after simulating the merges
    already there, so a later word never breaks an earlier one apart.
    """
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789,.!?'-:;")
    vocab: dict[str, int] = {}
    for c in letters:
        vocab.setdefault(c, len(vocab))
    for c in letters:
        vocab.setdefault(c + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in _prompt_words():
        pieces = _bpe_segment([*word[:-1], word[-1] + "</w>"], ranks)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            pieces = [pair[0] + pair[1], *pieces[2:]]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def make_clip_tokenizer():
    """CLIPTokenizer from the handmade vocabulary and merges of `clip_vocab_and_merges` (the
    contents of a vocab.json + merges.txt), model_max_length 77.

    Quirks (transformers 5.x): `CLIPTokenizer(vocab_file=..., merges_file=...)` silently ignores the
    files and gives a 3-token vocabulary. `CLIPTokenizer.from_pretrained(folder)` on a folder with
    vocab.json + merges.txt works, but its saved tokenizer_config.json then carries stray
    `is_local` / `local_files_only` keys, so we pass the same data in memory (`merges` as a list of
    pairs: "a b" strings are refused). Without `model_max_length` it is 1e30, and SD pipelines pad to
    `tokenizer.model_max_length`. `save_pretrained` writes only tokenizer.json +
    tokenizer_config.json (no vocab.json / merges.txt), so the saved tokenizer needs the
    tokenizers-backed CLIPTokenizer of transformers 5 (or CLIPTokenizerFast in 4.x).
    """
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def t5_vocab() -> list[tuple[str, float]]:
    """A T5-style Unigram vocabulary: <pad>=0, </s>=1, <unk>=2, the space piece, one piece per
    prompt word, then single letters (so unknown lowercase words spell out letter by letter)."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -1.0) for w in _prompt_words()]
    vocab += [(chr(c), -5.0) for c in range(ord("a"), ord("z") + 1)]
    return vocab


def make_t5_tokenizer():
    """T5Tokenizer (tokenizers-backed Unigram in transformers 5) from an in-memory vocabulary, no
    sentinel tokens (extra_ids=0). Round-trips through save_pretrained (tokenizer.json +
    tokenizer_config.json; there is no spiece.model, so transformers 4's slow T5Tokenizer could not
    load it, 4's T5TokenizerFast could)."""
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=t5_vocab(), extra_ids=0, model_max_length=512)


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


def _seeded(factory, *args, **kwargs):
    torch.manual_seed(0)
    return factory(*args, **kwargs)


def _pixel_unet(**overrides):
    from diffusers import UNet2DModel

    config = dict(
        sample_size=IMAGE_SIZE,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
    )
    config.update(overrides)
    return _seeded(UNet2DModel, **config).eval()


def _kl_vae(**overrides):
    """AutoencoderKL as in diffusers' SD test: 2 blocks -> spatial factor 2, 4 latent channels.
    (diffusers' PixArt/DiT/SD3/Flux tests use a 1-block AutoencoderKL, factor 1; we use this one
    for every latent family so all images are 16 px.) `overrides` (the flow families) change the
    config: no quant convs, and a nonzero shift_factor."""
    from diffusers import AutoencoderKL

    config = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(4, 8),
        latent_channels=4,
        norm_num_groups=2,
        sample_size=IMAGE_SIZE,
    )
    config.update(overrides)
    return _seeded(AutoencoderKL, **config).eval()


def _clip_text_config(hidden_size: int, **extra):
    from transformers import CLIPTextConfig

    vocab, _ = clip_vocab_and_merges()
    eos = vocab["<|endoftext|>"]
    return CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        layer_norm_eps=1e-5,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=eos,  # != 2, so CLIP pools at the first eos token, not at argmax(ids)
        pad_token_id=eos,
        **extra,
    )


def _t5_encoder(tokenizer):
    """Tiny T5EncoderModel (d_model 32) over the vocabulary of `make_t5_tokenizer`."""
    from transformers import T5Config, T5EncoderModel

    t5_config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        feed_forward_proj="relu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return _seeded(T5EncoderModel, t5_config).eval()


def _build_pipeline(family: str):
    import diffusers

    if family == "class-unet":
        # DDPMPipeline(unet, scheduler). Quirk: DDPMPipeline.__call__ calls unet(x, t) with no
        # class_labels, and UNet2DModel raises "class_labels should be provided when doing class
        # conditioning": pipeline_images runs DDPMPipeline's loop itself for this family.
        unet = _pixel_unet(num_class_embeds=len(CLASS_NAMES))
        scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
        return diffusers.DDPMPipeline(unet=unet, scheduler=scheduler)

    if family == "learned-variance":
        # DDPMPipeline(unet, scheduler); the unet predicts [eps, v] (6 channels);
        # DDPMScheduler.step splits the output itself when variance_type is "learned_range".
        unet = _pixel_unet(out_channels=6)
        scheduler = diffusers.DDPMScheduler(
            num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon", variance_type="learned_range"
        )
        return diffusers.DDPMPipeline(unet=unet, scheduler=scheduler)

    if family == "ldm":
        # LDMPipeline(vqvae, unet, scheduler); VQModel as in diffusers' LDM super-resolution test
        # (2 blocks -> factor 2, 3 latent channels), narrower; DDIM betas as CompVis/ldm-celebahq-256.
        unet = _pixel_unet(sample_size=IMAGE_SIZE // 2)
        vqvae = _seeded(
            diffusers.VQModel,
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(8, 16),
            latent_channels=3,
            num_vq_embeddings=64,
            norm_num_groups=4,
            sample_size=IMAGE_SIZE,
        ).eval()
        scheduler = diffusers.DDIMScheduler(
            num_train_timesteps=1000,
            beta_start=0.0015,
            beta_end=0.0195,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
        )
        return diffusers.LDMPipeline(vqvae=vqvae, unet=unet, scheduler=scheduler)

    if family == "sd":
        # StableDiffusionPipeline as in diffusers' SD test, with sample_size 8 and
        # cross_attention_dim 32 (= CLIP hidden size).
        from transformers import CLIPTextModel

        unet = _seeded(
            diffusers.UNet2DConditionModel,
            sample_size=IMAGE_SIZE // 2,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(4, 8),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=2,
        ).eval()
        # steps_offset=1 as in real SD checkpoints: with diffusers' test value 0 the pipeline's
        # __init__ warns and rewrites the scheduler config to 1 anyway.
        scheduler = diffusers.DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )
        text_encoder = _seeded(CLIPTextModel, _clip_text_config(32)).eval()
        return diffusers.StableDiffusionPipeline(
            vae=_kl_vae(),
            text_encoder=text_encoder,
            tokenizer=make_clip_tokenizer(),
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            image_encoder=None,
            requires_safety_checker=False,
        )

    if family == "sdxl":
        # StableDiffusionXLPipeline as in diffusers' SDXL test (sample_size 8, 2 text-encoder layers
        # instead of 5, the SD test's small VAE). add-embedding input: 6 time ids x 8 + 32 (pooled
        # projection of text_encoder_2) = 80; cross_attention_dim = 32 + 32 (both encoders).
        from transformers import CLIPTextModel, CLIPTextModelWithProjection

        unet = _seeded(
            diffusers.UNet2DConditionModel,
            sample_size=IMAGE_SIZE // 2,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(2, 4),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=80,
            cross_attention_dim=64,
            norm_num_groups=1,
        ).eval()
        scheduler = diffusers.EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            steps_offset=1,
            beta_schedule="scaled_linear",
            timestep_spacing="leading",
        )
        config = _clip_text_config(32, hidden_act="gelu", projection_dim=32)
        text_encoder = _seeded(CLIPTextModel, config).eval()
        text_encoder_2 = _seeded(CLIPTextModelWithProjection, config).eval()
        return diffusers.StableDiffusionXLPipeline(
            vae=_kl_vae(),
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=make_clip_tokenizer(),
            tokenizer_2=make_clip_tokenizer(),
            unet=unet,
            scheduler=scheduler,
            image_encoder=None,
            feature_extractor=None,
            force_zeros_for_empty_prompt=True,
            add_watermarker=False,
        )

    if family == "pixart":
        # PixArtAlphaPipeline as in diffusers' PixArt test (transformer sample_size 8, patch 2,
        # learned sigma: out_channels 8), tiny T5 encoder (d_model 32 = caption_channels).
        transformer = _seeded(
            diffusers.PixArtTransformer2DModel,
            sample_size=IMAGE_SIZE // 2,
            num_layers=2,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=3,
            caption_channels=32,
            in_channels=4,
            cross_attention_dim=24,
            out_channels=8,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        ).eval()
        tokenizer = make_t5_tokenizer()
        text_encoder = _t5_encoder(tokenizer)
        return diffusers.PixArtAlphaPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=_kl_vae(),
            transformer=transformer,
            scheduler=diffusers.DDIMScheduler(),
        )

    if family == "dit":
        # DiTPipeline as in diffusers' DiT test, but sample_size 8 / patch 2 (16 px images).
        # num_embeds_ada_norm must stay 1000: DiTPipeline hard-codes class 1000 as the null
        # (unconditional) label, so the label table has 1001 rows although only 10 are used.
        transformer = _seeded(
            diffusers.DiTTransformer2DModel,
            sample_size=IMAGE_SIZE // 2,
            num_layers=2,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=2,
            in_channels=4,
            out_channels=8,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_zero",
            norm_elementwise_affine=False,
        ).eval()
        return diffusers.DiTPipeline(
            transformer=transformer, vae=_kl_vae(), scheduler=diffusers.DDIMScheduler(), id2label=ID2LABEL
        )

    if family == "sd3":
        # StableDiffusion3Pipeline as in diffusers' SD3 test (1 layer, 4 heads x 8 = 32 = caption
        # projection, joint_attention_dim 32, pooled 64 = 2 x 32 CLIP projections), but sample_size 8
        # with patch 2 as the real SD3 (4x4 = 16 image tokens) and pos_embed_max_size 8 (the default
        # 96 stores a 96x96 position table; 8 still exercises SD3's center crop of that table).
        # text_encoder_3 / tokenizer_3 (T5) are None: the pipeline then uses zeros
        # [N, max_sequence_length, joint_attention_dim] for the T5 part of the sequence.
        # Quirk (as in diffusers' test): the two CLIP hidden states concatenate to 64 wide and are
        # F.pad-ded to the T5 width 32 with a negative pad, i.e. cropped: only text_encoder's
        # penultimate states reach the sequence; text_encoder_2 enters through its pooled projection.
        from transformers import CLIPTextModelWithProjection

        transformer = _seeded(
            diffusers.SD3Transformer2DModel,
            sample_size=IMAGE_SIZE // 2,
            patch_size=2,
            in_channels=4,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=32,
            pooled_projection_dim=64,
            out_channels=4,
            pos_embed_max_size=8,
        ).eval()
        config = _clip_text_config(32, hidden_act="gelu", projection_dim=32)
        text_encoder = _seeded(CLIPTextModelWithProjection, config).eval()
        text_encoder_2 = _seeded(CLIPTextModelWithProjection, config).eval()
        # shift 3.0 as stabilityai/stable-diffusion-3-medium-diffusers' scheduler_config.json.
        scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
        # VAE: no quant convs and shift/scale as diffusers' SD3 test (the real SD3 VAE: 1.5305, 0.0609).
        vae = _kl_vae(use_quant_conv=False, use_post_quant_conv=False, scaling_factor=1.5035, shift_factor=0.0609)
        return diffusers.StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=scheduler,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=make_clip_tokenizer(),
            text_encoder_2=text_encoder_2,
            tokenizer_2=make_clip_tokenizer(),
            text_encoder_3=None,
            tokenizer_3=None,
            image_encoder=None,
            feature_extractor=None,
        )

    if family == "flux":
        # FluxPipeline as in diffusers' Flux test (1 double + 1 single block, 2 heads x 16, rope axes
        # 4+4+8 = 16, joint_attention_dim 32 = T5 d_model, pooled 32 = CLIP hidden size), but 4
        # latent channels packed 2x2 -> in_channels 16, and guidance_embeds=True (FLUX.1-dev; the
        # test's model is schnell-like). The transformer has no sample_size: the pipeline defaults to
        # 128 * vae_scale_factor px, so pipeline_images passes height=width=16 (latents
        # 2 * (16 // (2 * 2)) = 8 -> 4x4 = 16 packed tokens of 16 channels).
        from transformers import CLIPTextModel

        transformer = _seeded(
            diffusers.FluxTransformer2DModel,
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=True,
            axes_dims_rope=(4, 4, 8),
        ).eval()
        text_encoder = _seeded(CLIPTextModel, _clip_text_config(32, hidden_act="gelu")).eval()
        tokenizer_2 = make_t5_tokenizer()
        # Scheduler config of black-forest-labs/FLUX.1-dev (shift 3.0 is unused with dynamic shifting).
        scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000,
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
        # VAE: no quant convs, scale/shift of the FLUX.1 VAE (0.3611, 0.1159).
        vae = _kl_vae(use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159)
        return diffusers.FluxPipeline(
            scheduler=scheduler,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=make_clip_tokenizer(),
            text_encoder_2=_t5_encoder(tokenizer_2),
            tokenizer_2=tokenizer_2,
            transformer=transformer,
            image_encoder=None,
            feature_extractor=None,
        )

    raise AssertionError(family)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def build(family: str, root: Path) -> Path:
    """Build the tiny `family` pipeline and save it to `root / family` (safetensors only)."""
    if family in FIXTURES:
        return FIXTURES[family].build(root)
    _check_family(family)
    folder = Path(root) / family
    pipe = _build_pipeline(family)
    pipe.save_pretrained(folder, safe_serialization=True)
    if family == "dit":
        # Quirk: DiTPipeline.__init__ takes id2label but does not register it, so save_pretrained
        # drops it. from_pretrained does pass an "id2label" key of model_index.json to __init__
        # (JSON string keys: it logs "Expected types for id2label ..." but works), which is where
        # Hub DiT checkpoints keep it (as far as we know; not checkable offline).
        index_path = folder / "model_index.json"
        index = json.loads(index_path.read_text(encoding="utf-8"))
        index["id2label"] = {str(k): v for k, v in ID2LABEL.items()}
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def load_pipeline(path: Path, family: str):
    """Load the pipeline saved by `build` (local files only), float32 on CPU, progress bars off."""
    if family in FIXTURES:
        return FIXTURES[family].load(path)
    import diffusers

    _check_family(family)
    extra = {}
    if family == "sd3":
        # Quirk: save_pretrained writes text_encoder_3 / tokenizer_3 as [null, null] (logging
        # "self.text_encoder_3=None ... cannot be saved"), and from_pretrained then raises
        # "ValueError: Pipeline ... expected [..., 'text_encoder_3', ..., 'tokenizer_3', ...], but only
        # {...} were passed" (they are not in StableDiffusion3Pipeline._optional_components): they
        # must be passed as None explicitly.
        extra = {"text_encoder_3": None, "tokenizer_3": None}
    pipe = diffusers.DiffusionPipeline.from_pretrained(
        Path(path),
        local_files_only=True,
        dtype=torch.float32,
        **extra,  # torch_dtype=: deprecated in 0.42
    )
    expected = getattr(diffusers, PIPELINE_CLASS[family])
    if type(pipe) is not expected:
        raise TypeError(f"{path} loaded as {type(pipe).__name__}, expected {expected.__name__}")
    if family == "dit" and not pipe.labels:
        # A folder without id2label in model_index.json: restore our labels.
        pipe = diffusers.DiTPipeline(
            transformer=pipe.transformer, vae=pipe.vae, scheduler=pipe.scheduler, id2label=ID2LABEL
        )
    pipe.to("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _to_nchw(images) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images.detach().to(torch.float32).cpu()
    array = np.asarray(images, dtype=np.float32)  # NHWC from output_type="np"
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def _ddpm_loop_with_labels(pipe, generators, steps: int, class_labels: list[int] | None) -> torch.Tensor:
    """DDPMPipeline.__call__ (diffusers 0.42.1) step for step, plus `class_labels` to the unet:
    same noise draw (randn_tensor with the generator list), same scheduler calls (step gets the
    generators for its variance noise), same (x / 2 + 0.5).clamp(0, 1) at the end.
    `class_labels=None` gives DDPMPipeline's own call (an unconditional UNet2DModel raises if
    it is given labels)."""
    from diffusers.utils.torch_utils import randn_tensor

    unet = pipe.unet
    size = unet.config.sample_size
    shape = (len(generators), unet.config.in_channels, *((size, size) if isinstance(size, int) else size))
    device = pipe._execution_device
    image = randn_tensor(shape, generator=generators, device=device, dtype=unet.dtype)
    extra = (
        {} if class_labels is None else {"class_labels": torch.tensor(class_labels, device=device, dtype=torch.long)}
    )
    pipe.scheduler.set_timesteps(steps)
    for t in pipe.scheduler.timesteps:
        model_output = unet(image, t, **extra).sample
        image = pipe.scheduler.step(model_output, t, image, generator=generators).prev_sample
    return (image / 2 + 0.5).clamp(0, 1).cpu()


def text_pipeline_images(pipe, *, seeds, steps, guidance_scale=None, prompts=None, **call) -> torch.Tensor:
    """A text-to-image pipeline's own `__call__`, one image per seed (one generator each, so image i depends only
    on seeds[i]), `num_inference_steps=steps`, `output_type="np"`; prompts default to DEFAULT_PROMPTS cycled;
    guidance_scale None: the pipeline's default. `call`: the family's own arguments (size, negative prompt...).
    Returns float32 [N, C, H, W] in [0, 1]. The fixture modules (tests/fixtures/) generate through it."""
    seeds = [int(s) for s in seeds]
    n = len(seeds)
    if n == 0:
        raise ValueError("seeds is empty")
    prompts = [DEFAULT_PROMPTS[i % len(DEFAULT_PROMPTS)] for i in range(n)] if prompts is None else list(prompts)
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts for {n} seeds: give one prompt per seed")
    guidance = {} if guidance_scale is None else {"guidance_scale": float(guidance_scale)}
    out = pipe(
        prompt=prompts,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        num_inference_steps=int(steps),
        output_type="np",
        **guidance,
        **call,
    )
    return _to_nchw(out.images)


def pipeline_images(
    pipe,
    family: str,
    *,
    seeds: list[int],
    steps: int,
    guidance_scale: float | None,
    prompts=None,
    class_labels=None,
    scheduler=None,
) -> torch.Tensor:
    """Generate one image per seed with the pipeline's own `__call__`; float32 [N, 3, 16, 16] in [0, 1].

    Every call passes `generator=[torch.Generator().manual_seed(s) for s in seeds]` (one generator
    per image, so image i depends only on seeds[i]), `num_inference_steps=steps` and
    `output_type="np"` (NHWC float32, converted here to NCHW; "np" is used everywhere because
    LDMPipeline ignores "pt" and always returns numpy).
    `guidance_scale=None` uses the pipeline's default (DEFAULT_GUIDANCE); the unconditional
    families (class-unet, learned-variance, ldm) take no guidance and refuse a number.
    `prompts` (text families) default to DEFAULT_PROMPTS cycled to len(seeds); `class_labels`
    (dit, class-unet) default to [i % 10]. `scheduler`, if given, replaces `pipe.scheduler` for
    this call only (the pipeline's own scheduler is put back afterwards).

    Exact arguments per family:
    - class-unet: DDPMPipeline.__call__ cannot pass class labels (the unet raises ValueError), so
      this runs `_ddpm_loop_with_labels`, a copy of DDPMPipeline's loop that adds class_labels.
    - learned-variance: pipe(batch_size=N, generator=gens, num_inference_steps=steps, output_type="np").
      DDPMPipeline accepts the generator list (randn_tensor and DDPMScheduler.step both take it).
    - ldm: pipe(batch_size=N, generator=gens, num_inference_steps=steps, output_type="np"); eta 0,
      LDMPipeline does not pass the generators to scheduler.step (no noise there with DDIM eta 0).
    - sd: pipe(prompt=prompts, negative_prompt=None, generator=gens, num_inference_steps=steps,
      guidance_scale=g, output_type="np"); negative None -> "" embeddings.
    - sdxl: the same arguments; negative None with force_zeros_for_empty_prompt -> zero negative
      embeddings; add_watermarker=False was set at build time (it is off anyway without
      invisible-watermark, but the watermark would break 16 px images).
    - pixart: pipe(prompt=prompts, negative_prompt="", ..., use_resolution_binning=False,
      clean_caption=False). negative_prompt=None is NOT accepted (encode_prompt tokenizes it, its
      default is ""); resolution binning would resize to the 256/512/1024 aspect table; clean_caption
      defaults to True and needs bs4 + ftfy (it only warns and falls back without them).
    - dit: pipe(class_labels=labels, generator=gens, num_inference_steps=steps, guidance_scale=g,
      output_type="np"). With guidance > 1 DiT runs 2N rows with null class 1000; the learned-sigma
      half of the output is dropped before scheduler.step.
    - sd3: pipe(prompt=prompts, negative_prompt=None, generator=gens, num_inference_steps=steps,
      guidance_scale=g, output_type="np"); height/width default to transformer sample_size 8 x
      vae_scale_factor 2 = 16. negative None -> "" encoded (not zeros); CFG (2N rows, [negative;
      positive]) when g > 1. max_sequence_length stays 256: with no T5 that is 256 zero rows after
      CLIP's 77 (sequence 333). FlowMatchEuler's step takes no generator (stochastic_sampling off).
    - flux: pipe(prompt=prompts, height=16, width=16, generator=gens, num_inference_steps=steps,
      guidance_scale=g, output_type="np"). height/width are required in practice: without them the
      pipeline makes default_sample_size 128 x vae_scale_factor 2 = 256 px images. g is the
      embedded guidance (one pass, no negative prompt; true_cfg_scale stays 1.0). max_sequence_length
      stays 512 (T5 runs on 512 tokens, fast at this size).
    """
    if family in FIXTURES:
        if class_labels is not None or scheduler is not None:
            raise ValueError(f"family {family!r}: its fixture takes seeds, steps, guidance_scale and prompts")
        return FIXTURES[family].pipeline_images(
            pipe, seeds=seeds, steps=steps, guidance_scale=guidance_scale, prompts=prompts
        )
    _check_family(family)
    seeds = [int(s) for s in seeds]
    n = len(seeds)
    if n == 0:
        raise ValueError("seeds is empty")
    generators = [torch.Generator().manual_seed(s) for s in seeds]

    if family in ("class-unet", "learned-variance", "ldm") and guidance_scale is not None:
        raise ValueError(f"family {family!r} takes no guidance_scale (pass None)")
    if family in _TEXT_FAMILIES:
        prompts = [DEFAULT_PROMPTS[i % len(DEFAULT_PROMPTS)] for i in range(n)] if prompts is None else list(prompts)
        if len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} seeds: give one prompt per seed")
    elif prompts is not None:
        raise ValueError(f"family {family!r} takes no prompts")
    if family in ("dit", "class-unet"):
        class_labels = (
            [i % len(CLASS_NAMES) for i in range(n)] if class_labels is None else [int(c) for c in class_labels]
        )
        if len(class_labels) != n:
            raise ValueError(f"{len(class_labels)} class labels for {n} seeds: give one label per seed")
    elif class_labels is not None:
        raise ValueError(f"family {family!r} takes no class_labels")

    guidance = {} if guidance_scale is None else {"guidance_scale": float(guidance_scale)}
    common = dict(generator=generators, num_inference_steps=int(steps), output_type="np")

    original_scheduler = pipe.scheduler
    if scheduler is not None:
        pipe.scheduler = scheduler
    try:
        if family == "class-unet":
            return _ddpm_loop_with_labels(pipe, generators, int(steps), class_labels)
        if family in ("learned-variance", "ldm"):
            out = pipe(batch_size=n, **common)
        elif family in ("sd", "sdxl"):
            out = pipe(prompt=prompts, negative_prompt=None, **guidance, **common)
        elif family == "pixart":
            out = pipe(
                prompt=prompts,
                negative_prompt="",
                use_resolution_binning=False,
                clean_caption=False,
                **guidance,
                **common,
            )
        elif family == "sd3":
            out = pipe(prompt=prompts, negative_prompt=None, **guidance, **common)
        elif family == "flux":
            out = pipe(prompt=prompts, height=IMAGE_SIZE, width=IMAGE_SIZE, **guidance, **common)
        else:  # dit
            out = pipe(class_labels=class_labels, **guidance, **common)
    finally:
        pipe.scheduler = original_scheduler
    return _to_nchw(out.images)


# -------------------------------------------------------------------------------------------- fixture modules
def _fixture_modules() -> dict:
    from .fixtures import auraflow, chroma, lumina2, sana  # noqa: F401 - the line below names those that run

    # One entry per family: its module, once its family file exists.
    return {m.NAME: m for m in (chroma, auraflow, sana, lumina2)}


FIXTURES.update(_fixture_modules())
ALL_FAMILIES = FAMILIES + tuple(FIXTURES)
PIPELINE_CLASS.update({name: m.PIPELINE for name, m in FIXTURES.items()})
DEFAULT_GUIDANCE.update({name: m.DEFAULT_GUIDANCE for name, m in FIXTURES.items()})
