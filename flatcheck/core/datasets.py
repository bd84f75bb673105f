"""Bundled reference data: scikit-learn's digits, shaped for the bundled models.

load_digits ships inside scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DIGITS_SIZE = 16


def digits_images(size: int = DIGITS_SIZE) -> torch.Tensor:
    """All 1797 digits as float32 [N, 1, size, size] in [-1, 1] (bilinear upsampling of 8x8)."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / 16.0  # 0..16 grey levels
    x = torch.from_numpy(images).unsqueeze(1)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 2 - 1).contiguous()


def digits_labels() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().target.astype(np.int64))
