"""A small classifier of scikit-learn's digits whose penultimate layer is the `digits-cnn` feature space.

Inception features mean nothing on 16x16 grey digits (and need a download), so the bundled
models are scored in the feature space of this network instead: a Frechet distance there is
reported as "FD (digits-cnn)", never as FID. Weights ship in flatcheck/assets/; the recipe
that made them is examples/train_digits_cnn.py.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .small_cnn import ScaledFeatureCNN, asset_path, load_weights, read_metadata

INPUT_SIZE = 16  # the bundled models' resolution; other sizes are resized to it
FEATURE_DIM = 64
NUM_CLASSES = 10
WEIGHTS_FILE = "digits_cnn.safetensors"


class DigitsCNN(ScaledFeatureCNN):
    """[N, 1, 16, 16] in [-1, 1] -> 64 features (pre-activation, so no dead constant dimensions) -> 10 logits."""

    def __init__(self) -> None:
        body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Flatten(),
        )
        super().__init__(body, 64 * 4 * 4, FEATURE_DIM, NUM_CLASSES)


def prepare(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] (C 1 or 3) -> float [N, 1, 16, 16] in [-1, 1], the network's input."""
    x = images.float() / 127.5 - 1
    if x.shape[1] != 1:
        x = x[:, :3].mean(1, keepdim=True)
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return x


def weights_path() -> Path:
    return asset_path(WEIGHTS_FILE)


def load_digits_cnn(path: str | Path | None = None) -> DigitsCNN:
    """The trained network (eval mode, no grad) from the package's assets or `path`."""
    return load_weights(
        DigitsCNN(), path if path is not None else weights_path(), "digits-cnn", "examples/train_digits_cnn.py"
    )


def weights_metadata(path: str | Path | None = None) -> dict:
    """The metadata stored beside the weights (test accuracy, split, seed, recipe)."""
    return read_metadata(path if path is not None else weights_path())
