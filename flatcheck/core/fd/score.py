"""Score a tensor of samples against a reference: FD/FID with a bootstrap interval, and KID.

This is the one entry point every command uses (fid, quantize, exposure, audit):

    from flatcheck.core.fd import score_samples
    r = score_samples(x, "digits", features="digits-cnn")   # x: [N, C, H, W] in [-1, 1]
    print(r.summary())   # FD (digits-cnn) 3.1 [2.5, 3.4] (95% basic bootstrap interval, N=1000)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import InputError, RunError, require_at_least
from ..stats import BootstrapEstimate, Estimate
from .extractors import load_extractor
from .frechet import frechet_bootstrap, kernel_distance
from .reference import ReferenceInfo, reference_stats

MIN_SAMPLES_FOR_FID = 2048  # Inception's feature dimension: fewer samples give a rank-deficient covariance


@dataclass
class FidResult:
    """FD/FID of N samples against a reference, with its uncertainty. `label` is what to print."""

    label: str  # "FID" (Inception features) or "FD (<features>)"
    features: str  # inception | digits-cnn | patches-cnn | clip | dinov2
    value: BootstrapEstimate  # FD; stderr = bootstrap standard error (sd of the resampled FDs), [ci_low, ci_high] =
    # basic bootstrap interval at ci_level (samples resampled, reference fixed), n = samples, bias_corrected =
    # 2 FD - mean of the resampled FDs (clipped at 0), the value the interval is built around
    kid: Estimate | None  # KID = mean over subsets; stderr = standard error of that mean (std / sqrt(subsets):
    # the random choice of subsets only), n = subsets; None for a stats-file reference
    num_samples: int
    feature_dim: int
    reference: ReferenceInfo
    bootstrap_rounds: int
    ci_level: float
    kid_subsets: int | None
    kid_subset_size: int | None
    kid_subset_std: float | None  # std of KID over the subsets (torch-fidelity's "±"): one subset's spread
    warning: str | None  # set when num_samples < 2048
    seed: int
    notes: list[str] = field(default_factory=list)
    ci_method: str = "basic bootstrap"  # how [ci_low, ci_high] was computed (see frechet.basic_interval)
    _rounds: np.ndarray | None = field(default=None, repr=False)  # bootstrap FDs, for paired changes (not in JSON)

    def summary(self) -> str:
        lo, hi = self.value.ci_low, self.value.ci_high
        return (
            f"{self.label} {self.value.value:.4g} [{lo:.4g}, {hi:.4g}] ({self.ci_level:.0%} {self.ci_method} "
            f"interval, N={self.num_samples})"
        )


def to_uint8_nchw(samples: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, C, H, W], rounded exactly as a saved PNG would be."""
    from ..images import to_uint8

    return torch.from_numpy(to_uint8(samples)).permute(0, 3, 1, 2).contiguous()


def score_samples(
    samples: torch.Tensor,
    ref: str,
    *,
    features: str = "inception",
    weights: str | Path | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    bootstrap: int = 200,
    ci_level: float = 0.95,
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> FidResult:
    """FD (FID for Inception) and KID of `samples` ([N, C, H, W], model pixel space [-1, 1]) against `ref`.

    ref: 'digits', an image folder, an .npz/.npy of images, a stats .npz (mu, sigma) or a
    torch-fidelity dataset name (see flatcheck.fid.reference). Reference statistics are
    cached (memory and disk), so repeated calls pay only for the samples' feature pass.
    bootstrap: resamples of the samples for the standard error and the basic bootstrap interval (the
    reference is held fixed).
    kid_subset_size: default min(1000, half the smaller set), so subsets differ and the std means something.
    The images are converted and scored batch by batch (`stream_features`); a latent model's samples
    go through core.fd.scorer.Scorer, which decodes them batch by batch as well.
    """
    check_samples(samples, bootstrap, ci_level)
    extractor = load_extractor(features, weights, device)
    feats, shape = stream_features(samples, lambda x: x, extractor, batch_size)
    return score_features(
        feats,
        shape,
        ref,
        extractor,
        batch_size=batch_size,
        bootstrap=bootstrap,
        ci_level=ci_level,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        seed=seed,
        cache_dir=cache_dir,
        use_cache=use_cache,
    )


def check_samples(samples: torch.Tensor, bootstrap: int = 200, ci_level: float = 0.95) -> None:
    """InputError/RunError before any feature pass: a [N, ...] tensor of N >= 2 finite samples, valid settings."""
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        raise InputError(f"samples must be a [N, C, H, W] tensor (got {getattr(samples, 'shape', type(samples))})")
    n = len(samples)
    if n < 2:
        raise InputError(f"need at least 2 samples for a Frechet distance (got {n})")
    require_at_least("bootstrap", bootstrap, 2)
    if not 0 < ci_level < 1:
        raise InputError(f"ci_level must be in (0, 1) (got {ci_level})")
    if not torch.isfinite(samples).all():
        raise RunError("the samples contain NaN or Inf: the model diverged, nothing to score")


def batch_features(images: torch.Tensor, extractor, batch_size: int) -> torch.Tensor:
    """One batch of images ([n, C, H, W] in [-1, 1]) -> features [n, D] (float32; this process alone)."""
    if not torch.isfinite(images).all():
        raise RunError("the decoded samples contain NaN or Inf: nothing to score")
    return extractor.extract_local(to_uint8_nchw(images.detach().float().cpu()), batch_size)


def stream_features(samples: torch.Tensor, to_images, extractor, batch_size: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Per-sample features [N, D] (float64) and the image shape (C, H, W) of N samples, batch by batch:
    `to_images` (a batch of samples -> images in [-1, 1]: the decoder of a latent model) -> uint8 ->
    features, then the batch's images are dropped. Only the features accumulate (in the network's
    float32, made float64 at the end): they are kept because the bootstrap interval and KID resample
    per-sample features (50,000 x 2048 float32 is 0.4 GB; 50,000 decoded 512 px images would be 150 GB).
    Batches are the ones a whole-set pass would use (rows k*batch_size...), so the features are the same
    numbers. Several processes: each decodes and extracts its share of the batches (core.dist)."""
    from .. import dist

    extractor.passes += 1
    n = len(samples)
    shape: list[tuple[int, ...]] = []

    def run(rows: list[int]) -> torch.Tensor:
        images = to_images(samples[rows[0] : rows[-1] + 1])
        shape.append(tuple(images.shape[1:]))
        return batch_features(images, extractor, batch_size)

    chunks = [list(range(s, min(s + batch_size, n))) for s in range(0, n, max(batch_size, 1))]
    feats = torch.cat(dist.split_batches(run, chunks)).double().numpy()
    if not shape:  # another process decoded every batch: ask for the shape of one image
        shape.append(tuple(to_images(samples[:1]).shape[1:]))
    return feats, shape[0]


def score_features(
    feats: np.ndarray,
    image_shape: tuple[int, ...],
    ref: str,
    extractor,
    *,
    batch_size: int = 64,
    bootstrap: int = 200,
    ci_level: float = 0.95,
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> FidResult:
    """FD and KID from the samples' per-sample features [N, D] (`stream_features`); image_shape (C, H, W)
    brings the reference to the samples' shape. See score_samples for the arguments."""
    n = len(feats)
    ref_stats = reference_stats(
        ref, extractor, tuple(image_shape), batch_size=batch_size, cache_dir=cache_dir, use_cache=use_cache
    )
    d = feats.shape[1]
    if ref_stats.mu.shape != (d,):
        raise InputError(
            f"--ref '{ref}' holds {ref_stats.mu.size}-dimensional statistics but {extractor.features} features are "
            f"{d}-dimensional (a stats file must come from the same feature network)"
        )

    boot = frechet_bootstrap(feats, ref_stats.mu, ref_stats.sigma, rounds=bootstrap, seed=seed, level=ci_level)
    lo, hi = boot.interval()
    value = BootstrapEstimate(boot.value, boot.stderr, lo, hi, n, bias_corrected=boot.bias_corrected)

    notes: list[str] = []
    kid = None
    used_subset = k_std = None
    if ref_stats.features is not None:
        m = min(n, len(ref_stats.features))
        used_subset = kid_subset_size or min(1000, max(2, m // 2))
        if used_subset > m or used_subset < 2:
            raise InputError(f"--kid-subset-size must be between 2 and {m} (the smaller set's size), got {used_subset}")
        k_mean, k_std = kernel_distance(feats, ref_stats.features, kid_subsets, used_subset, seed)
        kid = kid_estimate(k_mean, k_std, kid_subsets)
    else:
        notes.append("KID needs reference features; a mu/sigma statistics file has none")

    warning = None
    if n < MIN_SAMPLES_FOR_FID:
        rank = f"the {d}-dim covariance is rank deficient (rank <= {n - 1}); " if n - 1 < d else ""
        warning = (
            f"only {n} samples (< {MIN_SAMPLES_FOR_FID}): {rank}FD is biased upward at small N, so compare only "
            f"numbers computed with the same N (published numbers use 10k-50k samples)"
        )
    if extractor.features != "inception":
        notes.append(
            f"{extractor.label} is a Frechet distance in {extractor.features} feature space, not comparable with FID"
        )
    return FidResult(
        label=extractor.label,
        features=extractor.features,
        value=value,
        kid=kid,
        num_samples=n,
        feature_dim=d,
        reference=ref_stats.info,
        bootstrap_rounds=bootstrap,
        ci_level=ci_level,
        kid_subsets=kid_subsets if kid is not None else None,
        kid_subset_size=used_subset,
        kid_subset_std=k_std,
        warning=warning,
        seed=seed,
        notes=notes,
        _rounds=boot.rounds,
    )


def kid_estimate(mean: float, std_over_subsets: float, subsets: int) -> Estimate:
    """KID as an Estimate whose stderr is a standard error: that of the mean over `subsets` random
    subsets, std / sqrt(subsets). It measures the subset draw only, not which images were sampled."""
    return Estimate(float(mean), float(std_over_subsets) / subsets**0.5, n=subsets)


def fd_change(new: FidResult, base: FidResult) -> BootstrapEstimate:
    """new - base (e.g. W4A4 - full precision) with a paired basic bootstrap interval.

    Valid when both scored the same sample indices from the same seeds (quantize, exposure
    at several step counts): with equal N, seed and rounds, score_samples resampled the same
    indices in both, so the per-round differences d_b cancel the shared sampling noise. stderr =
    sd(d_b) (bootstrap standard error of the difference); the interval is the basic one on d_b,
    [2 D - q_hi(d), 2 D - q_lo(d)], not clipped (a difference can be negative), and the bias-corrected
    difference 2 D - mean(d) beside it.
    """
    from .frechet import basic_interval

    same = (new.num_samples, new.bootstrap_rounds, new.seed, new.features, new.ci_level, new.reference.content_hash)
    if same != (
        base.num_samples,
        base.bootstrap_rounds,
        base.seed,
        base.features,
        base.ci_level,
        base.reference.content_hash,
    ):
        raise ValueError(
            "fd_change needs two results with the same samples count, seed, bootstrap rounds, features and reference"
        )
    d = new._rounds - base._rounds
    value = new.value.value - base.value.value
    lo, hi = basic_interval(value, d, new.ci_level)
    # A difference may be negative: its bias-corrected value is not clipped.
    return BootstrapEstimate(
        value, float(d.std(ddof=1)), lo, hi, new.num_samples, bias_corrected=float(2 * value - d.mean())
    )
