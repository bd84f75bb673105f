"""A small classifier of the RGB patches' source photograph; its penultimate layer is the
`patches-cnn` feature space.

The RGB-patch zoo (examples/zoo/) makes 32x32 RGB images. Inception (FID) would need them
upsampled to 299x299, its weights cannot be downloaded here, and ImageNet features of 32x32
crops of seven photographs say little about them; so FD on these images is computed in the
feature space of this network instead and reported as "FD (patches-cnn)", never as FID.
Task: which of the five training photographs (flatcheck.core.patches.TRAIN_SOURCES) a
32x32 patch was cut from. Weights ship in flatcheck/assets/; the recipe that made them is
examples/zoo/train_patches_cnn.py.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .small_cnn import ScaledFeatureCNN, asset_path, load_weights

INPUT_SIZE = 32
FEATURE_DIM = 128
NUM_CLASSES = 5  # len(flatcheck.core.patches.TRAIN_SOURCES)
WEIGHTS_FILE = "patches_cnn.safetensors"


class PatchesCNN(ScaledFeatureCNN):
    """[N, 3, 32, 32] in [-1, 1] -> 128 features (pre-activation) -> 5 logits."""

    def __init__(self) -> None:
        body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16x16
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Flatten(),
        )
        super().__init__(body, 64 * 4 * 4, FEATURE_DIM, NUM_CLASSES)


def prepare(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] (C 1, 3 or 4) -> float [N, 3, 32, 32] in [-1, 1], the network's input."""
    x = images.float() / 127.5 - 1
    x = x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()


def weights_path() -> Path:
    return asset_path(WEIGHTS_FILE)


def load_patches_cnn(path: str | Path | None = None) -> PatchesCNN:
    """The trained network (eval mode, no grad) from the package's assets or `path`."""
    return load_weights(
        PatchesCNN(), path if path is not None else weights_path(), "patches-cnn", "examples/zoo/train_patches_cnn.py"
    )
