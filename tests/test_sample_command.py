"""`flatcheck sample`: the shared samples, exported; resumable; equal to what the measures use."""

from __future__ import annotations

import json

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
