"""Weight perturbation that never leaves the model changed.

`restoring(module)` snapshots every parameter and buffer and copies them back on
exit - normal return, exception or Ctrl-C alike - so the weights are bit for bit
what they were. Measures that move weights (sharpness, landscapes, simulated
quantization) run inside it.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()}


@torch.no_grad()
def restore(module: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    current = module.state_dict(keep_vars=True)
    if set(current) != set(saved):
        raise RuntimeError("cannot restore weights: the module's structure changed")
    for k, v in current.items():
        v.detach().copy_(saved[k])


@contextmanager
def restoring(module: torch.nn.Module):
    """Run the body with `module`'s weights free to change; restore them bit for bit afterwards."""
    saved = snapshot(module)
    try:
        yield saved
    finally:
        restore(module, saved)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """A float tensor's bytes (so NaN == NaN and -0.0 != 0.0); flattened first, because a 0-dim
    tensor (a scalar parameter) cannot be viewed as a dtype of another element size."""
    return t.reshape(-1).view(torch.uint8) if t.is_floating_point() else t


def weights_equal(module: torch.nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    """True when every tensor equals the snapshot bit for bit (NaNs compared as bits)."""
    current = module.state_dict()
    if set(current) != set(saved):
        return False
    return all(
        v.dtype == saved[k].dtype and v.shape == saved[k].shape and torch.equal(_bits(v), _bits(saved[k]))
        for k, v in current.items()
    )
