"""Weight-file variants (diffusers' variant="fp16"): a folder holding only a variant's files is read as that
variant by itself, --variant picks one where several are there, `info` says which files were read, and the
numbers are those of the same weights saved without a variant."""

from __future__ import annotations

import json

import pytest
import torch

from . import families

TINY = [
    "--probes",
    "4",
    "--samples",
    "2",
    "--steps",
    "2",
    "--batch-size",
    "2",
    "--measures",
    "avg",
    "--radii",
    "0.01",
    "--draws",
    "1",
    "--seed",
    "3",
]


@pytest.fixture(scope="module")
def saved(family_dir, tmp_path_factory):
    """The tiny SD pipeline in float16 weights, saved three ways: plain files, fp16-variant files only, and both."""
    pipe = families.load_pipeline(family_dir("sd"), "sd").to(torch.float16)
    root = tmp_path_factory.mktemp("variants")
    pipe.save_pretrained(root / "plain", safe_serialization=True)
    pipe.save_pretrained(root / "fp16", safe_serialization=True, variant="fp16")
    pipe.save_pretrained(root / "both", safe_serialization=True)
    pipe.to(torch.float32).save_pretrained(root / "both", safe_serialization=True, variant="fp16")
    return root


def _info(cli, *args):
    code, out, err = cli("info", *map(str, args), "--json", "-")
    assert code == 0, err
    return json.loads(out)


def test_a_variant_only_folder_is_read_as_that_variant(cli, saved):
    doc = _info(cli, saved / "fp16")
    assert doc["variant"] == "fp16" and doc["supported"] == "yes"
    assert {w["path"] for w in doc["weight_files"]} == {
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    }
    assert doc["dtype"] == "float16" and doc["parameters"] == _info(cli, saved / "plain")["parameters"]


def test_the_variant_gives_the_numbers_of_the_same_weights_saved_plain(cli, saved, tmp_path):
    docs = []
    for name in ("plain", "fp16"):
        out = tmp_path / f"{name}.json"
        code, _, err = cli("sharpness", saved / name, *TINY, "--json", out)
        assert code == 0, err
        doc = json.loads(out.read_text())
        doc["sharpness"].pop("timings")
        docs.append(doc)
    assert docs[0]["sharpness"] == docs[1]["sharpness"] and docs[0]["bank"] == docs[1]["bank"]
    assert docs[1]["model"]["variant"] == "fp16" and docs[0]["model"]["variant"] is None


def test_variant_picks_among_several_and_an_absent_one_is_one_line(cli, saved):
    assert _info(cli, saved / "both")["variant"] is None  # the plain files first, as diffusers reads them
    picked = _info(cli, saved / "both", "--variant", "fp16")
    assert picked["variant"] == "fp16" and picked["dtype"] == "float32"  # the fp16-named files hold float32 here
    code, _, err = cli("info", saved / "fp16", "--variant", "bf16")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no bf16 weight files (variants there: fp16)" in lines[0], err
