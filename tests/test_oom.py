"""Out-of-memory backoff (core.oom), tested on CPU by raising CUDA's out-of-memory error from the network."""

from __future__ import annotations

import pytest
import torch

from flatcheck.core import oom
from flatcheck.core.denoiser import Denoiser
from flatcheck.core.sampling import StepReducer, make_sampler, sample
from flatcheck.errors import RunError

from .conftest import make_scheduler, make_unet


def limited(den: Denoiser, most: int) -> Denoiser:
    """The network raises torch.cuda.OutOfMemoryError on batches larger than `most` (as a too small GPU would)."""
    net = den.net

    def pre(module, args, kwargs):
        if kwargs["sample"].shape[0] > most:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    net.register_forward_pre_hook(pre, with_kwargs=True)
    return den


def test_sampling_halves_the_batch_and_gives_the_same_samples():
    oom.reset()
    sched = make_sampler(make_scheduler(), "ddim")
    want = sample(Denoiser(make_unet(), make_scheduler()), sched, 3, 7, seed=1, batch_size=2)
    got = sample(limited(Denoiser(make_unet(), make_scheduler()), 2), sched, 3, 7, seed=1, batch_size=8)
    # the halves are 3+4 -> 1+2+2+2, not want's 2+2+2+1: equal up to batch-size float noise
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert oom.describe() == [{"where": "sampling", "requested": 8, "used": 1}]


def test_probe_losses_back_off_and_a_single_item_that_does_not_fit_is_one_error():
    from flatcheck.core.probes import bank_losses, probe_bank

    oom.reset()
    bank = probe_bank(torch.rand(6, 1, 8, 8) * 2 - 1, 6, 0, (0, 1000), "test")
    den = Denoiser(make_unet(), make_scheduler())
    want = bank_losses(den, bank, 6)
    torch.testing.assert_close(
        bank_losses(limited(Denoiser(make_unet(), make_scheduler()), 3), bank, 6), want, rtol=0, atol=1e-6
    )
    with pytest.raises(RunError, match="even at batch size 1"):
        bank_losses(limited(Denoiser(make_unet(), make_scheduler()), 0), bank, 6)


def test_no_retry_once_hooks_have_seen_the_batch():
    """Out of memory in a later step, after hooks recorded step 0: a retry would count it twice, so it stops."""
    den = Denoiser(make_unet(), make_scheduler())
    calls = []

    def pre(module, args, kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    den.net.register_forward_pre_hook(pre, with_kwargs=True)
    with pytest.raises(RunError, match="smaller --batch-size"):
        sample(
            den,
            make_sampler(make_scheduler(), "ddim"),
            3,
            4,
            seed=0,
            batch_size=4,
            hooks=[StepReducer(lambda r: r.eps.flatten(1).norm(dim=1))],
        )


def test_the_audit_report_states_the_backoff(tiny_pipeline, tmp_path, monkeypatch):
    import json

    from flatcheck.cli import run
    from flatcheck.core import checkpoint

    real = checkpoint.load

    def load(*a, **k):
        ck = real(*a, **k)
        limited(Denoiser(ck.denoiser, ck.scheduler), 4)
        return ck

    monkeypatch.setattr(checkpoint, "load", load)
    out = tmp_path / "a.json"
    assert (
        run(
            [
                "quantize",
                str(tiny_pipeline),
                "--samples",
                "8",
                "--steps",
                "2",
                "--probes",
                "8",
                "--batch-size",
                "8",
                "--bits",
                "8",
                "--calib-samples",
                "4",
                "--sensitivity-samples",
                "0",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    env = json.loads(out.read_text())["environment"]
    assert {"where": "sampling", "requested": 8, "used": 4} in env["batch_backoff"]


def test_threads_default_to_the_cpus_the_process_may_use_and_never_raise_a_pin():
    from flatcheck.core.threads import available_cpus, set_threads

    n = torch.get_num_threads()
    try:
        assert 1 <= available_cpus() <= (__import__("os").cpu_count() or 1)
        torch.set_num_threads(1)
        assert set_threads(None) == 1  # a pinned caller (tests pin 1) is not raised
        assert set_threads(2) == 2 and torch.get_num_threads() == 2
        with pytest.raises(Exception, match="must be >= 1"):
            set_threads(0)
    finally:
        torch.set_num_threads(n)


def test_hessian_vector_products_and_gradients_back_off_to_pieces_that_fit():
    """The Hessian's gradients and HVPs cut this process's chunks in halves until they fit (no graph is kept
    then); the numbers equal those computed at full size, the backoff is recorded, and one probe that
    does not fit is one error line."""
    from flatcheck.core.params import measured_parameters
    from flatcheck.core.probes import probe_bank
    from flatcheck.measures.sharpness.hessian import BankLoss

    oom.reset()
    bank = probe_bank(
        torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1, 8, 0, (0, 1000), "test"
    )
    groups = torch.tensor([0, 1, 0, 1, 0, 0, 1, 1])

    def op_of(den):
        return BankLoss(den, bank, [p for _, p in measured_parameters(den.net)], batch_size=8, groups=groups)

    torch.manual_seed(0)
    want = op_of(Denoiser(make_unet(), make_scheduler()))
    torch.manual_seed(0)
    small = op_of(limited(Denoiser(make_unet(), make_scheduler()), 2))
    v = torch.randn(want.dim, generator=torch.Generator().manual_seed(1))

    def close(a, b):  # float32 sums in another order: relative to the whole vector
        return float((a - b).norm() / b.norm()) < 1e-5

    assert close(small.hvp(v), want.hvp(v))
    assert small.pieces == 4 and not small.keeps and not small._graphs
    hv, quad = small.hvp_by_group(v)
    hv_want, quad_want = want.hvp_by_group(v)
    assert close(hv, hv_want) and quad == pytest.approx(quad_want, rel=1e-4)
    (loss, grad), (loss_want, grad_want) = small.value_and_grad(), want.value_and_grad()
    torch.testing.assert_close(loss, loss_want, rtol=0, atol=1e-6)
    assert close(grad, grad_want)
    assert {"where": "sharpness gradients and HVPs", "requested": 8, "used": 2} in oom.describe()
    torch.manual_seed(0)
    with pytest.raises(RunError, match="even at one probe"):
        op_of(limited(Denoiser(make_unet(), make_scheduler()), 0)).hvp(v)
