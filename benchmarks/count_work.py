"""What a flatcheck command computes, counted instead of timed: images through the denoiser.

Wall-clock time on a shared machine says little; the number of images the denoiser processes
does not depend on the load. This script runs a command in-process with a forward hook on the
denoiser and prints, per phase (shared inputs, then each measure), the images it evaluated
without gradients, with gradients (a backward follows) and inside second-order passes (HVPs),
in units of one batch-64 forward. Work done twice shows up as a phase that evaluates what another
already did.

    python benchmarks/count_work.py audit --quick                 # digits-base, its default data
    python benchmarks/count_work.py audit --quick --data none     # data-free
    python benchmarks/count_work.py exposure digits-base --data none
"""

from __future__ import annotations

import sys
from collections import defaultdict


class Counter:
    def __init__(self):
        self.phase = "load"
        self.counts = defaultdict(lambda: defaultdict(int))
        self.order: list[str] = []

    def set(self, phase: str) -> None:
        self.phase = phase
        if phase not in self.order:
            self.order.append(phase)

    def hook(self, module, args, kwargs):
        import torch

        x = args[0] if args else next(iter(kwargs.values()))
        kind = "grad" if torch.is_grad_enabled() else "no_grad"
        self.counts[self.phase][kind] += int(x.shape[0])


def main(argv: list[str]) -> None:
    import torch

    from flatcheck import cli
    from flatcheck.core import denoiser as denoiser_mod
    from flatcheck.measures import REGISTRY

    torch.set_num_threads(1)
    c = Counter()
    c.set("shared inputs")
    original_init = denoiser_mod.Denoiser.__init__

    def init(self, *a, **kw):
        original_init(self, *a, **kw)
        self.net.register_forward_pre_hook(c.hook, with_kwargs=True)

    denoiser_mod.Denoiser.__init__ = init
    for name, measure in list(REGISTRY.items()):

        def run(inputs, config, progress, _run=measure.run, _name=name):
            c.set(_name)
            try:
                return _run(inputs, config, progress)
            finally:
                c.set(f"after {_name}")

        object.__setattr__(measure, "run", run)
    code = cli.run(argv)
    if code not in (0, 1):  # 1: a gate that failed, still a complete run
        sys.exit(code)
    total = defaultdict(int)
    print(f"\nimages through the denoiser for: flatcheck {' '.join(argv)}  (unit: one batch-64 forward)")
    print(f"{'phase':<24}{'no grad':>10}{'with grad':>11}")
    for phase in c.order:
        k = c.counts[phase]
        if not k:
            continue
        print(f"{phase:<24}{k['no_grad'] / 64:>10.1f}{k['grad'] / 64:>11.1f}")
        for kind, v in k.items():
            total[kind] += v
    print(f"{'total':<24}{total['no_grad'] / 64:>10.1f}{total['grad'] / 64:>11.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
