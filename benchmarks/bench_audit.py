"""How long `flatcheck audit --quick` takes on a bundled model, in units of one forward pass.

Wall-clock seconds depend on the machine and on whatever else runs on it, so this script
measures, in one run, the time of one forward pass of the denoiser (batch 64) and of a whole
quick audit, and prints the audit as a multiple of that forward pass, per area. Multiply by a
forward pass on the target machine to predict the audit there.

    python benchmarks/bench_audit.py [MODEL]
"""

from __future__ import annotations

import sys
import time

import torch


def forward_seconds(denoiser, repeats: int = 5) -> float:
    x = torch.randn(64, *denoiser.sample_shape)
    t = torch.full((64,), 500)
    with torch.no_grad():
        denoiser.model_output(x, t)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            denoiser.model_output(x, t)
    return (time.perf_counter() - t0) / repeats


def main(model: str = "digits-base") -> None:
    from flatcheck.audit import audit_checkpoint, options_for
    from flatcheck.core.checkpoint import load
    from flatcheck.core.denoiser import Denoiser

    ckpt = load(model)
    fwd_before = forward_seconds(Denoiser.from_checkpoint(ckpt))
    t0 = time.perf_counter()
    report = audit_checkpoint(ckpt, options_for("quick"))
    total = time.perf_counter() - t0
    fwd = (fwd_before + forward_seconds(Denoiser.from_checkpoint(ckpt))) / 2  # load drifts: average before/after
    print(f"model {model}; torch threads {torch.get_num_threads()}")
    print(f"forward pass, batch 64: {fwd * 1000:.0f} ms (before {fwd_before * 1000:.0f} ms)")
    print(f"quick audit: {total:.1f} s = {total / fwd:.0f} forward passes")
    for stage, seconds in report.timings.items():
        print(f"  {stage:10s} {seconds:7.1f} s  {seconds / fwd:6.0f} forward passes  {seconds / total:6.1%}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
