"""One FD/FID scorer per run, shared by every measure that generates samples.

The run's reference, feature network and bootstrap settings are fixed once (`FdOptions`) and
checked before any sampling (`make_scorer`). Each measure then scores the samples it owns - the
quantize measure its settings' samples, exposure each step count's, the fid measure the shared
set - and returns the numbers in its own result. Scores are memoised by the model-space samples'
content (a hash of the latents for a latent model: cheap), so the same samples scored by two
measures cost one feature pass and give the very same result (and the same bootstrap rounds,
which paired changes need).

Streaming: samples are decoded (latent models), converted to uint8 and passed through the
feature network one batch at a time; only the per-sample features accumulate (the bootstrap
interval and KID resample them). Nothing holds all the decoded images of a sample set.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ...errors import InputError, OptionError, require_at_least
from ..stats import Estimate
from .extractors import FEATURES
from .options import FdOptions
from .score import FidResult, batch_features, check_samples, fd_change, score_features, stream_features


class Scorer:
    """FD/FID and KID of model-space samples against the run's reference (see the module doc)."""

    def __init__(self, options: FdOptions, denoiser, device, batch_size: int, seed: int):
        self.options, self.denoiser, self.device, self.batch_size, self.seed = (
            options,
            denoiser,
            device,
            batch_size,
            seed,
        )
        self._memo: dict[str, FidResult] = {}

    def score(
        self, samples: torch.Tensor, pixels: bool = False, decode: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> FidResult:
        """FD/FID of model-space samples, decoded batch by batch for latent models; pixels=True: of images.
        decode: another batch -> images function than the model's decoder (a quantized decoder); such
        scores are not memoised (the key would have to name the decoder's state)."""
        key = None if decode is not None else self.key(samples, pixels)
        if key is not None and key in self._memo:
            return self._memo[key]
        check_samples(samples, self.options.bootstrap)
        to_images = decode or ((lambda x: x) if pixels else self.denoiser.pixel_batch)
        feats, shape = stream_features(samples, to_images, self.extractor(), self.batch_size)
        return self.from_features(feats, shape, key)

    # -- for a measure that decodes the samples itself for its own numbers (quantize's paired pass):
    # it asks for the features of each decoded batch, so every batch is decoded once in all.
    def key(self, samples: torch.Tensor, pixels: bool = False) -> str:
        """The memo key of samples: their content, and whether they are images or decoded first."""
        images = pixels or self.denoiser is None or getattr(self.denoiser, "vae", None) is None
        return ("pixels:" if images else "decoded:") + _content_key(samples)

    def cached(self, key: str | None) -> FidResult | None:
        return self._memo.get(key) if key is not None else None

    def extractor(self):
        from .extractors import load_extractor

        o = self.options
        return load_extractor(o.features, o.weights, self.device)

    def batch_features(self, images: torch.Tensor) -> torch.Tensor:
        """Features [n, D] (float32) of one batch of images in [-1, 1]; not counted in the extractor's `passes`."""
        return batch_features(images, self.extractor(), self.batch_size)

    def from_features(self, feats: np.ndarray, image_shape: tuple[int, ...], key: str | None = None) -> FidResult:
        """The result from per-sample features [N, D] in sample order; memoised under `key` when given."""
        o = self.options
        if len(feats) < 2:
            raise InputError(f"need at least 2 samples for a Frechet distance (got {len(feats)})")
        result = score_features(
            feats,
            image_shape,
            o.ref,
            self.extractor(),
            batch_size=self.batch_size,
            seed=self.seed,
            bootstrap=o.bootstrap,
            kid_subsets=o.kid_subsets,
            kid_subset_size=o.kid_subset_size,
            use_cache=o.use_cache,
        )
        if key is not None:
            self._memo[key] = result
        return result

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
        raise OptionError(
            "features", f"'{options.features}' is not a feature network (choose from: {', '.join(FEATURES)})"
        )
    require_at_least("bootstrap", options.bootstrap, 2)
    check_reference(options.ref)
    load_extractor(options.features, Path(options.weights) if options.weights else None, device)
    return Scorer(options, denoiser, torch.device(device), batch_size, seed)


def _content_key(x: torch.Tensor) -> str:
    t = x.detach().float().cpu().contiguous()
    h = hashlib.blake2b(t.numpy().tobytes(), digest_size=16)
    h.update(str(tuple(t.shape)).encode())
    return h.hexdigest()


__all__ = ["FdOptions", "InputError", "Scorer", "make_scorer"]
