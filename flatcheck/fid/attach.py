"""FD/FID attached to other measures: per quantization setting, per exposure step count.

One `FidSetup` per run (reference, feature network, weights) is checked before any sampling,
then `attach_to_quantization` / `attach_to_exposure` score the samples those measures already
generated - nothing is sampled twice, and the reference statistics come from the cache after
the first call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError
from .extractors import FEATURES
from .score import FidResult, fd_change, score_samples


@dataclass(frozen=True)
class FidSetup:
    ref: str
    features: str
    weights: Path | None
    device: torch.device
    batch_size: int
    seed: int


def fid_setup(ckpt, ref: str | None, features: str | None, weights: Path | None, device, batch_size: int, seed: int,
              enabled: bool = True) -> FidSetup | None:
    """The FD/FID settings for a run, or None when there is nothing to score against.

    A reference is known when --ref is given, or for the bundled digits models (their data ships
    with scikit-learn). Reference and feature network are checked here, before any sampling.
    """
    from . import DIGITS_REF, default_features, is_bundled_digits
    from .extractors import load_extractor
    from .reference import check_reference

    if not enabled:
        return None
    if ref is None:
        if not is_bundled_digits(ckpt):
            return None
        ref = DIGITS_REF
    features = (features or default_features(ckpt)).strip().lower()
    if features not in FEATURES:
        raise InputError(f"unknown --features '{features}' (choose from: {', '.join(FEATURES)})")
    check_reference(ref)
    load_extractor(features, weights, device)
    return FidSetup(ref, features, weights, torch.device(device), batch_size, seed)


def to_pixels(denoiser, samples: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Model-space samples -> images in [-1, 1] (decoded once for latent models)."""
    if denoiser.vae is None:
        return samples
    with torch.no_grad():
        return torch.cat([denoiser.decode(b.to(denoiser.device)).float().cpu() for b in samples.split(batch_size)])


def score_pixels(setup: FidSetup, images: torch.Tensor, **kwargs) -> FidResult:
    """FD/FID of images in [-1, 1] under `setup` (kwargs: bootstrap, kid_subset_size, use_cache ...)."""
    return score_samples(images, setup.ref, features=setup.features, weights=setup.weights, device=setup.device,
                         batch_size=setup.batch_size, seed=setup.seed, **kwargs)


def score(setup: FidSetup, denoiser, samples: torch.Tensor, **kwargs) -> FidResult:
    """FD/FID of model-space samples (decoded first for latent models)."""
    return score_pixels(setup, to_pixels(denoiser, samples, setup.batch_size), **kwargs)


def attach_to_quantization(setup: FidSetup, denoiser, result, **kwargs) -> FidResult:
    """Score full precision and every setting on the samples the quantize measure kept.

    Settings share the full-precision seeds, so each change comes with a paired interval.
    """
    fp = result.samples_of("full-precision")
    if fp is None:
        raise RuntimeError("the quantize result kept no samples (QuantizeConfig.keep_samples)")
    base = score(setup, denoiser, fp, **kwargs)
    result.fid_label, result.fid_warning = base.label, base.warning
    result.full_precision.fid, result.full_precision.kid = base.value, base.kid
    for s in result.settings:
        x = result.samples_of(s.name)
        if x is None:
            continue
        r = score(setup, denoiser, x, **kwargs)
        s.fid, s.kid, s.fid_change = r.value, r.kid, fd_change(r, base)
    return base


def attach_to_exposure(setup: FidSetup, denoiser, result, **kwargs) -> list[FidResult]:
    """Score each step count's samples (all from the same seeds)."""
    out = []
    for run in result.runs:
        if run._samples is None:
            raise RuntimeError("the exposure result kept no samples (ExposureConfig.keep_samples)")
        r = score(setup, denoiser, run._samples, **kwargs)
        run.fid, run.fid_label = r.value, r.label
        out.append(r)
    result.fid_warning = out[0].warning if out else None
    return out
