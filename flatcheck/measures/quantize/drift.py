"""Paired sample drift: how far quantized samples land from full-precision ones drawn from the same seeds."""

from __future__ import annotations

import torch

from ...core.stats import Estimate, mean_estimate

PEAK_TO_PEAK = 2.0  # images live in [-1, 1]
MSE_FLOOR = 1e-12  # identical samples would give an infinite PSNR; cap it at 120 dB


def per_sample_mse(reference: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """[N] pixel MSE between paired samples, both clipped to the image range [-1, 1] first."""
    if reference.shape != samples.shape:
        raise ValueError(f"paired samples differ in shape: {tuple(reference.shape)} vs {tuple(samples.shape)}")
    d = samples.double().clamp(-1, 1) - reference.double().clamp(-1, 1)
    return (d**2).flatten(1).mean(1)


def paired_drift(reference: torch.Tensor, samples: torch.Tensor) -> tuple[Estimate, Estimate]:
    """(MSE, PSNR in dB) with standard errors over the samples; PSNR = 10 log10(2^2 / MSE) per sample."""
    mse = per_sample_mse(reference, samples)
    psnr = 10 * torch.log10(PEAK_TO_PEAK**2 / mse.clamp_min(MSE_FLOOR))
    return mean_estimate(mse.numpy()), mean_estimate(psnr.numpy())
