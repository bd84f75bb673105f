"""LoRA adapters (--lora): a tiny LoRA made with peft on the tiny SD UNet and saved as diffusers saves one gives the
numbers of the same LoRA fused into the weights by hand; --params lora measures the adapter alone; the base weights
come back bit for bit; a file that is not a LoRA for this model is refused in one line (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from . import families

RANK, ALPHA = 4, 8.0
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1"]  # attention projections and resnet convs: Linear and Conv2d
TINY = ["--probes", "4", "--samples", "2", "--steps", "2", "--batch-size", "2", "--seed", "3", "--threads", "1"]
SHARP = [*TINY, "--measures", "avg", "--radii", "0.05", "--draws", "1"]


def make_lora(sd_dir: Path, root: Path) -> tuple[Path, Path]:
    """(LoRA file, fused pipeline folder): a peft LoRA on the tiny SD UNet, saved by diffusers' save_lora_weights
    with its adapter metadata; and a copy of the pipeline whose UNet holds W + alpha/r * B A, fused by hand."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = families.load_pipeline(sd_dir, "sd")
    unet = pipe.unet
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, init_lora_weights="gaussian")
    unet.add_adapter(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:  # B starts at zero: a LoRA that changes nothing would prove nothing
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    state = get_peft_model_state_dict(unet)
    StableDiffusionPipeline.save_lora_weights(
        root / "lora", unet_lora_layers=state, unet_lora_adapter_metadata=config.to_dict()
    )
    fused = root / "fused"
    shutil.copytree(sd_dir, fused)
    base = families.load_pipeline(sd_dir, "sd").unet
    modules = dict(base.named_modules())
    with torch.no_grad():
        for key, a in state.items():
            if ".lora_A." not in key:
                continue
            name = key.split(".lora_A.")[0]
            b = state[key.replace("lora_A", "lora_B")]
            w = modules[name].weight
            delta = (b.flatten(1) @ a.flatten(1)).reshape(w.shape[0], *a.shape[1:])  # conv: B is 1x1
            w.add_(delta * (ALPHA / RANK))
    base.save_pretrained(fused / "unet")
    return root / "lora" / "pytorch_lora_weights.safetensors", fused


@pytest.fixture(scope="module")
def lora(family_dir, tmp_path_factory):
    """(base folder, LoRA file, fused folder)."""
    base = family_dir("sd")
    file, fused = make_lora(base, tmp_path_factory.mktemp("lora"))
    return base, file, fused


def _run(cli, *args):
    code, out, err = cli(*map(str, args), "--json", "-")
    assert code == 0, err
    return json.loads(out)


def _close(a, b, rel=1e-4):
    """Every number of two report sections equal to float rounding (the fused run sums in another order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            if k not in ("config", "timings", "sampling_seconds", "time_ratio", "seconds"):
                _close(a[k], b[k], rel)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _close(x, y, rel)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=rel, abs=1e-6)
    else:
        assert a == b


def test_sharpness_on_base_plus_lora_equals_the_lora_fused_by_hand_and_scale_zero_the_base(cli, lora):
    base, file, fused = lora
    with_lora = _run(cli, "sharpness", base, "--lora", file, *SHARP)
    by_hand = _run(cli, "sharpness", fused, *SHARP)
    plain = _run(cli, "sharpness", base, *SHARP)
    scale_zero = _run(cli, "sharpness", base, "--lora", file, "--lora-scale", "0", *SHARP)
    _close(with_lora["sharpness"], by_hand["sharpness"])
    _close(scale_zero["sharpness"], plain["sharpness"], rel=1e-6)
    assert with_lora["sharpness"]["loss"]["value"] != pytest.approx(plain["sharpness"]["loss"]["value"], rel=1e-3)
    rec = with_lora["model"]["lora"]
    assert rec["rank"] == RANK and rec["alpha"] == ALPHA and rec["scale"] == 1.0 and rec["format"] == "diffusers/peft"
    assert len(rec["sha256"]) == 64 and rec["path"] == str(file)
    assert {t.rsplit(".", 1)[-1] for t in rec["target_modules"]} >= {"to_q", "conv1", "0"}
    assert by_hand["model"]["lora"] is None and with_lora["model"]["parameters"] == plain["model"]["parameters"]


def test_params_lora_measures_the_adapter_alone(cli, lora):
    base, file, _ = lora
    doc = _run(cli, "sharpness", base, "--lora", file, "--params", "lora", *SHARP)
    assert doc["sharpness"]["parameters"] == doc["model"]["lora"]["parameters"] == 5616  # r (in + out) per layer
    assert doc["sharpness"]["parameter_selection"] == "lora"
    code, _, err = cli("sharpness", base, "--params", "lora", *SHARP)
    assert code == 2 and "--lora" in err and len(err.strip().splitlines()) == 1


def test_quantize_fused_equals_by_hand_and_full_precision_adapter_differs(cli, lora):
    base, file, fused = lora
    q = [*TINY, "--bits", "4", "--sensitivity-samples", "0", "--calib-samples", "2", "--no-fid"]
    with_lora = _run(cli, "quantize", base, "--lora", file, *q)
    by_hand = _run(cli, "quantize", fused, *q)
    full = _run(cli, "quantize", base, "--lora", file, "--lora-precision", "full", *q)
    _close(with_lora["quantize"]["settings"], by_hand["quantize"]["settings"], rel=1e-3)
    assert "fused" in with_lora["quantize"]["lora"] and "full precision" in full["quantize"]["lora"]
    assert by_hand["quantize"]["lora"] is None
    # the adapter kept in full precision: same layer count, another drift
    a, b = with_lora["quantize"]["settings"][0], full["quantize"]["settings"][0]
    assert a["layers"] == b["layers"] and a["sample_mse"]["value"] != pytest.approx(b["sample_mse"]["value"], rel=1e-3)


def test_the_base_weights_come_back_bit_for_bit(lora):
    import flatcheck
    from flatcheck.core.lora import attached

    base, file, _ = lora
    pipe = families.load_pipeline(base, "sd")
    before = {k: (v.clone(), v.data_ptr()) for k, v in pipe.unet.state_dict().items()}
    modules = dict(pipe.unet.named_modules())
    flatcheck.sharpness(pipe, lora=file, probes=2, samples=2, steps=2, batch_size=2, measures=["avg"], radii=[0.05])
    after = pipe.unet.state_dict()
    assert after.keys() == before.keys() and attached(pipe.unet) is None
    assert all(torch.equal(after[k], v) and after[k].data_ptr() == ptr for k, (v, ptr) in before.items())
    assert {n: type(m) for n, m in pipe.unet.named_modules()} == {n: type(m) for n, m in modules.items()}


def test_compare_puts_base_and_base_plus_lora_side_by_side(cli, lora):
    base, file, fused = lora
    skip = ["--skip", "sharpness", "--skip", "quantize", "--skip", "fid"]
    doc = _run(cli, "compare", base, base, "--lora-b", file, "--quick", *TINY, *skip)
    assert doc["models"] == [str(base), f"{base}+lora:{file.name}"]
    a, b = doc["reports"]
    assert a["model"]["lora"] is None and b["model"]["lora"]["sha256"]
    assert a["exposure"] != b["exposure"]
    code, _, err = cli("compare", base, base, *TINY)
    assert code == 2 and "--lora-b" in err


def _bad(tmp_path, name, tensors):
    from safetensors.torch import save_file

    path = tmp_path / name
    save_file(tensors, str(path))
    return path


def test_a_bad_lora_is_refused_in_one_line(cli, lora, tmp_path):
    base, file, _ = lora
    cases = {
        "not a lora": _bad(tmp_path, "weights.safetensors", {"conv.weight": torch.zeros(2, 2)}),
        "another model": _bad(
            tmp_path,
            "other.safetensors",
            {
                "unet.no_such.block.lora_A.weight": torch.zeros(4, 8),
                "unet.no_such.block.lora_B.weight": torch.zeros(8, 4),
            },
        ),
        "wrong shapes": _bad(
            tmp_path,
            "shapes.safetensors",
            {
                "unet.mid_block.resnets.0.conv1.lora_A.weight": torch.zeros(4, 3, 3, 3),
                "unet.mid_block.resnets.0.conv1.lora_B.weight": torch.zeros(7, 4, 1, 1),
            },
        ),
        "pickle": tmp_path / "lora.bin",
        "missing": tmp_path / "nothing.safetensors",
    }
    torch.save({"unet.a.lora_A.weight": torch.zeros(1)}, cases["pickle"])
    said = {}
    for case, path in cases.items():
        code, out, err = cli("sharpness", base, "--lora", path, *SHARP)
        assert code == 2, (case, err)
        assert len(err.strip().splitlines()) == 1 and "--lora" in err and "Traceback" not in err, (case, err)
        said[case] = err
    assert "no LoRA tensors" in said["not a lora"] and "pickle" in said["pickle"]
    assert "not in this UNet2DConditionModel" in said["another model"] and "do not fit" in said["wrong shapes"]


def test_a_kohya_layout_lora_is_converted_by_the_pipeline_to_the_same_weights(lora, tmp_path):
    from diffusers.utils import convert_state_dict_to_kohya
    from safetensors.torch import load_file, save_file

    import flatcheck

    base, file, _ = lora
    kohya = convert_state_dict_to_kohya(load_file(str(file)))  # lora_unet_..._to_q.lora_down.weight, .alpha
    kohya = {k: torch.tensor(ALPHA) if k.endswith(".alpha") else v for k, v in kohya.items()}
    save_file(kohya, str(tmp_path / "kohya.safetensors"))
    ours = flatcheck.load(base, lora=file)
    theirs = flatcheck.load(base, lora=tmp_path / "kohya.safetensors")
    assert theirs.lora.info.format == "kohya" and theirs.lora.info.alpha == ALPHA
    a, b = ours.denoiser.state_dict(), theirs.denoiser.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_full_precision_sensitivity_names_the_adapted_layers_by_their_own_names(cli, lora):
    base, file, _ = lora
    q = [*TINY, "--bits", "4", "--sensitivity-samples", "1", "--sensitivity-steps", "1", "--calib-samples", "2"]
    q += ["--no-fid"]
    full = _run(cli, "quantize", base, "--lora", file, "--lora-precision", "full", *q)
    plain = _run(cli, "quantize", base, *q)
    names = [r["name"] for r in full["quantize"]["sensitivity"]]
    assert names and not [n for n in names if "base_layer" in n or "lora_" in n]
    assert sorted(names) == sorted(r["name"] for r in plain["quantize"]["sensitivity"])
    assert set(full["model"]["lora"]["target_modules"]) <= set(names)


def test_params_lora_with_gradient_checkpointing_gives_the_same_numbers(cli, lora):
    base, file, _ = lora
    hessian = ["--measures", "hessian", "--hessian-probes", "2", "--lanczos-iters", "2", "--top-k", "1"]
    hessian += ["--hutchinson-draws", "2", "--buckets", "1"]
    args = ["sharpness", base, "--lora", file, "--params", "lora", *TINY, *hessian]
    plain, checkpointed = _run(cli, *args), _run(cli, *args, "--gradient-checkpointing")
    assert checkpointed["sharpness"]["config"]["gradient_checkpointing"] is True
    assert checkpointed["sharpness"]["parameters"] == 5616
    _close(plain["sharpness"], checkpointed["sharpness"], rel=1e-5)  # recomputed activations: float rounding


def test_sample_with_a_lora_gives_the_fused_samples_in_a_store_of_its_own(cli, lora, tmp_path):
    import numpy as np

    base, file, fused = lora
    s = ["--samples", "2", "--steps", "2", "--batch-size", "2", "--seed", "3", "--threads", "1"]
    for model, out in (([base, "--lora", file], "a"), ([fused], "b")):
        code, _, err = cli("sample", *model, *s, "--out", tmp_path / out)
        assert code == 0, err
    a, b = (np.load(tmp_path / o / "samples.npz")["images"] for o in "ab")
    assert np.array_equal(a, b)
    code, _, err = cli("sample", base, *s, "--out", tmp_path / "a")  # the base is another model than base+LoRA
    assert code == 2 and "another run" in err and len(err.strip().splitlines()) == 1


def test_gate_judges_base_plus_lora_and_rank_refuses_a_lora(cli, lora, tmp_path):
    base, file, _ = lora
    config = tmp_path / "gate.toml"
    config.write_text('[gate]\n[[gate.rules]]\nmetric = "fid.value"\nmax = 1e9\n')
    fast = ["--quick", *TINY, "--skip", "sharpness", "--skip", "quantize", "--data", "patches"]
    fast += ["--fid-features", "patches-cnn"]
    doc = _run(cli, "gate", base, "--config", config, "--lora", file, *fast)
    assert doc["gate"]["passed"] and doc["report"]["model"]["lora"]["path"] == str(file)
    assert doc["report"]["model"]["lora"]["parameters"] == 5616
    code, _, err = cli("rank", base, base / "unet", base / "vae", "--lora", file, *TINY)
    assert code == 2 and "rank takes no --lora" in err and len(err.strip().splitlines()) == 1


def test_dry_run_plans_params_lora_on_the_adapted_layers(cli, lora):
    """--dry-run with --lora: the plan knows the adapter (it was refused as 'none is loaded' before)."""
    from safetensors.torch import load_file

    base, file, _ = lora
    code, out, err = cli("sharpness", base, *SHARP, "--lora", file, "--params", "lora", "--dry-run", "--json", "-")
    assert code == 0, err
    plan = json.loads(out)
    net = families.load_pipeline(base, "sd").unet
    modules = dict(net.named_modules())
    targets = {k.split(".lora_")[0].removeprefix("unet.") for k in load_file(str(file))}
    adapted = sum(modules[t].weight.numel() for t in targets)  # the layers' weights stand in for the adapter
    assert plan["measured_parameters"] == adapted < plan["parameters"]
