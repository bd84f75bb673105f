"""What digits-cnn and patches-cnn share: a small classifier whose scaled penultimate layer is an FD
feature space, its weights in flatcheck/assets/ and their loading."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import InputError


class ScaledFeatureCNN(nn.Module):
    """body -> embed: the features (pre-activation, times the buffer feature_scale, fixed after
    training to give them unit mean variance) -> ReLU, dropout, head: the logits. Subclasses
    give their body (flattened to `flat` values), feature dimension and class count."""

    def __init__(self, body: nn.Module, flat: int, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.embed = nn.Linear(flat, feature_dim)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)
        # Fixed after training so the features have unit mean variance per dimension: keeps FD and
        # KID's cubic kernel on an Inception-like scale instead of ~1e4.
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.body(x)) * self.feature_scale

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(F.relu(f / self.feature_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(x))


def asset_path(file: str) -> Path:
    return Path(str(resources.files("flatcheck") / "assets" / file))


def load_weights(net: nn.Module, path: str | Path, name: str, recipe: str) -> nn.Module:
    """`net` with the weights of the .safetensors at `path` (eval mode, no grad); one InputError line
    for a missing, unreadable or mismatched file."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{name} weights not found at {path} (rebuild them with: python {recipe})")
    try:
        net.load_state_dict(load_file(str(path)))
    except Exception as exc:  # noqa: BLE001 - any unreadable/mismatched file is the same user error
        raise InputError(f"cannot load {name} weights from {path}: {str(exc).splitlines()[0]}") from None
    return net.eval().requires_grad_(False)


def read_metadata(path: str | Path) -> dict:
    """The metadata stored beside the weights (test accuracy, split, seed, recipe)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})
