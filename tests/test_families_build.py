"""The tiny pipelines of tests/families.py build offline, save as safetensors, load and generate."""

from __future__ import annotations

import json

import pytest
import torch

from tests.families import (
    CLASS_NAMES,
    DEFAULT_GUIDANCE,
    DEFAULT_PROMPTS,
    FAMILIES,
    FLOW_FAMILIES,
    IMAGE_CHANNELS,
    IMAGE_SIZE,
    PIPELINE_CLASS,
    build,
    load_pipeline,
    make_clip_tokenizer,
    make_t5_tokenizer,
    pipeline_images,
)

WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".onnx", ".pkl"}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("family", FAMILIES)
def test_build_load_generate(family, tmp_path):
    import diffusers

    folder = build(family, tmp_path)
    assert folder == tmp_path / family

    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINE_CLASS[family]
    assert getattr(diffusers, index["_class_name"]).__name__ == PIPELINE_CLASS[family]
    components = {k: v for k, v in index.items() if isinstance(v, list) and v[0] is not None}
    assert {lib for lib, _ in components.values()} <= {"diffusers", "transformers"}

    weights = [p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    assert weights and all(p.suffix == ".safetensors" for p in weights), weights
    modules = {name for name, (lib, cls) in components.items() if not cls.endswith(("Scheduler", "Tokenizer"))}
    assert {p.parent.name for p in weights} == modules

    pipe = load_pipeline(folder, family)
    assert type(pipe).__name__ == PIPELINE_CLASS[family]
    images = pipeline_images(pipe, family, seeds=[0, 1], steps=2, guidance_scale=None)
    assert images.shape == (2, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    assert images.dtype == torch.float32
    assert torch.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 1
    assert not torch.equal(images[0], images[1])  # different seeds, different images

    again = pipeline_images(pipe, family, seeds=[0, 1], steps=2, guidance_scale=None)
    assert torch.equal(images, again)


def test_class_unet_needs_class_labels(tmp_path):
    pipe = load_pipeline(build("class-unet", tmp_path), "class-unet")
    unet = pipe.unet
    assert unet.config.num_class_embeds == len(CLASS_NAMES)
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        out = unet(x, 10, class_labels=torch.tensor([0, 9])).sample
        assert out.shape == x.shape
        other = unet(x, 10, class_labels=torch.tensor([1, 8])).sample
        assert not torch.allclose(out, other)
        # Why pipeline_images runs its own loop for this family: DDPMPipeline passes no labels.
        with pytest.raises(ValueError, match="class_labels"):
            unet(x, 10)
    a = pipeline_images(pipe, "class-unet", seeds=[0, 1], steps=2, guidance_scale=None, class_labels=[0, 1])
    b = pipeline_images(pipe, "class-unet", seeds=[0, 1], steps=2, guidance_scale=None, class_labels=[5, 6])
    assert not torch.allclose(a, b)


def test_labelled_ddpm_loop_matches_ddpm_pipeline(tmp_path):
    """The class-unet loop is DDPMPipeline.__call__ plus labels: without labels, on an
    unconditional unet, it gives exactly the pipeline's images."""
    from tests.families import _ddpm_loop_with_labels

    pipe = load_pipeline(build("learned-variance", tmp_path), "learned-variance")
    ours = _ddpm_loop_with_labels(pipe, [torch.Generator().manual_seed(s) for s in (3, 4)], 3, None)
    theirs = pipeline_images(pipe, "learned-variance", seeds=[3, 4], steps=3, guidance_scale=None)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["learned-variance", "sd", "dit", "sd3", "flux"])
def test_image_depends_only_on_its_own_seed(family, tmp_path):
    pipe = load_pipeline(build(family, tmp_path), family)
    extra = {}
    if family in ("sd", "sd3", "flux"):
        extra = {"prompts": [DEFAULT_PROMPTS[0], DEFAULT_PROMPTS[1]]}
        alone = {"prompts": [DEFAULT_PROMPTS[1]]}
    elif family == "dit":
        extra = {"class_labels": [2, 7]}
        alone = {"class_labels": [7]}
    else:
        alone = {}
    pair = pipeline_images(pipe, family, seeds=[5, 6], steps=2, guidance_scale=None, **extra)
    single = pipeline_images(pipe, family, seeds=[6], steps=2, guidance_scale=None, **alone)
    torch.testing.assert_close(pair[1:], single, rtol=0, atol=1e-5)


def test_builds_are_deterministic(tmp_path):
    a = build("sd", tmp_path / "a")
    b = build("sd", tmp_path / "b")
    for path in sorted(a.rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (b / path.relative_to(a)).read_bytes(), path


def test_tokenizers_cover_default_prompts(tmp_path):
    from transformers import CLIPTokenizer, T5Tokenizer

    words = sorted({w for p in DEFAULT_PROMPTS for w in p.split()})
    clip = make_clip_tokenizer()
    clip.save_pretrained(tmp_path / "clip")
    clip = CLIPTokenizer.from_pretrained(tmp_path / "clip")
    assert clip.model_max_length == 77
    for word in words:
        tokens = clip.convert_ids_to_tokens(clip(word).input_ids)
        assert tokens == ["<|startoftext|>", word + "</w>", "<|endoftext|>"], tokens
    tokens = clip.convert_ids_to_tokens(clip("a cat, 2 dogs!").input_ids)
    assert tokens[1:-1] == ["a</w>", "cat</w>", ",</w>", "2</w>", "do", "g", "s</w>", "!</w>"], tokens
    assert clip.unk_token == "<|endoftext|>" and clip.unk_token_id == len(clip) - 1
    ids = clip(list(DEFAULT_PROMPTS), padding="max_length", max_length=77).input_ids
    assert all(len(row) == 77 for row in ids)

    t5 = make_t5_tokenizer()
    t5.save_pretrained(tmp_path / "t5")
    t5 = T5Tokenizer.from_pretrained(tmp_path / "t5")
    for word in words:
        assert t5.convert_ids_to_tokens(t5(word).input_ids) == ["\u2581" + word, "</s>"]
    assert t5.unk_token_id in t5("zebra, Zebra!").input_ids  # unknown characters map to <unk>


def test_dit_labels_survive_and_are_restored(tmp_path):
    folder = build("dit", tmp_path)
    pipe = load_pipeline(folder, "dit")
    assert pipe.get_label_ids(["cat", "truck"]) == [3, 9]
    assert pipe.transformer.config.num_embeds_ada_norm == 1000  # 1000 = the pipeline's null class

    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    del index["id2label"]  # as save_pretrained alone writes it
    index_path.write_text(json.dumps(index))
    pipe = load_pipeline(folder, "dit")
    assert pipe.get_label_ids(["airplane"]) == [0]


def test_scheduler_override_is_temporary(tmp_path):
    from diffusers import EulerDiscreteScheduler

    pipe = load_pipeline(build("sd", tmp_path), "sd")
    own = pipe.scheduler
    base = pipeline_images(pipe, "sd", seeds=[0], steps=2, guidance_scale=3.0)
    euler = EulerDiscreteScheduler.from_config(own.config)
    other = pipeline_images(pipe, "sd", seeds=[0], steps=2, guidance_scale=3.0, scheduler=euler)
    assert pipe.scheduler is own
    assert not torch.allclose(base, other)


def test_argument_checks(tmp_path):
    pipe = load_pipeline(build("learned-variance", tmp_path), "learned-variance")
    with pytest.raises(ValueError, match="guidance"):
        pipeline_images(pipe, "learned-variance", seeds=[0], steps=1, guidance_scale=2.0)
    with pytest.raises(ValueError, match="prompts"):
        pipeline_images(pipe, "learned-variance", seeds=[0], steps=1, guidance_scale=None, prompts=["x"])
    with pytest.raises(ValueError, match="unknown family"):
        build("kandinsky", tmp_path)


def test_flow_families_are_the_last_two():
    assert FLOW_FAMILIES == ("sd3", "flux")
    assert FAMILIES[:7] == ("class-unet", "learned-variance", "ldm", "sd", "sdxl", "pixart", "dit")
    assert FAMILIES[7:] == FLOW_FAMILIES
    assert DEFAULT_GUIDANCE["sd3"] == 7.0 and DEFAULT_GUIDANCE["flux"] == 3.5


def test_sd3_components_and_load_quirk(tmp_path):
    import diffusers

    folder = build("sd3", tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["text_encoder_3"] == [None, None] and index["tokenizer_3"] == [None, None]
    # Without text_encoder_3=None / tokenizer_3=None, from_pretrained refuses the folder.
    with pytest.raises(ValueError, match="text_encoder_3"):
        diffusers.DiffusionPipeline.from_pretrained(folder, local_files_only=True)

    pipe = load_pipeline(folder, "sd3")
    assert pipe.text_encoder_3 is None and pipe.tokenizer_3 is None
    assert type(pipe.text_encoder).__name__ == type(pipe.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert pipe.vae_scale_factor == 2 and pipe.patch_size == 2
    assert pipe.transformer.config.sample_size * pipe.vae_scale_factor == IMAGE_SIZE
    assert pipe.vae.config.shift_factor == pytest.approx(0.0609)
    assert pipe.vae.config.scaling_factor == pytest.approx(1.5035)
    sched = pipe.scheduler
    assert type(sched).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert sched.config.shift == 3.0 and not sched.config.use_dynamic_shifting

    # guidance_scale 1 switches classifier-free guidance off (one pass instead of two)
    guided = pipeline_images(pipe, "sd3", seeds=[0], steps=2, guidance_scale=None)
    plain = pipeline_images(pipe, "sd3", seeds=[0], steps=2, guidance_scale=1.0)
    assert not torch.allclose(guided, plain)
    prompted = pipeline_images(pipe, "sd3", seeds=[0], steps=2, guidance_scale=None, prompts=[DEFAULT_PROMPTS[3]])
    assert not torch.allclose(guided, prompted)


def test_flux_components_and_embedded_guidance(tmp_path):
    pipe = load_pipeline(build("flux", tmp_path), "flux")
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel"
    assert type(pipe.text_encoder_2).__name__ == "T5EncoderModel"
    assert type(pipe.tokenizer_2).__name__ == "T5Tokenizer"
    config = pipe.transformer.config
    assert config.guidance_embeds and config.in_channels == 4 * pipe.vae.config.latent_channels
    assert pipe.vae_scale_factor == 2
    assert pipe.vae.config.shift_factor == pytest.approx(0.1159)
    assert pipe.vae.config.scaling_factor == pytest.approx(0.3611)
    sched = pipe.scheduler.config
    assert sched.use_dynamic_shifting and (sched.base_shift, sched.max_shift) == (0.5, 1.15)
    assert (sched.base_image_seq_len, sched.max_image_seq_len) == (256, 4096)

    # the guidance scale is a transformer input (no negative pass): it changes the image
    default = pipeline_images(pipe, "flux", seeds=[0], steps=2, guidance_scale=None)
    again = pipeline_images(pipe, "flux", seeds=[0], steps=2, guidance_scale=3.5)
    other = pipeline_images(pipe, "flux", seeds=[0], steps=2, guidance_scale=1.0)
    assert torch.equal(default, again)
    assert not torch.allclose(default, other)
    # prompts reach the image (through CLIP's pooled output and T5's sequence)
    prompted = pipeline_images(pipe, "flux", seeds=[0], steps=2, guidance_scale=None, prompts=[DEFAULT_PROMPTS[3]])
    assert not torch.allclose(default, prompted)
