"""Block Lanczos with a bounded number of parameter-sized vectors, against closed-form spectra.

Operators are symmetric matrices with a chosen spectrum (diagonal, or turned by a random rotation);
numpy.linalg.eigvalsh gives the truth. The numbers must be those of the block Lanczos that stacked
copies of every block (tests/lanczos_reference.py), bit for bit.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from flatcheck.measures.sharpness.hessian import Eigenpairs, _draw_normal, block_lanczos

from .lanczos_reference import block_lanczos as lanczos_before


def _operator(eig, rotate: bool = True, seed: int = 0, dtype=torch.float64):
    """M = Q diag(eig) Q^T (Q a random rotation, or the identity) and its true eigenvalues, largest first."""
    eig = torch.as_tensor(eig, dtype=torch.float64)
    if rotate:
        q, _ = torch.linalg.qr(torch.randn(len(eig), len(eig), generator=torch.Generator().manual_seed(seed),
                                           dtype=torch.float64))
        m = (q * eig) @ q.T
        m = (m + m.T) / 2
        true = np.linalg.eigvalsh(m.numpy())[::-1]
    else:
        m = torch.diag(eig)
        true = np.sort(eig.numpy())[::-1]
    return m.to(dtype), true


def _spectrum(name: str, n: int) -> torch.Tensor:
    """A few chosen eigenvalues over an even bulk (n in all)."""
    top, low, high = {
        "double top": ([40.0, 40.0, 25.0, 10.0], -2.0, 3.0),
        "triple top": ([5.0, 5.0, 5.0, 4.0], -2.0, 3.0),
        "close": ([40.0, 39.9, 39.8, 30.0], -2.0, 3.0),
        "negative largest": ([-60.0, -45.0, 30.0, 28.0, 24.0], -8.0, 12.0),  # |lambda| largest below zero
    }[name]
    return torch.cat([torch.tensor(top, dtype=torch.float64), torch.linspace(low, high, n - len(top), dtype=torch.float64)])


def _within_joint_bound(vals, true, bound) -> bool:
    """Kahan: the k Ritz values lie within `bound` of k DISTINCT eigenvalues. Intervals of one width on a
    line: matching both sides in descending order, each value to the largest unused eigenvalue it can
    take, finds such a matching whenever one exists."""
    used = set()
    for v in sorted(vals, reverse=True):
        cands = [i for i, t in enumerate(true) if i not in used and abs(t - v) <= bound]
        if not cands:
            return False
        used.add(min(cands, key=lambda i: -true[i]))
    return True


def _fields(res: Eigenpairs) -> dict:
    return dataclasses.asdict(res)


# ---------------------------------------------------------------------------------- start block
@pytest.mark.parametrize("n", [1, 15, 16, 17, 47, 48, 49, 50, 63, 64, 96, 97, 1000, 3 * 337])
@pytest.mark.parametrize("chunk", [32, 48, 64])
def test_the_start_block_drawn_in_pieces_is_one_randn_call(n, chunk):
    """torch.randn(n, float64) in pieces (multiples of 16, last piece >= 16) gives the same numbers and
    leaves the generator where one call leaves it; float32 rounding piece by piece is the same too."""
    one, pieces = torch.Generator().manual_seed(n), torch.Generator().manual_seed(n)
    want = torch.randn(n, generator=one, dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        got = torch.empty(n, dtype=dtype)
        _draw_normal(got, torch.Generator().manual_seed(n), chunk)
        assert torch.equal(got, want.to(dtype))
    _draw_normal(torch.empty(n, dtype=torch.float64), pieces, chunk)
    assert torch.equal(torch.randn(20, generator=one), torch.randn(20, generator=pieces))
    if n >= 64:  # the test can fail: pieces that cut a group of 16 give other numbers
        g = torch.Generator().manual_seed(n)
        cut = torch.cat([torch.randn(20, generator=g, dtype=torch.float64), torch.randn(n - 20, generator=g, dtype=torch.float64)])
        assert not torch.equal(cut, want)


# -------------------------------------------------------------------------------- bit for bit
CASES = [  # (dim, spectrum, k, block, max_iter, tol)
    (61, "double top", 3, None, 60, 1e-8),
    (200, "close", 2, None, 5, 1e-6),  # stops at max_iter, not converged
    (333, "triple top", 3, 4, 36, 1e-3),
    (7, "fills", 4, None, 40, 1e-12),  # the Krylov space closes: deflation, then nothing left to add
    (50, "low rank", 3, None, 30, 1e-10),  # closes at rank 5: fresh random directions
    (999, "negative largest", 1, None, 20, 1e-6),
]


def _case_operator(dim, name, dtype):
    if name == "fills":
        return _operator([5.0, 5.0, 5.0, 2.0, 1.0, 0.5, -3.0], seed=3, dtype=dtype)[0]
    if name == "low rank":
        return _operator([9.0, 7.0, 7.0, 3.0, 1.0] + [0.0] * (dim - 5), seed=4, dtype=dtype)[0]
    return _operator(_spectrum(name, dim), seed=dim, dtype=dtype)[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_the_numbers_are_those_of_the_version_that_stacked_copies_bit_for_bit(case, dtype):
    dim, name, k, block, max_iter, tol = case
    m = _case_operator(dim, name, dtype)
    before = lanczos_before(lambda v: m @ v, dim, k, max_iter, tol, torch.Generator().manual_seed(1), dtype=dtype,
                            block=block)
    res = block_lanczos(lambda v: m @ v, dim, k, max_iter, tol, torch.Generator().manual_seed(1), dtype=dtype,
                        block=block)
    assert _fields(res) == _fields(before)


# ------------------------------------------------------------------------------ peak vectors
class _LiveVectors(TorchDispatchMode):
    """After every torch op, the memory of the storages of at least `dim` entries that ops under this mode
    made and that are still alive, in parameter-sized vectors of `dtype` (a float64 vector counts 2 in
    float32 units). A storage lives while any tensor made on it does (weak references)."""

    def __init__(self, dim: int, dtype: torch.dtype):
        super().__init__()
        self.dim, self.unit = dim, dim * torch.empty((), dtype=dtype).element_size()
        self.live: dict[int, tuple[int, list]] = {}
        self.peak = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() >= self.dim * t.element_size():
                st = t.untyped_storage()
                entry = self.live.get(st.data_ptr())
                if entry is None or not any(r() is not None for r in entry[1]):  # a new storage at a freed address
                    entry = self.live[st.data_ptr()] = (st.nbytes(), [])
                entry[1].append(weakref.ref(t))
        self.peak = max(self.peak, self.now())
        return out

    def now(self) -> float:
        total = 0
        for ptr in list(self.live):
            nbytes, refs = self.live[ptr]
            refs[:] = [r for r in refs if r() is not None]
            if refs:
                total += nbytes
            else:
                del self.live[ptr]
        return total / self.unit


def _peak(fn, m, dim, dtype, **kw):
    seen = []

    def matvec(v):
        seen.append(counter.now())  # before the HVP result exists
        return m @ v

    with _LiveVectors(dim, dtype) as counter:
        res = fn(matvec, dim, 3, kw.pop("max_iter"), 1e-9, torch.Generator().manual_seed(0),
                 dtype=dtype, **kw)
    return res, counter.peak, max(seen)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_peak_parameter_sized_vectors_is_hvps_plus_b_plus_two(dtype):
    """The docstring's count, observed after every op: hvps + b + 2 (the basis rows, the row being
    orthonormalised and a scratch row). The version that stacked copies gives the same numbers with more
    vectors: the count can fail."""
    dim = 2000
    m, _ = _operator(_spectrum("close", dim), rotate=False, dtype=dtype)
    res, peak, at_hvp = _peak(block_lanczos, m, dim, dtype, max_iter=30)
    assert peak == res.hvps + 3 + 2 and at_hvp <= res.hvps + 3  # at a matvec call: basis rows only
    before, peak_before, _ = _peak(lanczos_before, m, dim, dtype, max_iter=30)
    assert _fields(before) == _fields(res) and peak_before > peak + 3  # same numbers, more memory
