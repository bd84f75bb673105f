"""Single-file checkpoints: the tiny SD and SDXL pipelines written as one .safetensors in the original layout
(UNet, VAE and text encoders renamed back to the CompVis/Stability names: tests/original_layout.py) are read
by their tensor names, built by diffusers' from_single_file with --model-config, and give the numbers of the
diffusers folders they came from; bad files, and a component nothing gives, are one line (exit 2).
The tiny SD3 pipeline (MMDiT, two CLIP encoders inside the file as SD3's "incl_clips" files hold them) too.
Flux is not here: diffusers' Flux converter assumes the real width (inner dim 3072), so no tiny Flux file
converts."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from . import families
from .original_layout import (
    clip_to_original,
    open_clip_to_original,
    sd3_to_original,
    unet_to_original,
    vae_to_original,
)

TINY = ["--probes", "4", "--samples", "2", "--steps", "2", "--batch-size", "2"]
TINY += ["--measures", "avg", "--radii", "0.01", "--draws", "1", "--seed", "3"]


def _single_file(family_dir, tmp_path_factory, family: str):
    """(diffusers folder, its single file, the original-layout state dict) of a tiny family."""
    folder = family_dir(family)
    pipe = families.load_pipeline(folder, family)
    state = {
        **unet_to_original(pipe.unet.state_dict(), pipe.unet.config.layers_per_block),
        **vae_to_original(pipe.vae.state_dict(), len(pipe.vae.config.down_block_types)),
    }
    if family == "sd":
        state.update(clip_to_original(pipe.text_encoder.state_dict()))
    else:  # SDXL: CLIP ViT-L and OpenCLIP bigG under the conditioner's embedders
        state.update(clip_to_original(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        state.update(open_clip_to_original(pipe.text_encoder_2.state_dict()))
    state = {k: v.contiguous() for k, v in state.items()}
    path = tmp_path_factory.mktemp("single") / f"tiny-{family}.safetensors"
    save_file(state, str(path))
    return folder, path, state


@pytest.fixture(scope="module")
def sd(family_dir, tmp_path_factory):
    return _single_file(family_dir, tmp_path_factory, "sd")


@pytest.fixture(scope="module")
def sd3(family_dir, tmp_path_factory):
    """(diffusers folder, its single file, the transformer's original-layout tensors) of the tiny SD3. The folder is
    the fixture's with CLIP-L's text_projection set to the identity: SD3's original files hold no projection for
    CLIP-L and diffusers puts torch.eye there (single_file_utils.create_diffusers_clip_model_from_ldm), so the file
    cannot carry the fixture's random one."""
    root = tmp_path_factory.mktemp("single-sd3")
    folder = root / "sd3"
    shutil.copytree(family_dir("sd3"), folder)
    pipe = families.load_pipeline(folder, "sd3")
    with torch.no_grad():
        pipe.text_encoder.text_projection.weight.copy_(torch.eye(pipe.text_encoder.config.hidden_size))
    pipe.text_encoder.save_pretrained(folder / "text_encoder")
    denoiser = sd3_to_original(pipe.transformer.state_dict(), pipe.transformer.config.num_layers)
    state = {**denoiser, **vae_to_original(pipe.vae.state_dict(), len(pipe.vae.config.down_block_types))}
    for prefix, encoder in (("clip_l", pipe.text_encoder), ("clip_g", pipe.text_encoder_2)):
        state.update(
            {
                f"text_encoders.{prefix}.transformer.{k}": v
                for k, v in encoder.state_dict().items()
                if not (prefix == "clip_l" and k.startswith("text_projection"))
            }
        )
    path = root / "tiny-sd3.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return folder, path, denoiser


def _json(cli, *args):
    code, out, err = cli(*map(str, args), "--json", "-")
    assert code == 0, err
    return json.loads(out)


def _one_line(cli, *args) -> str:
    code, _, err = cli(*map(str, args))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    return lines[0]


def test_the_original_layout_is_what_diffusers_converts_back(sd):
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    folder, _, state = sd
    pipe = families.load_pipeline(folder, "sd")
    for module, convert in ((pipe.unet, convert_ldm_unet_checkpoint), (pipe.vae, convert_ldm_vae_checkpoint)):
        back = convert(dict(state), dict(module.config))
        want = module.state_dict()
        assert set(back) == set(want) and all(torch.equal(back[k], want[k]) for k in want)


def test_the_sd3_original_layout_is_what_diffusers_converts_back(sd3):
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    folder, _, denoiser = sd3
    want = families.load_pipeline(folder, "sd3").transformer.state_dict()
    back = convert_sd3_transformer_checkpoint_to_diffusers(dict(denoiser))
    assert set(back) == set(want) and all(torch.equal(back[k], want[k]) for k in want)


def test_info_reads_the_header_and_says_what_was_read(cli, sd):
    folder, path, _ = sd
    doc = _json(cli, "info", path, "--model-config", folder)
    plain = _json(cli, "info", folder)
    assert doc["form"] == "single-file" and doc["configs"] == f"--model-config {folder}"
    assert [(w["component"], w["path"]) for w in doc["weight_files"]] == [("unet", path.name), ("vae", path.name)]
    for key in ("pipeline_class", "denoiser_class", "parameters", "dtype", "sample_shape", "vae_class", "supported"):
        assert doc[key] == plain[key], key
    assert doc["scheduler_origin"] == f"--model-config {folder} (scheduler/)"
    code, out, err = cli("info", path, "--model-config", folder)  # the terminal says whose tensors each row counts
    assert code == 0, err
    assert "unet tensors" in out and "vae tensors" in out


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3"])
def test_the_single_file_gives_the_numbers_of_its_folder_and_is_left_as_it_was(
    cli, sd, family, family_dir, tmp_path_factory, tmp_path, request
):
    if family == "sd3":
        folder, path, _ = request.getfixturevalue("sd3")
    else:
        folder, path, _ = sd if family == "sd" else _single_file(family_dir, tmp_path_factory, family)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    docs = []
    for model in ([path, "--model-config", folder], [folder]):
        out = tmp_path / "r.json"
        code, _, err = cli("sharpness", *model, *TINY, "--json", out)
        assert code == 0, err
        doc = json.loads(out.read_text())
        doc["sharpness"].pop("timings")
        docs.append(doc)
    assert docs[0]["sharpness"] == docs[1]["sharpness"] and docs[0]["bank"] == docs[1]["bank"]
    assert docs[0]["model"]["form"] == "single-file" and docs[1]["model"]["form"] == "pipeline"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_pickle_single_file_needs_allow_pickle(cli, sd):
    folder, path, state = sd
    ckpt = path.with_suffix(".ckpt")
    torch.save({"state_dict": state}, ckpt)  # as the original trainers wrote them
    assert "pickle file" in _one_line(cli, "info", ckpt, "--model-config", folder)
    doc = _json(cli, "info", ckpt, "--model-config", folder, "--allow-pickle")
    assert doc["weight_files"][0]["format"] == "pickle"
    assert doc["parameters"] == _json(cli, "info", folder)["parameters"]


def test_a_well_known_layout_takes_the_bundled_configs_and_asks_for_the_tokenizer(cli, tmp_path):
    # Only the tensors the layout is told by (SD 1.x: a UNet under model.diffusion_model., 768-wide cross-attention;
    # the autoencoder and text encoder there), no tokenizer: nothing gives one
    path = tmp_path / "sd15-like.safetensors"
    unet = "model.diffusion_model."
    save_file(
        {
            unet + "input_blocks.0.0.weight": torch.zeros(2, 4, 1, 1),
            unet + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(2, 768),
            "first_stage_model.decoder.conv_out.weight": torch.zeros(3, 2, 1, 1),  # the autoencoder, in the file
            "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": torch.zeros(2, 2),
        },
        str(path),
    )
    doc = _json(cli, "info", path)
    assert doc["configs"] == "flatcheck's bundled SD 1.x configs" and doc["parameters"] == 2 * 4 + 2 * 768
    assert doc["pipeline_class"] == "StableDiffusionPipeline" and doc["scheduler_class"] == "PNDMScheduler"
    line = _one_line(cli, "sharpness", path, *TINY)
    assert "lacks tokenizer: single files hold no tokenizer; give --model-config DIR" in line and "more" not in line


def test_bad_single_files_and_missing_components_are_one_line(cli, sd, tmp_path):
    folder, path, _ = sd
    unknown = tmp_path / "unknown.safetensors"
    save_file({"blocks.0.weight": torch.zeros(2)}, str(unknown))
    assert "no single-file layout flatcheck reads" in _one_line(cli, "info", unknown)
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(folder, no_tokenizer, ignore=shutil.ignore_patterns("tokenizer"))
    line = _one_line(cli, "sharpness", path, "--model-config", no_tokenizer, *TINY)
    assert "lacks tokenizer" in line and "--model-config DIR, a diffusers folder with tokenizer/" in line
    assert "not a single-file" in _one_line(cli, "info", folder / "model_index.json")
    line = _one_line(cli, "info", folder, "--model-config", folder)
    assert "--model-config gives the configs of a single-file" in line


AUDIT = dict(probes=4, samples=2, steps=2, batch_size=4, data="patches", fid_features="patches-cnn")


NOT_NUMBERS = ("timings", "seconds", "sampling_seconds", "time_ratio", "environment", "artifacts", "memory", "model")
NOT_NUMBERS += ("cache",)


def _numbers(doc):
    """An audit document less what may differ between two runs of the same model: timings, memory, the run's
    environment, where the weights were read from, and whether the FD reference statistics came from the cache."""
    if isinstance(doc, dict):
        return {k: _numbers(v) for k, v in doc.items() if k not in NOT_NUMBERS}
    if isinstance(doc, list):
        return [_numbers(v) for v in doc]
    return doc


def test_an_audit_of_the_single_file_gives_every_number_of_its_folder(sd):
    import flatcheck
    from flatcheck.results import to_jsonable

    from .audit_fixtures import TINY

    folder, path, _ = sd
    opts = {**AUDIT, "sharpness": TINY["sharpness"], "quantize": dict(settings=["W4A8"], calib_samples=2)}
    docs = [
        to_jsonable(flatcheck.audit(model, profile="quick", load_options=load, **opts))
        for model, load in ((path, {"model_config": folder}), (folder, {}))
    ]
    assert docs[0]["model"]["form"] == "single-file" and docs[1]["model"]["form"] == "pipeline"
    assert {"sharpness", "exposure", "quantize", "fid"} <= set(docs[0])
    a, b = _numbers(docs[0]), _numbers(docs[1])
    assert a == b, [(k, i) for k in a if a[k] != b.get(k) for i in a[k] if a[k][i] != b[k].get(i)]
