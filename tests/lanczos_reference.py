"""block_lanczos as it was before the bounded-memory restart (flatcheck commit 8bd7bdb), frozen.

The tests hold the new block_lanczos to these numbers bit for bit whenever it does not restart
(max_vectors=None, or a cap the run never reaches). Not used by flatcheck itself.
"""

from __future__ import annotations

from typing import Callable

import torch

from flatcheck.measures.sharpness.hessian import Eigenpairs

Progress = Callable[[str, int, int], None] | None


def _orthonormalise(
    w: torch.Tensor, basis: list[torch.Tensor], new: list[torch.Tensor], thresh: float, gen: torch.Generator, dim: int
) -> tuple[torch.Tensor, float]:
    """Orthonormalise the rows of w against `basis` blocks and against each other (two Gram-Schmidt
    passes: enough in float32). Appends the new rows to `new`; returns R with w = R^T Q (+ dropped
    rows) and the Frobenius norm of what was dropped. A row whose remainder is below `thresh` lies in
    the space already built (the Krylov space closed in that direction): its remainder is dropped
    and a fresh random direction takes its place, so the block keeps its size and a closed space is
    never mistaken for the whole spectrum."""
    b = w.shape[0]
    coef = torch.zeros(b, b, dtype=torch.float64)  # coef[row of Q_next, column of W]
    dropped = 0.0
    for c in range(b):
        v = w[c].clone()
        for _ in range(2):
            for blk in basis:
                v -= (blk @ v) @ blk
            for r, q in enumerate(new):
                x = float(q @ v)
                coef[r, c] += x
                v -= x * q
        n = float(v.norm())
        if n > thresh:
            coef[len(new), c] = n
            new.append(v / n)
            continue
        dropped += n * n
        used = sum(blk.shape[0] for blk in basis) + len(new)
        if used >= dim:
            continue  # the basis spans the whole space: nothing left to add
        f = torch.randn(dim, generator=gen, dtype=torch.float64).to(w)
        for _ in range(2):
            for blk in basis:
                f -= (blk @ f) @ blk
            for q in new:
                f -= float(q @ f) * q
        new.append(f / f.norm())  # its coefficient in column c stays 0
    return coef[: len(new)], dropped**0.5


def block_lanczos(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    k: int,
    max_iter: int,
    tol: float,
    gen: torch.Generator,
    device=None,
    dtype=torch.float32,
    progress: Progress = None,
    block: int | None = None,
) -> Eigenpairs:
    """Top-k eigenvalues of a symmetric operator, counted with multiplicity: block Lanczos with full
    re-orthogonalisation and a random start block of b = max(block, k) vectors.

    One vector per step (plain Lanczos) sees each distinct eigenvalue once: a repeated top
    eigenvalue would come out as a single value followed by lower ones. A start block of b >= k
    vectors gives each eigenvalue min(b, multiplicity) Ritz values (for almost every start).
    With Q the orthonormal basis and T = Q^T H Q block tridiagonal (diagonal blocks A_j, sub-
    diagonal blocks B_j from the QR of the next residual block), every Ritz pair (theta_i, y_i = Q s_i)
    has H y_i - theta_i y_i = Q_{j+1} B_j s_i,last (+ what deflation dropped), which gives both the
    per-value residuals and the joint bound ||B_j S_last||_2. Stops when the joint bound is within
    tol of every |theta_i| or after max_iter HVPs (whole blocks). A Krylov method cannot prove that
    no larger eigenvalue was missed; one absent from the random start block is missed with
    probability zero, and one barely present converges late: the bound stays honest meanwhile.
    The bounds hold for the operator the HVPs compute: float32 HVPs differ from the exact Hessian
    by rounding (about 1e-6 of ||H||), which no bound below that level can see.
    """
    b = min(max(block or k, k), dim)
    if max_iter < b:
        raise ValueError(f"max_iter ({max_iter}) is below one block of {b} HVPs")
    start = torch.randn(b, dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    first: list[torch.Tensor] = []
    _orthonormalise(start, [], first, 0.0, gen, dim)
    blocks = [torch.stack(first)]
    diag: list[torch.Tensor] = []  # A_j
    sub: list[torch.Tensor] = []  # B_j (rows: next block, columns: this block)
    drops: list[float] = []  # ||D_j||_F dropped when building block j+1
    history: list[float] = []
    hvps, hnorm = 0, 0.0
    eps = float(torch.finfo(dtype).eps)
    while True:
        qj = blocks[-1]
        w = torch.stack([matvec(q) for q in qj])  # rows: H q
        for _ in qj:
            hvps += 1
            if progress:
                progress("hessian", hvps, max_iter)
        a = (qj @ w.T).double()
        diag.append((a + a.T) / 2)
        hnorm = max(hnorm, float(torch.linalg.eigvalsh(diag[-1]).abs().max()))
        nxt: list[torch.Tensor] = []
        coef, dropped = _orthonormalise(w, blocks, nxt, 10 * eps * hnorm, gen, dim)
        sub.append(coef)
        drops.append(dropped)

        sizes = [blk.shape[0] for blk in blocks]
        offs = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        T = torch.zeros(offs[-1], offs[-1], dtype=torch.float64)
        for i, ai in enumerate(diag):
            T[offs[i] : offs[i + 1], offs[i] : offs[i + 1]] = ai
            if i + 1 < len(blocks):
                T[offs[i + 1] : offs[i + 2], offs[i] : offs[i + 1]] = sub[i]
                T[offs[i] : offs[i + 1], offs[i + 1] : offs[i + 2]] = sub[i].T
        theta, s = torch.linalg.eigh(T)  # ascending
        top = min(k, len(theta))
        idx = torch.arange(len(theta) - 1, len(theta) - 1 - top, -1)
        vals = theta[idx]
        s_top = s[:, idx]
        # What deflation dropped (D_i, ||D_i||_F = drops[i]) enters H Q s through each block's share of s.
        shares = [s_top[offs[i] : offs[i + 1]] for i in range(len(drops))]
        slack = sum(d * sh.norm(dim=0) for d, sh in zip(drops, shares))
        joint_slack = sum(d * float(torch.linalg.matrix_norm(sh, ord=2)) for d, sh in zip(drops, shares))
        spill = coef @ shares[-1]  # Q_{j+1} B_j S_last, in the next block's coordinates
        residuals = (spill.norm(dim=0) + slack).tolist()
        bound = float(torch.linalg.matrix_norm(spill, ord=2)) + joint_slack
        history.append(float(vals[0]))
        converged = top == k and bound <= tol * float(vals.abs().min())
        if converged or not nxt or hvps + len(nxt) > max_iter:
            break
        blocks.append(torch.stack(nxt))
    return Eigenpairs(
        "block-lanczos", vals.tolist(), residuals, bound, converged, tol, hvps, b, float(theta[0]), history
    )
