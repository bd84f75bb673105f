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
    "sd3": ("latent", "text", False, 2),
    "flux": ("latent", "text", False, 2),
    **{name: m.TRUTH for name, m in families.FIXTURES.items()},
}
TEXT = tuple(f for f, truth in TRUTH.items() if truth[1] == "text")
# The latent side to give where the transformer config has none (Flux: its pipeline default is 1024 px)
SAMPLE_SIZE = {"flux": 8, **{name: m.SAMPLE_SIZE for name, m in families.FIXTURES.items() if m.SAMPLE_SIZE}}


@pytest.fixture(scope="session")
def family_dirs(family_dir):
    return {f: family_dir(f) for f in families.ALL_FAMILIES}


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
    size = SAMPLE_SIZE.get(family)
    return ConditionOptions(prompts=str(prompts_file), sample_size=size) if family in TEXT else ConditionOptions()


@pytest.mark.parametrize("family", families.ALL_FAMILIES)
def test_info_states_the_truth(family, family_dirs, capsys):
    assert run(["info", str(family_dirs[family]), "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    space, cond, learned, encoders = TRUTH[family]
    assert (doc["space"], doc["conditioning"], doc["learned_variance"], len(doc["text_encoders"])) == (
        space,
        cond,
        learned,
        encoders,
    )
    assert doc["supported"] == "yes"
    # No sample_size in the config (Flux, Chroma): the pipeline's default latent side 128, i.e. 256 px at factor 2
    assert doc["image_shape"] == ([3, 256, 256] if family in SAMPLE_SIZE else [3, 16, 16])
    flow = family in families.FLOW_FAMILIES or getattr(families.FIXTURES.get(family), "PREDICTION", None) == "flow"
    assert doc["prediction_type"] == ("flow" if flow else "epsilon")
    assert doc["guidance_scale"] == families.DEFAULT_GUIDANCE[family]
    if family == "dit":
        assert doc["null_label"] == 1000


@pytest.mark.parametrize("family", families.ALL_FAMILIES)
def test_info_from_headers_is_what_loading_describes(family, family_dirs, capsys):
    """info reads configs and headers only; the description of the loaded checkpoint (the audit's) is the
    same document, number for number (SD3's stored position table is not counted as parameters)."""
    from flatcheck.core.info import describe_checkpoint
    from flatcheck.results import document

    loaded = document("info", describe_checkpoint(load(str(family_dirs[family]))))
    capsys.readouterr()
    assert run(["info", str(family_dirs[family]), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == loaded


@pytest.mark.parametrize("family", families.ALL_FAMILIES)
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
    theirs = families.pipeline_images(
        pipe, family, seeds=[sample_seed(seed, i) for i in range(n)], steps=steps, **kwargs
    )
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=0)


def _tiny(family, prompts_file):
    cond = ["--prompts", str(prompts_file)] if family in TEXT else []
    if family in SAMPLE_SIZE:
        cond += ["--sample-size", str(SAMPLE_SIZE[family])]
    return ["--seed", "1", "--batch-size", "4", *cond]


@pytest.mark.parametrize("family", families.ALL_FAMILIES)
def test_every_command_runs(family, family_dirs, prompts_file, ref_images, tmp_path, capsys):
    """Each single command at tiny settings, then the audit with every measure and FD."""
    path = str(family_dirs[family])
    common = _tiny(family, prompts_file)
    fd = ["--ref", str(ref_images), "--features", "digits-cnn"]
    commands = {
        "sharpness": [
            "--probes",
            "4",
            "--samples",
            "4",
            "--steps",
            "2",
            "--measures",
            "avg,worst,hessian",
            "--radii",
            "0.01",
            "--draws",
            "1",
            "--hessian-probes",
            "2",
            "--top-k",
            "1",
            "--lanczos-iters",
            "3",
            "--hutchinson-draws",
            "2",
        ],
        "exposure": ["--probes", "4", "--samples", "4", "--steps", "2", "--no-fid"],
        "quantize": [
            "--probes",
            "4",
            "--samples",
            "4",
            "--steps",
            "2",
            "--bits",
            "8",
            "--calib-samples",
            "2",
            "--sensitivity-samples",
            "0",
            *fd,
        ],
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


def _last_err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_condition_options_fail_in_one_line(family_dirs, prompts_file, capsys):
    cls, sd, ddpm = str(family_dirs["class-unet"]), str(family_dirs["sd"]), str(family_dirs["learned-variance"])
    tiny = ["--samples", "2", "--steps", "1", "--probes", "2", "--measures", "avg", "--draws", "1", "--radii", "0.01"]
    cases = [
        ([cls, "--labels", "3,12"], "label 12 is out of range: the model has classes 0..9"),
        ([cls, "--labels", "3,x"], "is neither a comma list of class labels"),
        ([cls, "--prompts", str(prompts_file)], "class-conditional: give --labels, not --prompts"),
        ([cls, "--guidance-scale", "3"], "has no null class"),
        ([sd, "--labels", "1"], "text-conditioned: give --prompts, not --labels"),
        ([sd, "--prompts", "/nonexistent/prompts.txt"], "is not a file"),
        ([ddpm, "--labels", "1"], "is unconditional: it takes no labels"),
    ]
    for args, message in cases:
        assert run(["sharpness", *args, *tiny]) == 2, args
        line = _last_err_line(capsys)
        assert message in line and "Traceback" not in line, (args, line)


def test_labels_are_used_and_recorded(family_dirs, tmp_path):
    out = tmp_path / "s.json"
    assert (
        run(
            [
                "exposure",
                str(family_dirs["class-unet"]),
                "--labels",
                "3,7",
                "--samples",
                "4",
                "--probes",
                "4",
                "--steps",
                "2",
                "--no-fid",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert doc["conditioning"]["kind"] == "class" and "mod 2" in doc["conditioning"]["assignment"]
    ckpt = load(str(family_dirs["class-unet"]))
    den = Denoiser.from_checkpoint(ckpt, ConditionOptions(labels="3,7"))
    assert den.conditioning.ids(0, range(5)).tolist() == [3, 7, 3, 7, 3]
    # the default draw is uniform per sample, a function of (seed, index) only
    den = Denoiser.from_checkpoint(ckpt)
    a, b = den.conditioning.ids(0, range(400)), den.conditioning.ids(0, range(200, 400))
    assert torch.equal(a[200:], b) and set(a.tolist()) == set(range(10))
    assert not torch.equal(a, den.conditioning.ids(1, range(400)))


def test_guidance_changes_samples_and_null_is_the_pipelines(family_dirs):
    """Guidance 1 is the conditional output alone; another scale moves the samples (DiT: null class 1000)."""
    ckpt = load(str(family_dirs["dit"]))
    plain = Denoiser.from_checkpoint(ckpt, ConditionOptions(guidance_scale=1.0))
    guided = Denoiser.from_checkpoint(ckpt, ConditionOptions(guidance_scale=4.0))
    x, t, ids = torch.randn(2, 4, 8, 8), torch.tensor(500), torch.tensor([1, 2])
    with torch.no_grad():
        c = plain.model_output(x, t, ids)
        u = plain.model_output(x, t, torch.tensor([-1, -1]))
        g = guided.model_output(x, t, ids, guided=True)
        raw = ckpt.denoiser(hidden_states=x, timestep=t.expand(2), class_labels=torch.tensor([1000, 1000])).sample[
            :, :4
        ]
    torch.testing.assert_close(u, raw)
    torch.testing.assert_close(g, u + 4.0 * (c - u), atol=1e-5, rtol=1e-5)


def test_unsupported_denoiser_is_one_line(tmp_path, capsys):
    """Audio (a 1-D UNet) and video (a 3-D UNet) denoisers are refused with exit 2 in one line naming the class,
    before any weight loads, never a traceback; a bare text-conditioned transformer folder says it needs its
    pipeline."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, UNet1DModel, UNet3DConditionModel

    torch.manual_seed(0)
    UNet1DModel(
        sample_size=16,
        in_channels=2,
        out_channels=2,
        block_out_channels=(8, 8, 8),
        extra_in_channels=16,
        down_block_types=("DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D"),
        up_block_types=("AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"),
        mid_block_type="UNetMidBlock1D",
    ).save_pretrained(tmp_path / "unet1d")
    assert run(["sharpness", str(tmp_path / "unet1d"), "--samples", "2"]) == 2
    line = _last_err_line(capsys)
    assert "UNet1DModel is an audio denoiser" in line and "Traceback" not in line
    assert run(["info", str(tmp_path / "unet1d"), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["supported"].startswith("no: UNet1DModel is an audio denoiser")
    torch.manual_seed(0)
    UNet3DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 8),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        norm_num_groups=4,
        cross_attention_dim=8,
        attention_head_dim=4,
    ).save_pretrained(tmp_path / "unet3d")
    assert run(["sharpness", str(tmp_path / "unet3d"), "--samples", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flatcheck: error: UNet3DConditionModel is a video denoiser"), err
    SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        caption_projection_dim=16,
        pooled_projection_dim=16,
        out_channels=4,
    ).save_pretrained(tmp_path / "sd3")
    FlowMatchEulerDiscreteScheduler().save_pretrained(tmp_path / "sched")
    assert run(["sharpness", str(tmp_path / "sd3"), "--scheduler", str(tmp_path / "sched"), "--samples", "2"]) == 2
    assert "is a bare SD3Transformer2DModel folder" in _last_err_line(capsys)


def test_fractional_timesteps_reach_exposure_unrounded(family_dirs):
    """Euler with linspace spacing runs at fractional t: the forward reference is taken at that very t."""
    from flatcheck.measures.exposure.config import ExposureConfig
    from flatcheck.measures.exposure.measure import measure_exposure

    ckpt = load(str(family_dirs["class-unet"]))
    den = Denoiser.from_checkpoint(ckpt, ConditionOptions(labels="1"))
    den.scheduler = type(den.scheduler).from_config({**den.scheduler.config, "timestep_spacing": "linspace"})
    x0 = torch.rand(4, 3, 16, 16) * 2 - 1
    res = measure_exposure(
        den,
        x0,
        ExposureConfig(steps=(3,), sampler="euler", samples=4, batch_size=4),
        reference_cond=torch.ones(4, dtype=torch.long),
    )
    ts = res.runs[0].timesteps
    assert any(isinstance(t, float) for t in ts), ts
    frac = next(t for t in ts if isinstance(t, float))
    seen = []
    h = den.net.register_forward_pre_hook(lambda m, a, k: seen.append(k["timestep"].clone()), with_kwargs=True)
    with torch.no_grad():
        den.eps(x0, frac, torch.ones(4, dtype=torch.long))
    h.remove()
    assert float(seen[0][0]) == pytest.approx(frac, abs=1e-3) and not float(seen[0][0]).is_integer()


@pytest.mark.parametrize("family", ["sd", "dit"])
def test_audit_compare_gate(family, family_dirs, prompts_file, tmp_path, capsys):
    """The audit (every measure, one bank), compare and gate on a text and a class family."""
    path = str(family_dirs[family])
    tiny = [
        "--quick",
        "--probes",
        "4",
        "--samples",
        "4",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--ref",
        "none",
        *(["--prompts", str(prompts_file)] if family == "sd" else ["--labels", "1,2"]),
    ]
    out = tmp_path / "audit.json"
    assert run(["audit", path, *tiny, "--json", str(out)]) == 0, capsys.readouterr().err[-2000:]
    doc = json.loads(out.read_text())
    assert all(v["status"] not in ("error", "skipped") for v in doc["verdicts"] if v["area"] != "fid")
    assert doc["conditioning"]["kind"] == TRUTH[family][1]
    import shutil

    twin = shutil.copytree(path, tmp_path / "twin")
    assert run(["compare", path, str(twin), *tiny, "--json", str(tmp_path / "cmp.json")]) == 0, capsys.readouterr().err[
        -2000:
    ]
    rows = json.loads((tmp_path / "cmp.json").read_text())["rows"]
    timed = ("timings", "seconds", "time_ratio")
    numbers = [r for r in rows if not any(k in r["path"] for k in timed)]
    assert len(numbers) > 20 and all(
        d in (0, 0.0, None) for r in numbers for d in r["diff"]
    )  # a model against its copy
    cfg = tmp_path / "flatcheck.toml"
    cfg.write_text('[gate]\n[[gate.rules]]\nmetric = "bank.loss"\nmax = 0.0\n')
    assert run(["gate", "--report", str(out), "--config", str(cfg)]) == 1  # a loss is never <= 0: the gate must fail


def test_quantize_vae(family_dirs, prompts_file, tmp_path, capsys):
    """--quantize-vae quantizes the decoder too: more drift than the denoiser alone, decoder weights restored."""
    from flatcheck.core.probes import probe_bank
    from flatcheck.measures.quantize.config import QuantizeConfig
    from flatcheck.measures.quantize.measure import measure_quantization

    ckpt = load(str(family_dirs["sd"]))
    den = Denoiser.from_checkpoint(ckpt, conditions_for("sd", prompts_file))
    before = {k: v.clone() for k, v in den.vae.state_dict().items()}
    bank = probe_bank(torch.randn(4, 4, 8, 8), 4, 0, (0, 1000), "test", pool_cond=torch.zeros(4, dtype=torch.long))
    kw = dict(settings=["W4A4"], samples=4, steps=2, calib_samples=2, sensitivity_samples=0, batch_size=4)
    alone = measure_quantization(den, bank, QuantizeConfig(**kw))
    both = measure_quantization(den, bank, QuantizeConfig(**kw, quantize_vae=True))
    assert alone.decoder is None and both.decoder.startswith("vae.decoder: ")
    assert both.settings[0].sample_mse.value > alone.settings[0].sample_mse.value
    assert all(torch.equal(before[k], v) for k, v in den.vae.state_dict().items())
    assert run(["quantize", str(family_dirs["class-unet"]), "--quantize-vae", "--samples", "2"]) == 2
    assert (
        _last_err_line(capsys) == "flatcheck: error: --quantize-vae is for latent models: this model has no autoencoder"
    )


def test_latent_encode_is_cached(family_dirs, tmp_path, monkeypatch):
    from flatcheck.core.probes import encode_images

    monkeypatch.setenv("FLATCHECK_CACHE", str(tmp_path / "cache"))
    den = Denoiser.from_checkpoint(load(str(family_dirs["ldm"])))
    images = torch.rand(5, 3, 16, 16) * 2 - 1
    first = encode_images(den, images, 2)
    files = list((tmp_path / "cache" / "latents").glob("*.npz"))
    assert len(files) == 1 and first.shape == (5, 3, 8, 8)
    calls = []
    den.vae.register_forward_pre_hook(lambda m, a: calls.append(1))
    h = den.vae.encoder.register_forward_pre_hook(lambda m, a: calls.append(1))
    again = encode_images(den, images, 2)
    assert torch.equal(first, again) and not calls  # read back, not encoded again
    h.remove()
    assert not torch.equal(encode_images(den, images * 0.5, 2), first)  # other images, other key
