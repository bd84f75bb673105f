"""Weight perturbation that never leaves the model changed.

`restoring(module)` snapshots every parameter and buffer and copies them back on
exit - normal return, exception or Ctrl-C alike - so the weights are bit for bit
what they were (one copy of the model: small modules, tests).

`untouched(module)` guards code that never writes weights but points parameters at other
tensors (simulated quantization swaps in quantized copies): on exit every parameter and
buffer points at its own tensor again, and a write into one (its version counter moved) is an
error. No copy is made, so it costs nothing on a billion-parameter model. Sharpness writes
weights and restores them from its own saved vector (measures/sharpness).
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


@contextmanager
def untouched(module: torch.nn.Module):
    """Run the body, which may re-point parameters (`p.data = other`) but must not write them; on exit
    every tensor is its own again, and an in-place write to one is reported (RuntimeError)."""
    tensors = [t for _, t in list(module.named_parameters()) + list(module.named_buffers())]
    saved = [(t, t.data, t.data._version) for t in tensors]
    try:
        yield
    finally:
        for t, data, _ in saved:
            if t.data is not data:
                t.data = data
        written = [i for i, (_, data, version) in enumerate(saved) if data._version != version]
        if written:
            raise RuntimeError(f"{len(written)} weight tensor(s) were written in place where only swaps are allowed")


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
