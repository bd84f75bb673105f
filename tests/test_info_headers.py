"""`flatcheck info` reads configs and safetensors headers, never tensor data (issue 23, item 3).

Counts are checked against what loading gives (or, for sizes nothing here can load, against the class
built on the meta device from the same config).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import diffusers
import pytest
import safetensors
import safetensors.torch
import torch
from safetensors.torch import load_file, save_file

from benchmarks.gpu_families import FAMILIES
from benchmarks.realsize_build import stored_tensors, write_header_only, write_sharded
from flatcheck.core.checkpoint import bundled_models, load
from flatcheck.core.info import describe_checkpoint, dtype_label
from flatcheck.families import family_of
from flatcheck.results import document

from .conftest import make_unet

ROOT = Path(__file__).resolve().parents[1]


def on_meta(cls_name: str, config: dict):
    with torch.device("meta"):
        return getattr(diffusers, cls_name)(**config)


def header_only_model(folder: Path, module, dtype: str, shard_bytes: int | None = None) -> None:
    """A bare model folder: config.json and sparse safetensors whose headers list the module's tensors."""
    module.save_config(folder)
    write_sharded(folder, stored_tensors(module, dtype), "diffusion_pytorch_model", shard_bytes)


def no_tensor_may_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("info read tensor data")

    monkeypatch.setattr(safetensors.torch, "load_file", refuse)
    monkeypatch.setattr(safetensors.torch, "load", refuse)
    monkeypatch.setattr(safetensors, "safe_open", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(diffusers.ModelMixin, "from_pretrained", classmethod(refuse))


@pytest.fixture(scope="module")
def flux_dev(tmp_path_factory) -> tuple[Path, int]:
    """FLUX.1-dev's transformer, header-only: 11.9 B bfloat16 parameters in 3 sparse shards (23.8 GB long,
    no disk used); loading it in float32 would take 48 GB. Returns (folder, its parameter count)."""
    folder = tmp_path_factory.mktemp("flux-dev") / "transformer"
    module = on_meta("FluxTransformer2DModel", FAMILIES["flux-dev"]["config"])
    header_only_model(folder, module, "bfloat16", shard_bytes=10 * 10**9)
    return folder, sum(p.numel() for p in module.parameters())


def test_a_checkpoint_far_too_large_to_load_is_described_exactly(flux_dev, cli, monkeypatch):
    folder, parameters = flux_dev
    assert sum(f.stat().st_size for f in folder.glob("*.safetensors")) > 2 * 10**10  # the files have their real length
    no_tensor_may_load(monkeypatch)
    code, out, err = cli("info", folder, "--scheduler", _flow_scheduler(folder.parent), "--json", "-")
    assert code == 0, err
    info = json.loads(out)
    assert info["parameters"] == parameters == 11_901_408_320
    assert info["dtype"] == "bfloat16" and info["denoiser_class"] == "FluxTransformer2DModel"
    assert [w["path"] for w in info["weight_files"]] == [
        f"diffusion_pytorch_model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)
    ]
    assert info["sample_shape"] == [16, 128, 128] and info["prediction_type"] == "flow"


def _flow_scheduler(root: Path) -> str:
    folder = root / "scheduler"
    if not folder.exists():
        diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True).save_pretrained(folder)
    return str(folder)


def test_info_of_a_huge_checkpoint_stays_small_and_imports_no_torch(flux_dev, tmp_path):
    """A separate process, whose peak resident memory (VmHWM: since its exec, so not this pytest process's
    memory that a forked child's ru_maxrss inherits) is info's alone. torch's import alone is 750 MB here."""
    folder, parameters = flux_dev
    code = (
        "import json, re, sys; from flatcheck.cli import run; "
        f"rc = run(['info', {str(folder)!r}, '--json', {str(tmp_path / 'info.json')!r}]); "
        "hwm = int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)); "
        "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, 'diffusers': 'diffusers' in sys.modules, "
        "'kib': hwm}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (seen["rc"], seen["torch"], seen["diffusers"]) == (0, False, False)
    assert json.loads((tmp_path / "info.json").read_text())["parameters"] == parameters
    assert seen["kib"] < 500 * 1024  # not one tensor of the 23.8 GB was held


def test_sharded_weights_are_counted_and_variants_are_not(tmp_path, cli):
    folder = tmp_path / "sharded"
    unet = make_unet()
    unet.save_pretrained(folder, max_shard_size="40KB")
    shards = sorted(folder.glob("diffusion_pytorch_model-*.safetensors"))
    assert len(shards) >= 2 and (folder / "diffusion_pytorch_model.safetensors.index.json").is_file()
    unet.half().save_pretrained(folder, variant="fp16")  # beside it: diffusers loads the shards, not this
    assert (folder / "diffusion_pytorch_model.fp16.safetensors").is_file()
    loaded = load(str(folder)).num_parameters
    code, out, err = cli("info", folder, "--json", "-")
    assert code == 0, err
    info = json.loads(out)
    assert info["parameters"] == sum(p.numel() for p in make_unet().parameters()) == loaded
    assert info["dtype"] == "float32"
    assert {w["path"] for w in info["weight_files"]} == {p.name for p in shards}  # the files read: not the variant's
    code, out, err = cli("info", folder, "--variant", "fp16", "--json", "-")
    assert code == 0, err
    fp16 = json.loads(out)
    assert fp16["variant"] == "fp16" and fp16["dtype"] == "float16" and fp16["parameters"] == info["parameters"]
    assert [w["path"] for w in fp16["weight_files"]] == ["diffusion_pytorch_model.fp16.safetensors"]

    shards[-1].unlink()
    code, _, err = cli("info", folder)
    assert code == 2 and err.count("\n") == 1 and shards[-1].name in err


def test_several_dtypes_are_named_mixed(tmp_path, cli):
    folder = tmp_path / "mixed"
    make_unet().save_pretrained(folder)
    f = folder / "diffusion_pytorch_model.safetensors"
    sd = load_file(f)
    half = {k for k in sd if k.startswith("down_blocks")}
    save_file({k: v.to(torch.bfloat16) if k in half else v for k, v in sd.items()}, f)
    code, out, err = cli("info", folder, "--json", "-")
    assert code == 0, err
    n_half = sum(sd[k].numel() for k in half)
    n_rest = sum(v.numel() for v in sd.values()) - n_half
    first, second = ("bfloat16", "float32") if n_half > n_rest else ("float32", "bfloat16")
    assert json.loads(out)["dtype"] == f"mixed: {first}, {second}"
    assert dtype_label({"float32": 3}) == "float32" and dtype_label({"a": 1, "b": 2}) == "mixed: b, a"


@pytest.mark.parametrize("name", bundled_models())
def test_bundled_info_is_what_loading_describes(name, cli):
    code, out, err = cli("info", name, "--json", "-")
    assert code == 0, err
    assert json.loads(out) == document("info", describe_checkpoint(load(name)))


def test_a_pickle_is_read_for_its_tensors_only_when_allowed(tmp_path, cli):
    folder = tmp_path / "pickled"
    make_unet().half().save_pretrained(folder, safe_serialization=False)
    code, out, err = cli("info", folder, "--allow-pickle", "--json", "-")
    assert code == 0, err
    info = json.loads(out)
    assert info["parameters"] == sum(p.numel() for p in make_unet().parameters())
    assert (
        info["dtype"] == "float16" and info["weight_files"][0]["format"] == "pickle"
    )  # as stored (loading would say float32)


def test_a_class_flatcheck_does_not_run_is_counted_without_its_buffers(tmp_path, cli):
    from diffusers import UNet1DModel

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
    stored = load_file(tmp_path / "unet1d" / "diffusion_pytorch_model.safetensors")
    code, out, err = cli("info", tmp_path / "unet1d", "--json", "-")
    assert code == 0, err
    info = json.loads(out)
    loaded = load(str(tmp_path / "unet1d"), runnable=False)  # an audio UNet: described, not run
    assert (
        info["parameters"] == loaded.num_parameters < sum(t.numel() for t in stored.values())
    )  # its kernels are buffers
    assert info == document("info", describe_checkpoint(loaded))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_declared_stored_buffers_are_the_classes_own(family):
    """Family.stored_buffers, which info subtracts from header counts, against each class built on the
    meta device from its published config: exactly the persistent buffers it saves."""
    spec = FAMILIES[family]
    module = on_meta(spec["cls"], spec["config"])
    buffers = set(module.state_dict()) - {n for n, _ in module.named_parameters()}
    declared = set(family_of(spec["cls"], module.config).stored_buffers)
    assert buffers == declared & set(module.state_dict())
    assert buffers <= declared


def test_sparse_header_only_files_are_valid_safetensors(tmp_path):
    path = tmp_path / "t.safetensors"
    size = write_header_only(path, {"b": ("bfloat16", (3, 5)), "a": ("float32", (7,))})
    assert path.stat().st_size == size
    with safetensors.safe_open(path, "pt") as f:
        assert sorted(f.keys()) == ["a", "b"]
        assert f.get_tensor("b").dtype == torch.bfloat16 and f.get_tensor("b").abs().sum() == 0  # a hole reads as zeros


def test_the_device_form_info_checks_is_what_resolve_device_accepts():
    from flatcheck.core.run_options import check_device_form
    from flatcheck.core.runtime import resolve_device
    from flatcheck.errors import InputError

    for name in (
        "auto",
        "cpu",
        "CPU",
        "cpu:0",
        "cuda",
        "cuda:1",
        "mps",
        "tpu",
        "xpu",
        "cuda:x",
        "gpu",
        "meta",
        "cuda:0:1",
    ):
        try:
            check_device_form(name)
            form_ok = True
        except InputError:
            form_ok = False
        try:
            resolve_device(name)
            runs = True
        except InputError as exc:
            runs = "not available" in str(exc) or "does not exist" in str(exc)  # the right form, absent here
        assert form_ok == runs, name
