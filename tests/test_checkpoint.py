"""Loading every MODEL form, the safety rules, and every bad input the foundation names."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from flatcheck.core.checkpoint import DEFAULT_SCHEDULER_NOTE, bundled_models, load

from .conftest import make_scheduler, make_unet


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- forms of MODEL


def test_pipeline_folder_loads_bit_for_bit(tiny_pipeline):
    ckpt = load(str(tiny_pipeline))
    assert ckpt.form == "pipeline" and ckpt.pipeline_class == "DDPMPipeline"
    assert ckpt.scheduler_origin.startswith("checkpoint")
    on_disk = load_file(tiny_pipeline / "unet" / "diffusion_pytorch_model.safetensors")
    loaded = ckpt.denoiser.state_dict()
    assert set(on_disk) == set(loaded)
    for k, v in on_disk.items():
        assert v.dtype == loaded[k].dtype and torch.equal(v, loaded[k]), k


def test_bare_model_folder_gets_default_scheduler_stated(tiny_pipeline):
    ckpt = load(str(tiny_pipeline / "unet"))
    assert ckpt.form == "model" and ckpt.pipeline_class is None
    assert ckpt.scheduler_origin == DEFAULT_SCHEDULER_NOTE
    assert ckpt.scheduler.config.beta_schedule == "linear"


def test_bare_model_folder_with_scheduler_option(tiny_pipeline, tmp_path):
    make_scheduler("v_prediction").save_pretrained(tmp_path / "sched")
    ckpt = load(str(tiny_pipeline / "unet"), scheduler=tmp_path / "sched")
    assert ckpt.scheduler.config.prediction_type == "v_prediction"
    assert "--scheduler" in ckpt.scheduler_origin


def test_bundled_models_are_addressable_by_name():
    names = bundled_models()
    assert {"digits-base", "digits-ema", "digits-sam"} <= set(names)
    ckpt = load("digits-sam")
    assert ckpt.form == "bundled" and ckpt.num_parameters <= 1_000_000
    assert load(None).source == "digits-base"  # the default bundled model


def test_local_path_wins_over_bundled_name(tiny_pipeline, tmp_path, monkeypatch):
    shutil.copytree(tiny_pipeline, tmp_path / "digits-sam")
    monkeypatch.chdir(tmp_path)
    ckpt = load("digits-sam")
    assert ckpt.form == "pipeline" and ckpt.num_parameters < 100_000


def test_hub_id_offline_names_hf_hub_offline(cli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = cli("info", "some-org/some-model")
    assert code == 2
    assert "HF_HUB_OFFLINE" in one_line_error(err)


# --------------------------------------------------------------------------- safety


def test_pickle_refused_without_flag_and_loaded_with_it(tmp_path, cli):
    folder = tmp_path / "pickled"
    make_unet().save_pretrained(folder, safe_serialization=False)
    assert (folder / "diffusion_pytorch_model.bin").exists()
    code, _, err = cli("info", folder)
    line = one_line_error(err)
    assert code == 2 and "pickle" in line and "arbitrary code" in line and "--allow-pickle" in line
    code, out, err = cli("info", folder, "--allow-pickle")
    assert code == 0, err
    assert "pickle" in out


def test_custom_pipeline_code_is_refused(pipeline_copy, cli):
    index = json.loads((pipeline_copy / "model_index.json").read_text())
    index["_class_name"] = ["my_module", "MyPipeline"]
    (pipeline_copy / "model_index.json").write_text(json.dumps(index))
    code, _, err = cli("info", pipeline_copy)
    assert code == 2 and "custom" in one_line_error(err)


# A module shipped beside the weights, named by model_index.json: importing it leaves a marker file.
CUSTOM_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")

class MyUNet:
    pass
"""


@pytest.fixture
def custom_code_pipeline(pipeline_copy, tmp_path, monkeypatch):
    """The tiny pipeline whose model_index.json names its unet as ["my_module", "MyUNet"], with my_module.py in the
    folder and in unet/ (where diffusers' custom components look), and the folder on sys.path, so that any
    `import my_module` would run it. Returns (folder, marker file)."""
    marker = tmp_path / "imported.txt"
    for folder in (pipeline_copy, pipeline_copy / "unet"):
        (folder / "my_module.py").write_text(CUSTOM_MODULE.format(marker=str(marker)))
    index = json.loads((pipeline_copy / "model_index.json").read_text())
    index["unet"] = ["my_module", "MyUNet"]
    (pipeline_copy / "model_index.json").write_text(json.dumps(index))
    monkeypatch.syspath_prepend(str(pipeline_copy))
    return pipeline_copy, marker


def test_the_custom_module_fixture_does_write_its_marker(custom_code_pipeline):
    """The check below can fail: importing the module (what loading custom code does) writes the marker."""
    import importlib
    import sys

    folder, marker = custom_code_pipeline
    try:
        importlib.import_module("my_module")
    finally:
        sys.modules.pop("my_module", None)
    assert marker.read_text() == "imported"


@pytest.mark.parametrize(
    "command",
    [
        ["info"],
        ["plan"],
        ["audit", "--quick"],
        ["sharpness"],
        ["exposure"],
        ["quantize"],
        ["fid"],
        ["sample", "--out", "{tmp}/samples"],
        ["compare", "digits-base"],
        ["gate", "--config", "{tmp}/flatcheck.toml"],
    ],
    ids=lambda c: c[0],
)
def test_custom_component_code_is_never_imported(custom_code_pipeline, cli, command, tmp_path):
    import sys

    folder, marker = custom_code_pipeline
    (tmp_path / "flatcheck.toml").write_text('[[gate.rules]]\nmetric = "bank.loss"\nmax = 1\n')
    args = [a.format(tmp=tmp_path) for a in command]
    code, _, err = cli(args[0], folder, *args[1:])
    line = one_line_error(err)
    assert code == 2 and "my_module" in line and "custom code is never run" in line, line
    assert not marker.exists() and "my_module" not in sys.modules


@pytest.mark.parametrize("library", ["my_module", "os", "diffusers.pipelines", "../unet", 3])
def test_component_libraries_outside_diffusers_are_refused(library):
    from flatcheck.core.checkpoint import check_component_sources
    from flatcheck.errors import InputError

    with pytest.raises(InputError, match="custom code is never run"):
        check_component_sources({"unet": [library, "UNet2DModel"]}, "model_index.json")


def test_component_libraries_diffusers_loads_itself_pass():
    from flatcheck.core.checkpoint import check_component_sources

    check_component_sources(
        {
            "_class_name": "StableDiffusionPipeline",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],  # a diffusers pipeline module
            "feature_extractor": [None, None],
            "id2label": {"0": "tench"},
        },
        "model_index.json",
    )


# --------------------------------------------------------------------------- bad input: one line, exit 2


def test_missing_path(cli, tmp_path):
    code, _, err = cli("info", tmp_path / "nope")
    assert code == 2 and "no such file or folder" in one_line_error(err)


def test_empty_folder(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = cli("info", tmp_path / "empty")
    assert code == 2 and "empty folder" in one_line_error(err)


def test_folder_without_diffusers_config(cli, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    code, _, err = cli("info", tmp_path / "junk")
    assert code == 2 and "no diffusers config" in one_line_error(err)


def test_config_naming_unknown_class(pipeline_copy, cli):
    cfg_path = pipeline_copy / "unet" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["_class_name"] = "UNetFromNowhere"
    cfg_path.write_text(json.dumps(cfg))
    code, _, err = cli("info", pipeline_copy)
    assert code == 2 and "unknown class 'UNetFromNowhere'" in one_line_error(err)


def test_truncated_safetensors(pipeline_copy, cli):
    f = pipeline_copy / "unet" / "diffusion_pytorch_model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    code, _, err = cli("info", pipeline_copy)
    assert code == 2 and "truncated or corrupt safetensors" in one_line_error(err)


def test_corrupt_safetensors_header(pipeline_copy, cli):
    f = pipeline_copy / "unet" / "diffusion_pytorch_model.safetensors"
    f.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"\x00" * 64)
    code, _, err = cli("info", pipeline_copy)
    assert code == 2 and "corrupt safetensors" in one_line_error(err)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_name_the_tensor(pipeline_copy, cli, value):
    f = pipeline_copy / "unet" / "diffusion_pytorch_model.safetensors"
    sd = load_file(f)
    name = "conv_in.weight"
    sd[name] = sd[name].clone()
    sd[name].view(-1)[3] = value
    save_file(sd, f)
    code, _, err = cli("sharpness", pipeline_copy)  # refused when loading, before any work
    line = one_line_error(err)
    assert code == 2 and "non-finite" in line and name in line
    # info reads headers, never tensor data: it describes the checkpoint and has no values to check
    code, _, err = cli("info", pipeline_copy)
    assert code == 0, err


def test_unknown_dtype(cli, tiny_pipeline):
    code, _, err = cli("info", tiny_pipeline, "--dtype", "float8")
    assert code == 2 and "unknown dtype 'float8'" in one_line_error(err)


def test_unknown_device(cli, tiny_pipeline):
    code, _, err = cli("info", tiny_pipeline, "--device", "tpu")
    assert code == 2 and "device 'tpu'" in one_line_error(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_but_absent(cli, tiny_pipeline):
    code, _, err = cli("sharpness", tiny_pipeline, "--device", "cuda")
    assert code == 2 and "CUDA is not available" in one_line_error(err)
    code, _, err = cli("info", tiny_pipeline, "--device", "cuda")  # info runs nothing on a device: the form is checked
    assert code == 0, err


def test_unknown_option_is_one_line(cli, tiny_pipeline):
    code, _, err = cli("info", tiny_pipeline, "--no-such-option")
    assert code == 2 and "No such option" in one_line_error(err)


def test_file_instead_of_folder(cli, tiny_pipeline):
    code, _, err = cli("info", tiny_pipeline / "model_index.json")
    assert code == 2 and "is a file" in one_line_error(err)


# --------------------------------------------------------------------------- info


def test_info_json_describes_the_checkpoint(cli, tiny_pipeline):
    code, out, err = cli("info", tiny_pipeline, "--json", "-")
    assert code == 0, err
    info = json.loads(out)
    assert info["pipeline_class"] == "DDPMPipeline"
    assert info["denoiser_class"] == "UNet2DModel"
    assert info["parameters"] == sum(p.numel() for p in make_unet().parameters())
    assert info["sample_shape"] == [1, 8, 8] and info["space"] == "pixel"
    assert info["conditioning"] == "none" and info["dtype"] == "float32"
    assert info["scheduler_class"] == "DDPMScheduler" and info["num_train_timesteps"] == 1000
    assert info["beta_schedule"] == "linear" and info["prediction_type"] == "epsilon"
    assert info["weight_files"][0]["format"] == "safetensors"


def test_info_json_to_file_and_table(cli, tiny_pipeline, tmp_path):
    code, out, _ = cli("info", tiny_pipeline, "--json", tmp_path / "info.json")
    assert code == 0
    assert "UNet2DModel" in out and "DDPMPipeline" in out  # the table still prints
    assert json.loads((tmp_path / "info.json").read_text())["denoiser_class"] == "UNet2DModel"


def test_info_class_conditioning_and_dtype(tmp_path, cli):
    folder = tmp_path / "cls"
    make_unet(num_class_embeds=10).save_pretrained(folder)
    code, out, err = cli("info", folder, "--dtype", "bfloat16", "--json", "-")
    assert code == 0, err
    info = json.loads(out)
    # dtype is what the files store (--dtype says how a command that runs would load them)
    assert info["conditioning"] == "class" and info["num_classes"] == 10 and info["dtype"] == "float32"
    make_unet(num_class_embeds=10).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    code, out, err = cli("info", tmp_path / "bf16", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["dtype"] == "bfloat16"


def test_bundled_info_table(cli):
    code, out, err = cli("info", "digits-sam")
    assert code == 0, err
    assert "UNet2DModel" in out and "1 x 16 x 16" in out
