"""`flatcheck sample`: the shared samples, exported; resumable; equal to what the measures use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from flatcheck.cli import run
from flatcheck.core.checkpoint import load
from flatcheck.core.denoiser import Denoiser
from flatcheck.core.sampling import make_sampler, sample
from flatcheck.results import validate


def test_sample_exports_the_measures_samples_and_resumes(tiny_pipeline, tmp_path, capsys):
    out = tmp_path / "s"
    args = ["sample", str(tiny_pipeline), "--out", str(out), "--steps", "3", "--seed", "2", "--batch-size", "4"]
    assert run([*args, "--samples", "6", "--json", str(tmp_path / "a.json")]) == 0
    doc = json.loads((tmp_path / "a.json").read_text())
    validate(doc, "sample")
    assert doc["generated"] == 6 and doc["png_written"] == 6 and len(list((out / "png").glob("*.png"))) == 6
    z = np.load(out / "samples.npz")
    den = Denoiser.from_checkpoint(load(str(tiny_pipeline)))
    want = sample(den, make_sampler(den.scheduler, "ddim"), 3, 6, seed=2, batch_size=6)
    from flatcheck.core.images import to_uint8

    assert np.abs(z["images"].astype(int) - to_uint8(want).astype(int)).max() <= 1  # uint8 rounding of float noise
    assert z["indices"].tolist() == list(range(6))
    # a rerun asking for more generates only the new ones and writes only their PNGs
    assert run([*args, "--samples", "9", "--json", str(tmp_path / "b.json")]) == 0
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["generated"] == 3 and doc["png_written"] == 3 and np.load(out / "samples.npz")["images"].shape[0] == 9
    # the store is a sample folder the measures read
    assert (
        run(
            [
                "fid",
                str(tiny_pipeline),
                "--samples-from",
                str(out / "store"),
                "--ref",
                "digits",
                "--features",
                "digits-cnn",
                "--json",
                str(tmp_path / "f.json"),
            ]
        )
        == 0
    )
    # another seed in the same folder is refused in one line
    assert run([*args[:-4], "--seed", "3", "--steps", "3", "--samples", "2"]) == 2
    assert "holds samples of another run" in capsys.readouterr().err


def test_sample_of_a_class_model_records_conditions(tmp_path):
    from diffusers import DDPMPipeline

    from .conftest import make_scheduler, make_unet

    folder = tmp_path / "cls"
    DDPMPipeline(unet=make_unet(num_class_embeds=5), scheduler=make_scheduler()).save_pretrained(folder)
    assert (
        run(
            [
                "sample",
                str(folder),
                "--out",
                str(tmp_path / "o"),
                "--samples",
                "4",
                "--steps",
                "2",
                "--labels",
                "1,3",
                "--no-png",
                "--json",
                str(tmp_path / "c.json"),
            ]
        )
        == 0
    )
    z = np.load(tmp_path / "o" / "samples.npz")
    assert z["conditions"].tolist() == [1, 3, 1, 3] and not (tmp_path / "o" / "png").exists()
    assert json.loads((tmp_path / "c.json").read_text())["conditions"]["kind"] == "class"


FD = ("--ref", "digits", "--features", "digits-cnn", "--bootstrap", "10")


def _sample(cli, model, out, *extra) -> Path:
    code, _, err = cli(
        "sample", model, "--out", out, "--samples", "6", "--batch-size", "6", "--no-png", "--no-npz", *extra
    )
    assert code == 0, err
    return out / "store"


def test_samples_from_refuses_another_models_folder_unless_allowed(tiny_pipeline, tmp_path, cli):
    """Issue 27: `fid B --samples-from` a folder of model A scored A's samples under B's name (exit 0)."""
    from diffusers import DDPMPipeline

    from .conftest import make_scheduler, make_unet

    other = tmp_path / "other"
    DDPMPipeline(unet=make_unet(seed=5), scheduler=make_scheduler()).save_pretrained(other)
    store = _sample(cli, tiny_pipeline, tmp_path / "s", "--steps", "3")
    # Refused in one line, before any work: fid, quantize and the audit alike.
    code, _, err = cli("fid", other, "--samples-from", store, *FD, "--json", tmp_path / "f.json")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "holds samples of another run (another model's weights: " + str(tiny_pipeline) in err
    assert "--allow-foreign-samples" in err and not (tmp_path / "f.json").exists()
    for command in (
        ["quantize", other, "--samples", "6", "--bits", "8", "--no-fid"],
        ["audit", other, "--quick", "--samples", "6", "--probes", "4", "--batch-size", "6"],
    ):
        code, _, err = cli(*command, "--samples-from", store)
        assert code == 2 and "another model's weights" in err and err.count("\n") == 1, err
    # Allowed explicitly: scored, and the report says whose samples they are.
    code, out, err = cli(
        "fid", other, "--samples-from", store, "--allow-foreign-samples", *FD, "--json", tmp_path / "f.json"
    )
    assert code == 0, err
    doc = json.loads((tmp_path / "f.json").read_text())
    assert validate(doc) == []
    folder = doc["samples"]["folder"]
    made = json.loads((store / "manifest.json").read_text())
    assert folder["made_by"] == str(tiny_pipeline) and folder["model"] == made["spec"]["model"] != folder["this_model"]
    assert folder["other_run"].startswith("another model's weights") and folder["other_run"] in doc["samples"]["origin"]
    flat = " ".join(out.split())
    assert "warning: the samples scored here are another run's" in flat and str(tiny_pipeline) in flat


def test_samples_from_is_the_folders_run(tiny_pipeline, tmp_path, cli):
    """Without --steps/--seed/--sampler the folder's are the run's (so the report agrees with itself:
    the fid run table said `DDIMScheduler 50 steps` beside options steps=25); given ones must match it."""
    store = _sample(cli, tiny_pipeline, tmp_path / "s", "--steps", "3", "--seed", "2")
    code, out, err = cli("fid", tiny_pipeline, "--samples-from", store, *FD, "--json", "-")
    assert code == 0, err
    doc = json.loads(out)
    ran = doc["samples"]
    assert (ran["steps"], ran["seed"], ran["sampler"]) == (3, 2, "ddim")
    assert (doc["options"]["steps"], doc["options"]["seed"], doc["options"]["sampler"]) == (3, 2, "ddim")
    assert ran["folder"]["other_run"] is None and ran["folder"]["model"] == ran["folder"]["this_model"]
    for given, why in (
        (("--steps", "4"), "steps 3, not 4"),
        (("--seed", "0"), "seed 2, not 0"),
        (("--sampler", "ddpm"), "sampler DDIMScheduler, not DDPMScheduler"),
    ):
        code, _, err = cli("fid", tiny_pipeline, "--samples-from", store, *given, *FD)
        assert code == 2 and f"holds samples of another run ({why})" in err, err


def test_samples_from_refuses_other_conditions(tmp_path, cli):
    from diffusers import DDPMPipeline

    from .conftest import make_scheduler, make_unet

    model = tmp_path / "cls"
    DDPMPipeline(unet=make_unet(num_class_embeds=5), scheduler=make_scheduler()).save_pretrained(model)
    store = _sample(cli, model, tmp_path / "s", "--steps", "2", "--labels", "1,3")
    code, _, err = cli("fid", model, "--samples-from", store, "--labels", "2", *FD)
    assert code == 2 and "other conditions (labels, prompts or guidance scale differ)" in err, err


def test_quantize_reads_the_same_samples_it_would_make(tiny_pipeline, tmp_path, cli):
    """quantize --samples-from: the folder's samples are the full-precision side, the numbers those of a run
    that generates them."""
    store = _sample(cli, tiny_pipeline, tmp_path / "s", "--steps", "2")
    args = ("quantize", tiny_pipeline, "--samples", "6", "--steps", "2", "--bits", "8", "--calib-samples", "2")
    args += ("--sensitivity-samples", "0", "--probes", "4", "--batch-size", "6", "--no-fid", "--json", "-")
    code, made, err = cli(*args)
    assert code == 0, err
    code, read, err = cli(*args, "--samples-from", store)
    assert code == 0, err
    made, read = json.loads(made), json.loads(read)
    assert read["samples"]["origin"] == f"read from {store}" and made["samples"]["origin"] == "generated"
    numbers = ("sample_mse", "sample_psnr", "relative_mse", "probe_loss", "probe_loss_change")
    for a, b in zip(read["quantize"]["settings"], made["quantize"]["settings"]):
        assert {k: a[k] for k in numbers} == {k: b[k] for k in numbers}  # timings aside, the same run
