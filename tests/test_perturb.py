"""perturb: snapshots, bit-for-bit restore, and the equality check, on every kind of tensor."""

from __future__ import annotations

import torch

from flatcheck.core.perturb import restoring, snapshot, weights_equal


class _Odd(torch.nn.Module):
    """Tensors a checkpoint can hold: a 0-dim scalar parameter (a learned temperature or scale), a
    matrix, a half-precision and an integer buffer, and a NaN."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.5))
        self.weight = torch.nn.Parameter(torch.tensor([[1.0, float("nan")], [0.0, -2.0]]))
        self.register_buffer("low", torch.tensor([0.25, 3.0], dtype=torch.float16))
        self.register_buffer("steps", torch.tensor(7))


def test_weights_equal_handles_scalars_and_compares_bits():
    m = _Odd()
    saved = snapshot(m)
    assert weights_equal(m, saved)  # a 0-dim float parameter used to raise here
    with torch.no_grad():
        m.scale.fill_(1.5000001)
    assert not weights_equal(m, saved)
    with torch.no_grad():
        m.scale.fill_(1.5)
        m.weight[1, 0] = -0.0  # equal as a number, not as bits
    assert not weights_equal(m, saved)
    with torch.no_grad():
        m.weight[1, 0] = 0.0
        m.steps += 1
    assert not weights_equal(m, saved)


def test_restoring_puts_every_tensor_back_after_an_error():
    m = _Odd()
    saved = snapshot(m)
    try:
        with restoring(m), torch.no_grad():
            m.scale.mul_(3)
            m.weight.zero_()
            m.low.fill_(1)
            m.steps.zero_()
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert weights_equal(m, saved) and m.scale.item() == 1.5 and m.steps.item() == 7
