"""How a run scores samples (torch-free: the CLI reads its defaults for --help)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FdOptions:
    """How a run scores samples. ref None: no reference known, nothing is scored."""

    ref: str | None = None  # image folder, .npz/.npy, stats .npz, 'digits', or a torch-fidelity dataset
    features: str = "inception"  # inception | digits-cnn | patches-cnn | clip | dinov2
    weights: str | None = None  # local feature-network weights (offline)
    bootstrap: int = 200  # resamples of the samples for the FD standard error and basic bootstrap interval
    kid_subsets: int = 100
    kid_subset_size: int | None = None  # default: min(1000, half the smaller set)
    use_cache: bool = True  # reference statistics from/to the cache
