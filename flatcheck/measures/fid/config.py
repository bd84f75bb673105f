"""The fid config (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass
class FidConfig:
    """FD/FID has no option of its own: it scores with the run's FD options (reference, feature
    network, bootstrap rounds), which every measure that scores samples shares."""

    # Those audit options, by name: the run table's `fid config` row shows them (not fields: a config
    # table could set a field, and these are the run's, not fid's).
    RUN_OPTIONS: ClassVar[tuple[str, ...]] = ("ref", "fid_features", "fid_weights", "fid_bootstrap", "fid_kid_subsets")
