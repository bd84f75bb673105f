"""core.memory: the process's peak per phase (PeakMemory) and the tensors ops create (LiveTensors)."""

from __future__ import annotations

import pytest
import torch

from flatcheck.core import memory
from flatcheck.core.memory import LiveTensors, PeakMemory, current_rss, process_peak

MB = 2**20
F32 = 4  # bytes
# Linux keeps RSS in per-CPU counters and reads them approximately (VmRSS/VmHWM were up to 0.13 MB
# short of an allocation here): sizes read back from RSS are compared with this much slack.
RSS_SLACK = 1 * MB


def _touch(nbytes: int) -> None:
    """Allocate nbytes and write every page (torch.empty would leave them unmapped: no RSS), then free."""
    x = torch.ones(nbytes // F32)
    del x


# ---------------------------------------------------------------------------- PeakMemory
def test_a_phase_that_frees_300_mb_reports_them_and_a_quiet_phase_after_it_does_not():
    with PeakMemory("cpu") as run:
        with PeakMemory("cpu") as busy:
            _touch(300 * MB)
        with PeakMemory("cpu") as quiet:
            torch.ones(10).sum()
    assert busy.kind in ("rss", "rss_since_start") and busy.start_bytes == pytest.approx(current_rss(), abs=200 * MB)
    assert busy.peak_bytes - busy.start_bytes >= 300 * MB - RSS_SLACK
    # The run's peak keeps the busy phase although the quiet phase reset the kernel's mark after it.
    assert run.peak_bytes >= busy.peak_bytes and run.peak_bytes - run.start_bytes >= 300 * MB - RSS_SLACK
    if quiet.kind == "rss_since_start":
        pytest.skip("this machine cannot reset the RSS high-water mark (/proc/self/clear_refs not writable)")
    assert quiet.kind == "rss" and quiet.peak_bytes < busy.peak_bytes
    assert quiet.peak_bytes - quiet.start_bytes < 300 * MB


def test_peak_is_readable_inside_the_block_and_includes_earlier_inner_phases():
    with PeakMemory() as outer:
        with PeakMemory():
            _touch(100 * MB)
        so_far = outer.peak_bytes  # read while open
        with PeakMemory():
            pass
    assert so_far - outer.start_bytes >= 100 * MB - RSS_SLACK and outer.peak_bytes >= so_far


def test_process_peak_keeps_the_peak_that_a_reset_made_the_kernel_forget():
    start = current_rss()
    _touch(300 * MB)
    with PeakMemory():  # resets VmHWM (and with it ru_maxrss, what `time -v` reads) to about `start`
        pass
    assert process_peak() - start >= 300 * MB - RSS_SLACK


def test_without_clear_refs_the_peak_is_the_process_peak_and_says_so(monkeypatch, tmp_path):
    """A container whose /proc is read-only (EROFS) or lacks clear_refs: no reset, labelled as such."""
    monkeypatch.setattr(memory, "_CLEAR_REFS", str(tmp_path / "no-such-dir" / "clear_refs"))
    monkeypatch.setattr(memory, "_clear_refs_works", None)
    x = torch.ones(50 * MB // F32)
    held = current_rss()  # the RSS with the 50 MB in it: the process's peak since it started is at least this
    del x
    with PeakMemory() as mem:
        pass
    assert mem.kind == "rss_since_start" and "since it started" in mem.how
    # (an earlier test may have left the process's peak higher still, and freed memory in the heap: the
    # difference to the start is not asserted)
    assert mem.peak_bytes >= mem.start_bytes and mem.peak_bytes >= held - RSS_SLACK


def test_cuda_phases_nest_on_the_allocator_counters(monkeypatch):
    """The CUDA path against a fake caching allocator (this machine has no GPU): the inner reset of
    max_memory_allocated must not lose the outer peak."""
    state = {"allocated": 1000, "peak": 1000, "reserved": 4000, "reserved_peak": 4000}

    def alloc(n):
        state["allocated"] += n
        state["peak"] = max(state["peak"], state["allocated"])
        state["reserved"] = max(state["reserved"], state["allocated"])
        state["reserved_peak"] = max(state["reserved_peak"], state["reserved"])

    def reset(device=None):
        state["peak"], state["reserved_peak"] = state["allocated"], state["reserved"]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: state["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: state["peak"])
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: state["reserved_peak"])
    with PeakMemory("cuda") as run:
        with PeakMemory("cuda") as a:
            alloc(5000)
            alloc(-5000)
        with PeakMemory("cuda") as b:
            alloc(200)
            alloc(-200)
    assert run.device == torch.device("cuda", 0) and run.kind == "cuda_max_allocated"
    assert (a.start_bytes, a.peak_bytes, a.reserved_peak_bytes) == (1000, 6000, 6000)
    assert (b.start_bytes, b.peak_bytes, b.reserved_peak_bytes) == (
        1000,
        1200,
        6000,
    )  # reserved stays: the cache keeps it
    assert (run.peak_bytes, run.reserved_peak_bytes) == (6000, 6000)
    assert process_peak("cuda") == 6000  # the allocator's own max_memory_allocated now says 1200 (since b's reset)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_cuda_peak_on_a_real_gpu():
    with PeakMemory("cuda") as run:
        with PeakMemory("cuda") as busy:
            x = torch.empty(64 * MB, dtype=torch.uint8, device="cuda")
            del x
        with PeakMemory("cuda") as quiet:
            pass
    assert busy.peak_bytes - busy.start_bytes >= 64 * MB and quiet.peak_bytes - quiet.start_bytes < 64 * MB
    assert run.peak_bytes >= busy.peak_bytes and run.reserved_peak_bytes >= run.peak_bytes


# ---------------------------------------------------------------------------- LiveTensors
def test_live_tensors_closed_form():
    """Known sizes: new storages counted, views / in-place / pre-existing storages not; out= resizes."""
    weight = torch.zeros(250)  # 1000 B, from before the block
    with LiveTensors(min_bytes=4000) as live:
        a = torch.empty(1000)  # 4000 B
        b = torch.empty(500)  # 2000 B, below min_bytes
        assert (live.live_bytes, live.live_count) == (6000, 1)
        c = torch.cat([a, a])  # 8000 B
        v, w = c[:10], c.view(2, 1000)  # views of a counted storage
        c.add_(1)
        weight.view(-1).mul_(2)  # a view and an in-place op on a storage from before: nothing
        assert (live.live_bytes, live.live_count) == (14000, 2)
        o = torch.empty(0)  # 0 B, then resized by out= to 8000 B
        torch.cat([a, a], out=o)
        assert (live.live_bytes, live.live_count, live.peak_count) == (22000, 3, 3)
        del o, a
        assert live.live_bytes == 10000
        d = torch.empty(3000)  # 12000 B: live 22000 again, not above the peak
        del c
        assert live.live_bytes == 22000  # views keep c's storage alive
        del v, w
        assert (live.live_bytes, live.live_count) == (14000, 1)
        e = torch.empty(12500)  # 50000 B: the byte peak, with only b, d and e alive
        assert (live.peak_bytes, live.count_at_peak, live.peak_count) == (64000, 2, 3)
    del b, d, e
    assert (live.live_bytes, live.live_count) == (0, 0)  # followed after the block too
    live.reset_peak()
    assert (live.peak_bytes, live.peak_count, live.count_at_peak) == (0, 0, 0)


def test_a_tensor_saved_only_by_autograd_stays_counted_until_backward_frees_it():
    w = torch.randn(1000, requires_grad=True)
    with LiveTensors() as live:
        y = w.exp()  # exp saves its result for backward
        loss = y.sum()
        del y  # now held only by the graph
        assert live.live_bytes == 1000 * F32 + F32
        loss.backward()  # frees the saved result; w.grad (new, 4000 B) stays
    assert live.live_bytes == F32 + w.grad.nbytes
    assert live.peak_bytes >= 2 * 1000 * F32 + F32  # saved result and the gradient alive together


def test_storages_die_exactly_when_their_last_view_goes():
    with LiveTensors() as live:
        x = torch.ones(100)
        tail = x[50:]
        del x
        assert live.live_bytes == 100 * F32
        del tail
        assert live.live_bytes == 0


def _tiny_unet_step(device: str):
    from diffusers import UNet2DModel

    from tests.conftest import TINY_UNET

    torch.manual_seed(0)
    with torch.device(device):
        net = UNet2DModel(**TINY_UNET)
    params = sum(p.numel() for p in net.parameters())
    x = torch.randn(4, 1, 8, 8).to(device)
    t = torch.tensor([10, 200, 500, 900], device=device)
    with LiveTensors(min_bytes=params * F32 // 8) as live:
        net(x, t).sample.square().mean().backward()
        grads = sum(p.grad.nbytes for p in net.parameters())
    return live, grads


def test_meta_forward_backward_sizes_the_same_tensors_as_the_cpu():
    """A tiny UNet2DModel's forward+backward on meta (nothing allocated) gives the CPU's peak exactly when
    both take the same attention kernel. (CPU attention otherwise takes the fused flash kernel, which
    keeps less than the math path that meta takes: benchmarks/bench_memory.py prints both.)"""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        meta, meta_grads = _tiny_unet_step("meta")
        cpu, cpu_grads = _tiny_unet_step("cpu")
    assert meta.peak_bytes > meta_grads > 0 and meta_grads == cpu_grads
    assert meta.peak_bytes == cpu.peak_bytes
    assert meta.count_at_peak == cpu.count_at_peak and meta.peak_count == cpu.peak_count
