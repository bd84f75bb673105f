"""FD bootstrap: the batched moment/Gram form (flatcheck.fid.frechet) vs. recomputing each resample naively.

    python benchmarks/bench_fid_bootstrap.py [--n 1000] [--d 64] [--rounds 100]

Naive = gather the resampled rows, np.cov, then torch-fidelity's eigvals(S1 S2) form, per round.
Prints both times and the ratio, measured in this one run, plus the largest difference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from flatcheck.core.fd.frechet import frechet_bootstrap, gaussian_stats


def naive(x, mu, sigma, rounds, seed):
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    n = len(x)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=rounds)
    out = []
    for c in counts:
        m, s = gaussian_stats(x[np.repeat(np.arange(n), c)])
        out.append(
            fid_statistics_to_metric({"mu": m, "sigma": s}, {"mu": mu, "sigma": sigma}, False)[
                "frechet_inception_distance"
            ]
        )
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=100)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(a.n, a.d)) + 0.1
    mu, sigma = gaussian_stats(rng.normal(size=(2 * a.n, a.d)))
    t0 = time.perf_counter()
    fast = frechet_bootstrap(x, mu, sigma, a.rounds, seed=1).rounds
    t1 = time.perf_counter()
    slow = naive(x, mu, sigma, a.rounds, seed=1)
    t2 = time.perf_counter()
    print(f"n={a.n} d={a.d} rounds={a.rounds}")
    print(f"batched {t1 - t0:.3f} s   naive {t2 - t1:.3f} s   speed-up x{(t2 - t1) / (t1 - t0):.1f}")
    print(f"max relative difference {np.max(np.abs(fast - slow) / np.abs(slow)):.2e}")


if __name__ == "__main__":
    main()
