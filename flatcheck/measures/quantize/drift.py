"""Paired sample drift: how far quantized samples land from full-precision ones drawn from the same seeds.

`paired_pass` computes it for every setting in one pass over the batches of samples: each batch of
the full-precision samples and of every setting's samples is made (a setting's: sampled then and
there) and decoded once (latent models), and everything measured on images - the per-sample drift,
the full-precision pixel variance, the FD features, the first images for the report's grids - is
taken from that batch before it is dropped. No setting's samples and no set of decoded images are
ever held whole (SD 1.5: 64 KB a latent, 3 MB a decoded sample).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ...core.stats import Estimate, mean_estimate

PEAK_TO_PEAK = 2.0  # images live in [-1, 1]
MSE_FLOOR = 1e-12  # identical samples would give an infinite PSNR; cap it at 120 dB
FULL = "full-precision"


def per_sample_mse(reference: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """[N] pixel MSE between paired samples, both clipped to the image range [-1, 1] first."""
    if reference.shape != samples.shape:
        raise ValueError(f"paired samples differ in shape: {tuple(reference.shape)} vs {tuple(samples.shape)}")
    d = samples.double().clamp(-1, 1) - reference.double().clamp(-1, 1)
    return (d**2).flatten(1).mean(1)


def drift_estimates(mse: torch.Tensor) -> tuple[Estimate, Estimate]:
    """(MSE, PSNR in dB) with standard errors over the samples, from the per-sample MSEs [N];
    PSNR = 10 log10(2^2 / MSE) per sample."""
    psnr = 10 * torch.log10(PEAK_TO_PEAK**2 / mse.clamp_min(MSE_FLOOR))
    return mean_estimate(mse.numpy()), mean_estimate(psnr.numpy())


def paired_drift(reference: torch.Tensor, samples: torch.Tensor) -> tuple[Estimate, Estimate]:
    """(MSE, PSNR in dB) of paired images held in memory (small sets: the per-layer scan)."""
    return drift_estimates(per_sample_mse(reference, samples))


@dataclass
class PairedPass:
    """What one pass over the decoded batches measured. Sets are named by setting ('full-precision': the reference)."""

    mse: dict[str, torch.Tensor]  # setting -> [N] per-sample MSE against full precision
    seconds: dict[str, float]  # setting -> seconds making its batches (summed over batches, / processes)
    fp_variance: float  # variance of the full-precision pixels clipped to [-1, 1] (unbiased, all pixels)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # set -> [N, D] FD features (sets asked for)
    image_shape: tuple[int, ...] | None = None
    first_images: dict[str, torch.Tensor] = field(default_factory=dict)  # set -> its first `keep` images


def paired_pass(
    fp: torch.Tensor,
    sets: dict[str, Callable[[list[int]], torch.Tensor]],
    decoders: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    batch_size: int,
    *,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    feature_sets: tuple[str, ...] = (),
    keep: int = 0,
    pixel_model: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PairedPass:
    """One pass over batches of `batch_size` rows (the batches a whole-set decode would use, so every
    number equals the whole-set one). fp: model-space samples [N, ...]; sets[name]: a function of the
    rows of a batch that makes the same seeds' samples of a setting (sampling them under the setting),
    so a setting's samples are never held whole; decoders[name] (and decoders['full-precision']): a batch
    of samples -> images in [-1, 1], float32 CPU. features: images -> FD features, taken for the sets in
    feature_sets. keep: how many first images of every set to keep. pixel_model: the samples are the
    images (no decoder), so the variance is taken over the tensor already in memory, as a whole-set
    computation would.
    progress(k): k more samples done. Several processes: each takes its share of the batches (core.dist)."""
    from ...core import dist

    n = len(fp)
    names = list(sets)

    def run(rows: list[int]) -> dict:
        sl = slice(rows[0], rows[-1] + 1)
        fp_img = decoders[FULL](fp[sl])
        out: dict = {"mse": {}, "seconds": {}, "features": {}, "images": {}, "shape": tuple(fp_img.shape[1:])}
        x = fp_img.clamp(-1, 1).double()
        mean = x.mean()
        out["moments"] = (x.numel(), float(mean), float(((x - mean) ** 2).sum()))
        for name, img in [(FULL, fp_img)] + [(k, None) for k in names]:
            if img is None:
                t0 = time.perf_counter()
                z = sets[name](rows)
                out["seconds"][name] = time.perf_counter() - t0
                img = decoders[name](z)
                del z
                out["mse"][name] = per_sample_mse(fp_img, img)
            if features is not None and name in feature_sets:
                out["features"][name] = features(img)
            if rows[0] < keep:
                out["images"][name] = img[: keep - rows[0]].clone()
            del img
        if progress:
            progress(len(rows))
        return out

    chunks = [list(range(s, min(s + batch_size, n))) for s in range(0, n, max(batch_size, 1))]
    parts = dist.split_batches(run, chunks)
    if pixel_model:
        variance = float(fp.clamp(-1, 1).double().var())
    else:
        variance = _combined_variance([p["moments"] for p in parts])
    return PairedPass(
        mse={k: torch.cat([p["mse"][k] for p in parts]) for k in names},
        # several processes made their batches side by side: the total over processes / their count
        seconds={k: sum(p["seconds"][k] for p in parts) / dist.world() for k in names},
        fp_variance=variance,
        features={
            k: torch.cat([p["features"][k] for p in parts]).double().numpy()
            for k in feature_sets
            if features is not None
        },
        image_shape=parts[0]["shape"] if parts else None,
        first_images={
            k: torch.cat([p["images"][k] for p in parts if k in p["images"]])
            for k in [FULL] + names
            if keep > 0 and parts
        },
    )


def _combined_variance(moments: list[tuple[int, float, float]]) -> float:
    """Unbiased variance of all values from per-batch (count, mean, sum of squared deviations), in
    float64 (Chan, Golub and LeVeque's pairwise update): equal to the whole-set variance to ~1e-15."""
    count, mean, m2 = 0, 0.0, 0.0
    for k, mu, s in moments:
        delta = mu - mean
        total = count + k
        mean += delta * k / total
        m2 += s + delta * delta * count * k / total
        count = total
    return m2 / (count - 1) if count > 1 else float("nan")
