"""The fid config (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FidConfig:
    """FD/FID has no option of its own: it scores with the run's FD options (reference, feature
    network, bootstrap rounds), which every measure that scores samples shares."""
