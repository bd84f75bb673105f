"""HVPs that block Lanczos needs under a cap on parameter-sized vectors (thick restart) vs without one.

    .venv/bin/python benchmarks/bench_lanczos_restart.py [--dim 2000] [--models digits-base,...] [--probes 32]

Counts, not times: each row is the number of HVPs until the stopping rule (joint bound <= tol x
min |theta_i|, top 3 in blocks of 3, tol 1e-3 as `flatcheck sharpness` runs it), for no cap and
for caps of 3 (the least), 4, 5, 6, 8 and 12 blocks. A '*' marks a run stopped by max_iter.
1. Symmetric matrices with known spectra, float64, turned by a random rotation.
2. The Hessian of a bundled model's training loss on `--probes` digits probes, float32 HVPs (what the
   measure computes), started from the measure's own generator seed.
Peak parameter-sized vectors: cap + 2 with a cap (a multiple of 3), hvps + 5 without.
"""

from __future__ import annotations

import argparse

import torch

CAPS = [None, 9, 12, 15, 18, 24, 36]


def spectra(n: int) -> dict[str, torch.Tensor]:
    i = torch.arange(1, n + 1, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)

    def top(vals, rest):
        return torch.cat([torch.tensor(vals, dtype=torch.float64), rest[: n - len(vals)]])

    return {
        "outliers over a bulk": top([10.0, 6.0, 4.0, 3.0], 1.5 * i**-0.7 - 0.05),
        "power law 1/i": 1.0 / i,
        "linear 1 - i/n": 1.0 - i / n,
        "40, 40, 25 over [-2, 3]": top([40.0, 40.0, 25.0, 10.0], torch.linspace(-2, 3, n, dtype=torch.float64)),
        "5, 5, 5, 4.9 over [0, 4.5]": top([5.0, 5.0, 5.0, 4.9], torch.rand(n, generator=g, dtype=torch.float64) * 4.5),
        "40, 39.9, 39.8 over [-2, 39]": top([40.0, 39.9, 39.8], torch.linspace(-2, 39, n, dtype=torch.float64)),
        "-50 (largest magnitude), 30, 29 over [-5, 20]": top(
            [-50.0, 30.0, 29.0], torch.linspace(-5, 20, n, dtype=torch.float64)
        ),
    }


def row(name, matvec, dim, dtype, gen_seed, max_iter) -> str:
    from flatcheck.measures.sharpness.hessian import block_lanczos

    cells = []
    for cap in CAPS:
        r = block_lanczos(
            matvec, dim, 3, max_iter, 1e-3, torch.Generator().manual_seed(gen_seed), dtype=dtype, max_vectors=cap
        )
        cells.append(f"{r.hvps}{'' if r.converged else '*'}")
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=2000)
    ap.add_argument("--models", default="digits-base,digits-ema,digits-sam", help="comma-separated; '' for none")
    ap.add_argument("--probes", type=int, default=32)
    ap.add_argument("--max-iter", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)

    head = "| spectrum | " + " | ".join("no cap" if c is None else f"cap {c}" for c in CAPS) + " |"
    print(f"1. HVPs to tol 1e-3, top 3, dim {args.dim}, float64\n\n{head}\n|---|" + "---|" * len(CAPS), flush=True)
    for name, eig in spectra(args.dim).items():
        q, _ = torch.linalg.qr(
            torch.randn(args.dim, args.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        )
        m = (q * eig) @ q.T
        print(row(name, lambda v: m @ v, args.dim, torch.float64, 2, args.max_iter), flush=True)

    models = [m for m in args.models.split(",") if m]
    if not models:
        return
    from flatcheck.core.checkpoint import load
    from flatcheck.core.denoiser import Denoiser
    from flatcheck.core.probes import build_probe_bank
    from flatcheck.core.seeds import stream
    from flatcheck.measures.sharpness.hessian import BankLoss
    from flatcheck.measures.sharpness.paramvec import measured_parameters

    print(
        f"\n2. HVPs to tol 1e-3, top 3, Hessian of the loss on {args.probes} digits probes, float32\n\n{head}\n|---|"
        + "---|" * len(CAPS),
        flush=True,
    )
    for model in models:
        ckpt = load(model, device=torch.device("cpu"), dtype=torch.float32)
        den = Denoiser.from_checkpoint(ckpt)
        params = [p for _, p in measured_parameters(den.net)]
        bank = build_probe_bank(den, n=args.probes, seed=0, data="digits")
        op = BankLoss(den, bank, params, batch_size=64)
        seed = stream(0, "lanczos")  # the measure's own Lanczos stream at seed 0
        print(row(f"{model} ({op.dim:,} parameters)", op.hvp, op.dim, torch.float32, seed, args.max_iter), flush=True)


if __name__ == "__main__":
    main()
