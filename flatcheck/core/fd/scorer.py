"""One FD/FID scorer per run, shared by every measure that generates samples.

The run's reference, feature network and bootstrap settings are fixed once (`FdOptions`) and
checked before any sampling (`make_scorer`). Each measure then scores the samples it owns - the
quantize measure its settings' samples, exposure each step count's, the fid measure the shared
set - and returns the numbers in its own result. Scores are memoised by the samples' content,
so the same samples scored by two measures cost one feature pass and give the very same result
(and the same bootstrap rounds, which paired changes need).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ...errors import InputError, OptionError
from ..stats import Estimate
from .extractors import FEATURES
from .options import FdOptions
from .score import FidResult, fd_change, score_samples


class Scorer:
    """FD/FID and KID of model-space samples against the run's reference (see the module doc)."""

    def __init__(self, options: FdOptions, denoiser, device, batch_size: int, seed: int):
        self.options, self.denoiser, self.device, self.batch_size, self.seed = options, denoiser, device, batch_size, seed
        self._memo: dict[str, FidResult] = {}

    def score(self, samples: torch.Tensor, pixels: bool = False) -> FidResult:
        """FD/FID of model-space samples (decoded to pixels first for latent models); pixels=True: of images."""
        images = samples if pixels else to_pixels(self.denoiser, samples, self.batch_size)
        key = _content_key(images)
        if key not in self._memo:
            o = self.options
            self._memo[key] = score_samples(
                images, o.ref, features=o.features, weights=o.weights,
                device=self.device, batch_size=self.batch_size, seed=self.seed, bootstrap=o.bootstrap,
                kid_subsets=o.kid_subsets, kid_subset_size=o.kid_subset_size, use_cache=o.use_cache,
            )
        return self._memo[key]

    @staticmethod
    def change(new: FidResult, base: FidResult) -> Estimate:
        """new - base with a paired bootstrap interval (same seeds, same resampled indices)."""
        return fd_change(new, base)


def make_scorer(options: FdOptions, denoiser, device, batch_size: int, seed: int) -> Scorer | None:
    """The run's scorer, or None without a reference. Reference and feature network are checked
    (and loaded) here, before the minutes of sampling."""
    from .extractors import load_extractor
    from .reference import check_reference

    if options.ref is None:
        return None
    if options.features not in FEATURES:
        raise OptionError("features", f"'{options.features}' is not a feature network (choose from: {', '.join(FEATURES)})")
    if options.bootstrap < 2:
        raise OptionError("bootstrap", f"must be >= 2 (got {options.bootstrap})")
    check_reference(options.ref)
    load_extractor(options.features, Path(options.weights) if options.weights else None, device)
    return Scorer(options, denoiser, torch.device(device), batch_size, seed)


def to_pixels(denoiser, samples: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Model-space samples -> images in [-1, 1] (decoded for latent models, once per content)."""
    return denoiser.pixels(samples, batch_size)


def _content_key(x: torch.Tensor) -> str:
    t = x.detach().float().cpu().contiguous()
    h = hashlib.blake2b(t.numpy().tobytes(), digest_size=16)
    h.update(str(tuple(t.shape)).encode())
    return h.hexdigest()


__all__ = ["FdOptions", "InputError", "Scorer", "make_scorer", "to_pixels"]
