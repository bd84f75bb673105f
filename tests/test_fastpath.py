"""The fast path (core.fastpath): mixed precision, channels_last and torch.compile change how the
denoiser computes, not what flatcheck measures; every report says which ran."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from flatcheck.core import fastpath
from flatcheck.core.denoiser import Denoiser
from flatcheck.core.fastpath import FastPath
from flatcheck.core.params import measured_parameters
from flatcheck.core.probes import build_probe_bank
from flatcheck.core.runtime import environment
from flatcheck.core.sampling import sample
from flatcheck.errors import InputError
from flatcheck.measures.sharpness.hessian import BankLoss
from flatcheck.results import validate

from .conftest import make_scheduler, make_unet

STEPS, N = 4, 4


def denoiser(fast: FastPath | None = None) -> Denoiser:
    return Denoiser(make_unet(), make_scheduler(), fast=fast)


def samples(den: Denoiser) -> torch.Tensor:
    return sample(den, den.scheduler, STEPS, N, seed=0, batch_size=N)


def small_bank(den: Denoiser, n: int = 6):
    data = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return build_probe_bank(den, n=n, seed=0, data=data)


def test_bf16_autocast_runs_the_net_in_bf16_and_hands_back_float32_close_to_fp32():
    ref = samples(denoiser())
    den = denoiser(FastPath("bf16"))
    seen = []
    den.net.conv_in.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    x = samples(den)
    assert set(seen) == {torch.bfloat16}  # the convolutions computed in bf16 ...
    assert den.dtype == torch.float32 and x.dtype == torch.float32  # ... the weights and the results did not
    assert not torch.equal(x, ref)
    rel = float((x - ref).norm() / ref.norm())
    assert rel < 0.05, rel


def test_loss_gradient_and_hvp_under_autocast_are_float32_and_close_to_fp32():
    out = {}
    for name, fast in (("fp32", FastPath()), ("bf16", FastPath("bf16"))):
        den = denoiser(fast)
        bank = small_bank(den)
        x_t = den.add_noise(bank.x0, bank.t, bank.noise)
        assert den.raw_output(x_t, bank.t).dtype == torch.float32
        params = [p for _, p in measured_parameters(den.net)]
        op = BankLoss(den, bank, params, batch_size=6)
        assert op._chunk_loss(torch.arange(6)).dtype == torch.float32  # what autograd differentiates
        losses, grad = op.value_and_grad()
        v = torch.randn(op.dim, generator=torch.Generator().manual_seed(1))
        hv = op.hvp(v)
        assert grad.dtype == torch.float32 and hv.dtype == torch.float32 and torch.isfinite(hv).all()
        out[name] = losses, grad, hv
    for a, b in zip(out["fp32"], out["bf16"]):
        assert not torch.equal(a, b)  # autocast ran in the gradient and double-backward paths too
        assert float((a - b).norm() / a.norm()) < 0.1


def test_channels_last_gives_the_default_layout_numbers():
    plain = denoiser()
    fast = Denoiser(copy.deepcopy(plain.net), make_scheduler(), fast=FastPath(channels_last=True))
    conv = "down_blocks.0.resnets.0.conv1.weight"  # 8 -> 8 channels (a 1-channel weight is both layouts at once)
    assert fast.net.get_parameter(conv).is_contiguous(memory_format=torch.channels_last)
    assert not plain.net.get_parameter(conv).is_contiguous(memory_format=torch.channels_last)
    assert list(fast.net.state_dict()) == list(plain.net.state_dict())
    a, b = samples(plain), samples(fast)
    assert b.is_contiguous()
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    bank = small_bank(plain)
    with torch.no_grad():
        la, lb = plain.loss(bank.x0, bank.t, bank.noise), fast.loss(bank.x0, bank.t, bank.noise)
    assert abs(lb.item() - la.item()) <= 1e-5 * abs(la.item())


class Counting:
    """Wraps the compiled callable to see when the denoiser uses it."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_compile_gives_eager_samples_for_plain_no_grad_forwards_only(monkeypatch):
    monkeypatch.setenv(fastpath.ENV_COMPILE_BACKEND, "eager")  # the plumbing, without inductor's code generation
    eager = denoiser()
    den = denoiser(FastPath(compile=True))
    den._compiled = counting = Counting(den._compiled)
    assert list(den.net.state_dict()) == list(eager.net.state_dict())  # the eager module is the one kept
    torch.testing.assert_close(samples(den), samples(eager), rtol=1e-5, atol=1e-6)
    assert counting.calls == STEPS
    assert environment()["compile"] == {"backend": "eager", "used": True, "fallback": None}

    bank = small_bank(eager, n=N)  # the batch size sampling compiled for: no second trace
    calls = counting.calls
    loss = den.loss(bank.x0, bank.t, bank.noise)  # gradients on: the eager module
    loss.backward()
    assert counting.calls == calls and den.net.conv_in.weight.grad is not None
    hook = den.net.conv_in.register_forward_pre_hook(lambda m, args: None)  # quantization's hooks: eager
    with torch.no_grad():
        den.loss(bank.x0, bank.t, bank.noise)
    assert counting.calls == calls
    hook.remove()
    swapped = den.net.conv_in
    den.net.conv_in = copy.deepcopy(swapped)  # bitsandbytes' module swap: eager
    with torch.no_grad():
        den.loss(bank.x0, bank.t, bank.noise)
    assert counting.calls == calls
    den.net.conv_in = swapped
    with torch.no_grad():
        den.loss(bank.x0, bank.t, bank.noise)
    assert counting.calls == calls + 1


def test_a_compile_that_fails_falls_back_to_eager_with_one_warning_line(monkeypatch, capsys):
    from torch._dynamo import register_backend

    @register_backend(name="flatcheck_test_broken")
    def broken(gm, example_inputs):  # noqa: ARG001
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setenv(fastpath.ENV_COMPILE_BACKEND, "flatcheck_test_broken")
    ref = samples(denoiser())
    den = denoiser(FastPath(compile=True))  # the last Denoiser built is the one the environment describes
    torch.testing.assert_close(samples(den), ref, rtol=1e-5, atol=1e-6)
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "--compile" in warning[0] and "no C++ compiler here" in warning[0]
    compiled = environment()["compile"]
    assert compiled["used"] is False and "no C++ compiler here" in compiled["fallback"]
    assert den._compiled is None  # the rest of the run is eager: no second try, no second warning


def test_mixed_precision_default_comes_from_accelerate_and_bad_values_are_refused(monkeypatch):
    monkeypatch.delenv(fastpath.ENV_MIXED_PRECISION, raising=False)
    assert fastpath.resolve(None).mixed_precision == "no"
    monkeypatch.setenv(fastpath.ENV_MIXED_PRECISION, "bf16")
    assert fastpath.resolve(None).mixed_precision == "bf16"
    assert fastpath.resolve("no").mixed_precision == "no"  # the option wins over the launcher
    monkeypatch.setenv(fastpath.ENV_MIXED_PRECISION, "fp8")
    with pytest.raises(InputError, match="ACCELERATE_MIXED_PRECISION 'fp8'"):
        fastpath.resolve(None)
    with pytest.raises(InputError, match="no autocast for device type 'meta'"):
        fastpath.resolve("fp16", device="meta")
    # A torch that silently disables autocast for the dtype (older CPU builds and fp16) is refused.
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda *a: False)
    with pytest.raises(InputError, match="does not autocast to fp16 on cpu"):
        fastpath.resolve("fp16", device="cpu")

    def no_bf16(*args, **kwargs):  # what torch says on a GPU without bf16
        raise RuntimeError("Current CUDA Device does not support bfloat16. Please switch dtype to float16.")

    monkeypatch.setattr(torch, "autocast", no_bf16)
    with pytest.raises(InputError, match="bf16: Current CUDA Device does not support bfloat16"):
        fastpath.resolve("bf16", device="cpu")


def test_cli_refuses_bad_values_with_exit_2(cli, tiny_pipeline, monkeypatch):
    code, out, err = cli("info", tiny_pipeline, "--mixed-precision", "fp8")
    assert code == 2 and err.count("\n") == 1 and "--mixed-precision 'fp8' is not supported" in err
    monkeypatch.setenv(fastpath.ENV_MIXED_PRECISION, "int4")
    code, out, err = cli("info", tiny_pipeline)
    assert code == 2 and "ACCELERATE_MIXED_PRECISION 'int4'" in err


def test_the_report_records_how_the_denoiser_computed(cli, tiny_pipeline, monkeypatch):
    monkeypatch.setenv(fastpath.ENV_MIXED_PRECISION, "bf16")  # as `accelerate launch --mixed_precision bf16` sets it
    monkeypatch.setenv(fastpath.ENV_COMPILE_BACKEND, "eager")
    code, out, err = cli(
        "fid",
        tiny_pipeline,
        "--ref",
        "digits",
        "--features",
        "digits-cnn",
        "--samples",
        "4",
        "--steps",
        "2",
        "--bootstrap",
        "5",
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--channels-last",
        "--compile",
        "--json",
        "-",
    )
    assert code == 0, err
    doc = json.loads(out)
    assert validate(doc) == []
    env = doc["environment"]
    assert env["mixed_precision"] == "bf16" and env["channels_last"] is True
    assert env["compile"] == {"backend": "eager", "used": True, "fallback": None}
    monkeypatch.delenv(fastpath.ENV_MIXED_PRECISION)
    code, out, err = cli(
        "fid",
        tiny_pipeline,
        "--ref",
        "digits",
        "--features",
        "digits-cnn",
        "--samples",
        "4",
        "--steps",
        "2",
        "--bootstrap",
        "5",
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--json",
        "-",
    )
    assert code == 0, err
    env = json.loads(out)["environment"]
    assert (env["mixed_precision"], env["channels_last"], env["compile"]) == ("no", False, None)


def test_quantize_under_compile_states_no_time_ratio(cli, tiny_pipeline, monkeypatch):
    """Full precision samples compiled (and pays the compilation), the quantized settings run eager (their
    hooks): their time ratio would compare unlike runs, so the report gives none; the drift is unchanged."""
    monkeypatch.setenv(fastpath.ENV_COMPILE_BACKEND, "eager")
    args = [
        "quantize",
        tiny_pipeline,
        "--bits",
        "8",
        "--sensitivity-samples",
        "0",
        "--samples",
        "4",
        "--steps",
        "2",
        "--probes",
        "4",
        "--calib-samples",
        "2",
        "--no-fid",
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--json",
        "-",
    ]
    runs = {}
    for compiled in (False, True):
        code, out, err = cli(*args, *(["--compile"] if compiled else []))
        assert code == 0, err
        runs[compiled] = json.loads(out)["quantize"]["settings"][0]
    assert runs[False]["time_ratio"] is not None and runs[True]["time_ratio"] is None
    assert runs[True]["relative_mse"] == runs[False]["relative_mse"]
