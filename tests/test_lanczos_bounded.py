"""Block Lanczos under a cap on parameter-sized vectors (thick restart), against closed-form spectra.

Operators are symmetric matrices with a chosen spectrum (diagonal, or turned by a random rotation);
numpy.linalg.eigvalsh gives the truth. Without a restart the numbers must be those of the block
Lanczos that kept every block (tests/lanczos_reference.py), bit for bit.
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
        q, _ = torch.linalg.qr(
            torch.randn(len(eig), len(eig), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        )
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
    return torch.cat(
        [torch.tensor(top, dtype=torch.float64), torch.linspace(low, high, n - len(top), dtype=torch.float64)]
    )


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
    d = dataclasses.asdict(res)
    d.pop("restarts")
    d.pop("max_vectors")
    return d


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
        cut = torch.cat(
            [torch.randn(20, generator=g, dtype=torch.float64), torch.randn(n - 20, generator=g, dtype=torch.float64)]
        )
        assert not torch.equal(cut, want)


# ------------------------------------------------------------------------- no restart: bit for bit
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
def test_without_a_restart_the_numbers_are_those_of_the_unbounded_version_bit_for_bit(case, dtype):
    dim, name, k, block, max_iter, tol = case
    m = _case_operator(dim, name, dtype)
    before = lanczos_before(
        lambda v: m @ v, dim, k, max_iter, tol, torch.Generator().manual_seed(1), dtype=dtype, block=block
    )
    b = before.block
    never = b * (max_iter // b + 2)  # the most rows an unrestarted run can hold: a cap it never reaches
    for cap in (None, never, 10**6):
        res = block_lanczos(
            lambda v: m @ v,
            dim,
            k,
            max_iter,
            tol,
            torch.Generator().manual_seed(1),
            dtype=dtype,
            block=block,
            max_vectors=cap,
        )
        assert _fields(res) == _fields(before) and res.restarts == 0 and res.max_vectors == cap
    tight = block_lanczos(
        lambda v: m @ v,
        dim,
        k,
        max_iter,
        tol,
        torch.Generator().manual_seed(1),
        dtype=dtype,
        block=block,
        max_vectors=3 * b,
    )
    if tight.restarts:  # the test can fail: a restart changes the numbers
        assert _fields(tight) != _fields(before)


def test_old_constructors_still_work_and_power_iteration_is_untouched():
    e = Eigenpairs("power", [1.0], [0.0], None, True, 1e-3, 4, 1, None, [1.0])
    assert e.restarts == 0 and e.max_vectors is None


# ----------------------------------------------------------------------------- restarts: bounds
@pytest.mark.parametrize("rotate", [True, False], ids=["rotated", "diagonal"])
@pytest.mark.parametrize(
    "name,dim,tol",
    [
        ("double top", 400, 1e-8),
        ("triple top", 300, 1e-8),
        ("close", 200, 1e-6),
        ("negative largest", 150, 1e-6),
    ],
)
@pytest.mark.parametrize("cap", [9, 12, 18])
def test_restarted_top_k_lie_within_their_reported_bounds(name, dim, tol, cap, rotate):
    """k = 3 (blocks of 3; 9 = the smallest cap): each value within its residual of an eigenvalue, all three
    within the joint bound of three distinct ones, multiplicity found, converged flag as the rule says."""
    m, true = _operator(_spectrum(name, dim), rotate=rotate, seed=dim)
    res = block_lanczos(
        lambda v: m @ v, dim, 3, 3000, tol, torch.Generator().manual_seed(2), dtype=torch.float64, max_vectors=cap
    )
    assert res.restarts > 0 and res.max_vectors == cap and res.converged
    assert res.bound <= tol * min(abs(v) for v in res.eigenvalues)  # the stopping rule, as reported
    for v, r in zip(res.eigenvalues, res.residuals):
        assert np.abs(true - v).min() <= r + 1e-12
    assert _within_joint_bound(res.eigenvalues, true, res.bound + 1e-12)
    assert res.eigenvalues == pytest.approx(true[:3].tolist(), abs=10 * res.bound + 1e-10)  # with multiplicity
    assert res.hvps % 3 == 0 and len(res.history) == res.hvps // 3
    assert true[-1] - 1e-9 <= res.min_eigenvalue <= max(res.eigenvalues)


@pytest.mark.parametrize("cap", [9, 15])
def test_a_run_stopped_by_max_iter_says_so_and_its_bounds_still_hold(cap):
    eig = torch.cat([torch.tensor([40.0, 39.9, 39.8]), torch.linspace(-2.0, 39.7, 297)])  # a cluster on a dense bulk
    m, true = _operator(eig, seed=5)
    res = block_lanczos(
        lambda v: m @ v, 300, 3, 30, 1e-6, torch.Generator().manual_seed(0), dtype=torch.float64, max_vectors=cap
    )
    assert res.restarts > 0 and not res.converged and res.hvps == 30
    assert res.bound > 1e-6 * min(abs(v) for v in res.eigenvalues)
    for v, r in zip(res.eigenvalues, res.residuals):
        assert np.abs(true - v).min() <= r + 1e-12
    assert _within_joint_bound(res.eigenvalues, true, res.bound + 1e-12)


def test_deflation_and_restarts_together_on_a_low_rank_operator():
    """Rank 5 in dim 120: the Krylov space closes after two blocks, rows are dropped and replaced by fresh
    directions while the cap forces restarts; the top 3 (7 twice) still come out within their bounds."""
    m, true = _operator([9.0, 7.0, 7.0, 3.0, 1.0] + [0.0] * 115, seed=6)
    res = block_lanczos(
        lambda v: m @ v, 120, 3, 300, 1e-10, torch.Generator().manual_seed(0), dtype=torch.float64, max_vectors=9
    )
    assert res.converged and res.restarts > 0
    assert res.eigenvalues == pytest.approx([9.0, 7.0, 7.0], abs=1e-8)
    assert _within_joint_bound(res.eigenvalues, true, res.bound + 1e-12)


def test_float32_restarts_keep_honest_bounds():
    """The working precision of the measure: bounds hold above float32 rounding of ||H|| (about 40 * 1e-6)."""
    m, true = _operator(_spectrum("double top", 800), seed=7, dtype=torch.float32)
    for cap in (9, 12):
        res = block_lanczos(lambda v: m @ v, 800, 3, 600, 1e-4, torch.Generator().manual_seed(0), max_vectors=cap)
        assert res.converged and res.restarts > 0
        for v, r in zip(res.eigenvalues, res.residuals):
            assert np.abs(true - v).min() <= r + 40 * 1e-6
        assert _within_joint_bound(res.eigenvalues, true, res.bound + 40 * 1e-6)


def test_restarts_are_deterministic():
    m, _ = _operator(_spectrum("triple top", 200), seed=8, dtype=torch.float32)
    runs = [
        block_lanczos(lambda v: m @ v, 200, 3, 120, 1e-5, torch.Generator().manual_seed(4), max_vectors=12)
        for _ in range(2)
    ]
    assert runs[0].restarts > 0 and runs[0] == runs[1]


def test_a_cap_below_three_blocks_is_refused():
    with pytest.raises(ValueError, match="max_vectors"):
        block_lanczos(lambda v: v, 50, 3, 30, 1e-3, torch.Generator().manual_seed(0), max_vectors=8)


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
        res = fn(matvec, dim, 3, kw.pop("max_iter"), 1e-9, torch.Generator().manual_seed(0), dtype=dtype, **kw)
    return res, counter.peak, max(seen)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_peak_parameter_sized_vectors_is_max_vectors_plus_two(dtype):
    """The docstring's count, observed after every op: capped, exactly max_vectors + 2 (the basis rows, the
    row being orthonormalised and a scratch row; when the matvec is called, the basis rows alone); no cap,
    hvps + b + 2. The version that stacked copies gives the same numbers with more vectors: the count can fail."""
    dim = 2000
    m, _ = _operator(_spectrum("close", dim), rotate=False, dtype=dtype)
    for cap in (9, 12, 18):
        res, peak, at_hvp = _peak(block_lanczos, m, dim, dtype, max_vectors=cap, max_iter=30)
        assert res.restarts > 0 and peak == cap + 2
        assert at_hvp <= cap  # when the matvec is called: the basis rows only, the HVP result comes next
    res, peak, _ = _peak(block_lanczos, m, dim, dtype, max_iter=30)
    assert res.restarts == 0 and peak == res.hvps + 3 + 2
    before, peak_before, _ = _peak(lanczos_before, m, dim, dtype, max_iter=30)
    assert _fields(before) == _fields(res) and peak_before > peak + 3  # same numbers, more memory


# ------------------------------------------------------------------------------- HVP cost of a cap
def test_a_cap_of_six_blocks_costs_no_extra_hvp_on_an_outlier_spectrum():
    """Outliers over a bulk (the shape of the digits models' Hessians), tol 1e-3: a cap of 6 blocks needs the
    HVPs of the unbounded run, 4 blocks at most 1.5x, the minimum of 3 blocks at most 3x. Counts, not
    times; benchmarks/bench_lanczos_restart.py prints the whole table."""
    n = 1500
    i = torch.arange(1, n - 3, dtype=torch.float64)
    m, _ = _operator(
        torch.cat([torch.tensor([10.0, 6.0, 4.0, 3.0], dtype=torch.float64), 1.5 * i**-0.7 - 0.05]), seed=1
    )
    counts = {}
    for cap in (None, 9, 12, 18):
        res = block_lanczos(
            lambda v: m @ v, n, 3, 600, 1e-3, torch.Generator().manual_seed(2), dtype=torch.float64, max_vectors=cap
        )
        assert res.converged and (res.restarts > 0) == (cap is not None and res.hvps > cap - 3)
        counts[cap] = res.hvps
    assert counts[18] == counts[None] and counts[12] <= 1.5 * counts[None] and counts[9] <= 3 * counts[None]
