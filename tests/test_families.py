"""Every diffusers family flatcheck runs, end to end, on tiny random-weight pipelines (tests/families.py).

For each family: `info` states the truth; flatcheck's sampler gives the pixels of the pipeline's own
`__call__` at equal seeds, steps, conditions and guidance; and every command runs at tiny settings.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flatcheck.cli import run
from flatcheck.core.checkpoint import load
from flatcheck.core.conditioning import ConditionOptions
from flatcheck.core.denoiser import Denoiser
from flatcheck.core.sampling import make_sampler, sample
from flatcheck.core.seeds import sample_seed

from . import families

# What `info` must say of each family: (space, conditioning, learned variance, text encoders)
TRUTH = {
    "class-unet": ("pixel", "class", False, 0),
    "learned-variance": ("pixel", "none", True, 0),
    "ldm": ("latent", "none", False, 0),
    "sd": ("latent", "text", False, 1),
    "sdxl": ("latent", "text", False, 2),
    "pixart": ("latent", "text", True, 1),
    "dit": ("latent", "class", True, 0),
}


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: families.build(f, root) for f in families.FAMILIES}


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    p.write_text("\n".join(families.DEFAULT_PROMPTS) + "\n")
    return p


@pytest.fixture(scope="session")
def ref_images(tmp_path_factory):
    """An FD reference for 3 x 16 x 16 images (scored with the bundled digits-cnn features, offline)."""
    p = tmp_path_factory.mktemp("ref") / "ref.npz"
    g = np.random.default_rng(0)
    np.savez(p, images=g.uniform(-1, 1, size=(32, 3, 16, 16)).astype(np.float32))
    return p


def conditions_for(family, prompts_file):
    return ConditionOptions(prompts=str(prompts_file)) if family in ("sd", "sdxl", "pixart") else ConditionOptions()


@pytest.mark.parametrize("family", families.FAMILIES)
def test_info_states_the_truth(family, family_dirs, capsys):
    assert run(["info", str(family_dirs[family]), "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    space, cond, learned, encoders = TRUTH[family]
    assert (doc["space"], doc["conditioning"], doc["learned_variance"], len(doc["text_encoders"])) == (space, cond, learned, encoders)
    assert doc["supported"] == "yes"
    assert doc["image_shape"] == [3, 16, 16]
    assert doc["guidance_scale"] == families.DEFAULT_GUIDANCE[family]
    if family == "dit":
        assert doc["null_label"] == 1000


@pytest.mark.parametrize("family", families.FAMILIES)
def test_sampler_pixels_equal_the_pipeline(family, family_dirs, prompts_file):
    """flatcheck's loop (checkpoint's own scheduler) against the pipeline's __call__, 2 images, 3 steps."""
    path = family_dirs[family]
    ckpt = load(str(path))
    den = Denoiser.from_checkpoint(ckpt, conditions_for(family, prompts_file))
    seed, n, steps = 3, 2, 3
    ours = sample(den, make_sampler(den.scheduler, None), steps, n, seed, batch_size=n)
    ours = (den.pixels(ours) / 2 + 0.5).clamp(0, 1)
    kwargs = {}
    c = den.conditioning
    if c is not None:
        ids = c.ids(seed, range(n)).tolist()
        if c.kind == "text":
            kwargs["prompts"] = [c.names[i] for i in ids]
        else:
            kwargs["class_labels"] = ids
        kwargs["guidance_scale"] = c.guidance_scale if family not in ("class-unet",) else None
        if family == "class-unet":
            assert c.guidance_scale == 1.0  # no null class: no guidance
    else:
        kwargs["guidance_scale"] = None
    pipe = families.load_pipeline(path, family)
    theirs = families.pipeline_images(pipe, family, seeds=[sample_seed(seed, i) for i in range(n)], steps=steps, **kwargs)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=0)


def _tiny(family, prompts_file):
    cond = ["--prompts", str(prompts_file)] if family in ("sd", "sdxl", "pixart") else []
    return ["--seed", "1", "--batch-size", "4", *cond]


@pytest.mark.parametrize("family", families.FAMILIES)
def test_every_command_runs(family, family_dirs, prompts_file, ref_images, tmp_path, capsys):
    """Each single command at tiny settings, then the audit with every measure and FD."""
    path = str(family_dirs[family])
    common = _tiny(family, prompts_file)
    fd = ["--ref", str(ref_images), "--features", "digits-cnn"]
    commands = {
        "sharpness": ["--probes", "4", "--samples", "4", "--steps", "2", "--measures", "avg,worst,hessian", "--radii", "0.01",
                      "--draws", "1", "--hessian-probes", "2", "--top-k", "1", "--lanczos-iters", "3", "--hutchinson-draws", "2"],
        "exposure": ["--probes", "4", "--samples", "4", "--steps", "2", "--no-fid"],
        "quantize": ["--probes", "4", "--samples", "4", "--steps", "2", "--bits", "8", "--calib-samples", "2",
                     "--sensitivity-samples", "0", *fd],
        "fid": ["--samples", "4", "--steps", "2", *fd],
    }
    docs = {}
    for name, args in commands.items():
        out = tmp_path / f"{name}.json"
        code = run([name, path, *common, *args, "--json", str(out)])
        assert code == 0, (name, capsys.readouterr().err[-2000:])
        docs[name] = json.loads(out.read_text())
    sharp = docs["sharpness"]["sharpness"]
    assert np.isfinite(sharp["hessian"]["eigen"]["eigenvalues"][0])
    q = docs["quantize"]["quantize"]["settings"][0]
    assert 0 <= q["sample_mse"]["value"] < 1 and q["fid"] is not None
    cond = docs["fid"]["conditioning"]
    if TRUTH[family][1] == "none":
        assert cond is None
    else:
        assert cond["kind"] == TRUTH[family][1]
