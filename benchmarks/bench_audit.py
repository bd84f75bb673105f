"""How long `flatcheck audit --quick` takes on a bundled model, in units of one forward pass.

Wall-clock seconds depend on the machine and on whatever else runs on it, so this script
measures, in one run, the time of one forward pass of the denoiser (batch 64) and of a whole
quick audit, and prints the audit as a multiple of that forward pass, per area. Multiply by a
forward pass on the target machine to predict the audit there. The audit is repeated (after the
process's first audit, printed alone: it pays lazy imports and data loading) and each repeat is
divided by the forward passes timed just before and after it; the median and the range over
repeats are printed, because a shared 2-core machine moves single runs by 10-20%.

    python benchmarks/bench_audit.py [MODEL] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="digits-base")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1 (got {args.repeats})")

    from flatcheck.auditing import audit_checkpoint, options_for
    from flatcheck.core.checkpoint import load
    from flatcheck.core.denoiser import Denoiser

    ckpt = load(args.model)
    denoiser = Denoiser.from_checkpoint(ckpt)
    before = forward_seconds(denoiser)
    t0 = time.perf_counter()
    audit_checkpoint(ckpt, options_for("quick"))  # the first audit of the process: first calls (lazy imports, data) too
    first = time.perf_counter() - t0
    after = forward_seconds(denoiser)
    first_fwd = first / ((before + after) / 2)
    totals, stages, fwds = [], [], []
    before = after
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        report = audit_checkpoint(ckpt, options_for("quick"))
        total = time.perf_counter() - t0
        after = forward_seconds(denoiser)
        fwd = (before + after) / 2  # load drifts: the forward passes on either side of this audit
        totals.append(total / fwd)
        stages.append({k: v / fwd for k, v in report.timings.items()})
        fwds.append(fwd)
        before = after
    print(
        f"model {args.model}; torch threads {torch.get_num_threads()}; the first audit of the process, then "
        f"{args.repeats} repeats"
    )
    print(f"first audit (its first calls included): {first:.1f} s = {first_fwd:.0f} forward passes")
    print(
        f"forward pass, batch 64: {statistics.median(fwds) * 1000:.0f} ms median "
        f"({min(fwds) * 1000:.0f}-{max(fwds) * 1000:.0f})"
    )
    print(f"quick audit: {statistics.median(totals):.0f} forward passes median ({min(totals):.0f}-{max(totals):.0f})")
    for stage in stages[0]:
        values = [s[stage] for s in stages]
        print(
            f"  {stage:10s} {statistics.median(values):6.0f} forward passes median "
            f"({min(values):.0f}-{max(values):.0f})"
        )


if __name__ == "__main__":
    main()
