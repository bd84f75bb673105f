"""What core.memory's two meters cost and say, on a bundled model (not a test: no wall-clock asserts).

    .venv/bin/python benchmarks/bench_memory.py [MODEL] [--batch 64] [--repeats 7]

1. LiveTensors' overhead: one forward+backward of the denoiser's network (an MSE loss, batch 64)
   with and without the mode, and under a dispatch mode that does nothing (what any Python dispatch
   mode costs per op), as medians of interleaved repeats (a busy machine slows all three alike).
2. The network's tensor memory sized on the meta device against the same code on the CPU: peak live
   bytes and storages at the peak, with the default attention kernel and with the math kernel (on the
   meta device attention always takes the math path; on the CPU it takes the fused flash kernel).
3. PeakMemory's view of the same CPU pass: the peak RSS above the pass's start, for comparison with
   LiveTensors' peak (RSS includes the allocator's rounding, what glibc keeps, and kernel workspaces).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode


class DoNothing(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def step(net, x, t):
    out = net(x, t).sample
    out.square().mean().backward()
    net.zero_grad(set_to_none=True)


def sized(net_on, device: str, batch: int, math: bool) -> tuple[int, int]:
    """(peak live bytes, storages alive at the peak) of one forward+backward on `device`."""
    from flatcheck.core.memory import LiveTensors

    net = net_on(device)
    shape = (batch, net.config.in_channels, net.config.sample_size, net.config.sample_size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    t = torch.full((batch,), 500, device=device)
    with sdpa_kernel(SDPBackend.MATH) if math else _nothing(), LiveTensors() as live:
        step(net, x, t)
    return live.peak_bytes, live.count_at_peak


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="digits-base")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1 (got {args.repeats})")

    from flatcheck.core.checkpoint import load
    from flatcheck.core.memory import LiveTensors, PeakMemory

    net = load(args.model).denoiser.float().requires_grad_(True)  # loaded frozen: the pass needs weight gradients
    config = dict(net.config)

    def net_on(device: str):
        if device == "cpu":
            return net
        with torch.device(device):  # same architecture, no weights read: parameters on meta
            return type(net).from_config(config)

    n_params = sum(p.numel() for p in net.parameters())
    shape = (args.batch, net.config.in_channels, net.config.sample_size, net.config.sample_size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((args.batch,), 500)
    step(net, x, t)  # warm-up
    plain, traced, idle = [], [], []
    for _ in range(args.repeats):
        for times, mode in ((plain, _nothing), (traced, LiveTensors), (idle, DoNothing)):
            t0 = time.perf_counter()
            with mode():
                step(net, x, t)
            times.append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(plain, traced)]
    idle_ratios = [b / a for a, b in zip(plain, idle)]
    print(f"model {args.model} ({n_params:,} parameters), batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(
        f"forward+backward: {statistics.median(plain) * 1000:.0f} ms plain, {statistics.median(traced) * 1000:.0f} ms "
        f"under LiveTensors; ratio {statistics.median(ratios):.2f} median ({min(ratios):.2f}-{max(ratios):.2f}), "
        f"{args.repeats} interleaved repeats; a dispatch mode that does nothing: {statistics.median(idle_ratios):.2f}"
    )
    for math in (False, True):
        meta, cpu = sized(net_on, "meta", args.batch, math), sized(net_on, "cpu", args.batch, math)
        kernel = "math attention" if math else "default attention"
        print(
            f"{kernel}: peak live tensors meta {meta[0]:,} B ({meta[1]} storages), cpu {cpu[0]:,} B ({cpu[1]} "
            f"storages); meta/cpu {meta[0] / cpu[0]:.4f}"
        )
    with PeakMemory("cpu") as mem:
        step(net, x, t)
    # Earlier passes left freed pages with the process (glibc keeps them): RSS above the start is what a
    # warm process adds, less than the tensors' bytes.
    print(
        f"PeakMemory ({mem.kind}): {(mem.peak_bytes - mem.start_bytes) / 2**20:.1f} MiB above the pass's start, "
        f"{mem.peak_bytes / 2**20:.0f} MiB in all (LiveTensors, default attention: "
        f"{sized(net_on, 'cpu', args.batch, False)[0] / 2**20:.1f} MiB of tensors)"
    )


if __name__ == "__main__":
    main()
