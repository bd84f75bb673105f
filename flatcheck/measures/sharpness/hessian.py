"""The Hessian of the training loss on a probe bank, seen only through Hessian-vector products.

    L(theta)  = mean over probes of the denoiser's training loss (MSE on its target)
    H v       = d/dtheta ( grad L(theta) . v )           (double backward: Pearlmutter's trick)
    top-k     : block Lanczos (a start block of b >= k vectors, full re-orthogonalisation), so a
                repeated eigenvalue is found as often as it is repeated (plain Lanczos sees it
                once). Each Ritz value is within its residual of an eigenvalue of H, and all k are
                within the joint bound ||H Y - Y Theta||_2 of k distinct ones (Kahan): the stopping
                rule is joint bound <= tol * min |theta_i|. Under a cap on parameter-sized vectors
                it thick-restarts: keep the top Ritz vectors Y and the residual block Q, for which
                H Y = Y Theta + Q C (up to rounding), so the projected matrix is [[Theta, C^T], [C, A]]
                and the same bounds hold; at most max_vectors + 2 vectors of the parameters' size.
                Power iteration with deflation (as PyHessian does it) is kept for comparison.
    trace     : Hutchinson, tr(H) = E[v^T H v] with Rademacher v; its standard error over draws.
                The same draws give every block's trace, tr(H_bb) = E[v_b^T (H v)_b], and every
                timestep bucket's trace, by computing H v bucket by bucket (H = sum_g w_g H_g).

diffusers attention runs SDPA, whose fused CPU kernel has no double backward: every HVP runs
under the math SDPA backend (core.params.differentiable). Vectors are flat, one entry per parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ...core import dist
from ...core.denoiser import Denoiser
from ...core.params import Blocks, ParamSpace, differentiable
from ...core.probes import ProbeBank
from ...core.stats import Estimate, mean_estimate

Progress = Callable[[str, int, int], None] | None


class BankLoss:
    """The mean training loss over a probe bank as a function of the given parameters.

    `chunks` splits the bank into (group, indices) pieces of at most batch_size probes; the
    loss is sum_c (n_c / N) L_c, so gradients and HVPs are exact whatever the chunking.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        bank: ProbeBank,
        params: list[torch.Tensor],
        batch_size: int,
        groups: torch.Tensor | None = None,
        n_groups: int | None = None,
    ):
        self.denoiser, self.bank, self.params = denoiser, bank, params
        self.space = ParamSpace(params)
        self.dim = self.space.dim
        n = len(bank)
        groups = torch.zeros(n, dtype=torch.long) if groups is None else groups.cpu()
        # every group asked for, even one no probe falls in (its terms are then None)
        self.n_groups = n_groups if n_groups is not None else int(groups.max()) + 1 if n else 1
        self.group_sizes = torch.bincount(groups, minlength=self.n_groups).tolist()
        # Plain chunks (bank order) for speed; grouped chunks (one group each) for per-group terms.
        # Several processes: chunks of at most ceil(n / N), so a bank (or bucket) of one batch still gives
        # every process its part of each gradient and HVP (sums: equal up to float reduction order).
        size = max(1, min(batch_size, -(-n // dist.world())))
        self.chunks = [(None, torch.arange(s, min(s + size, n))) for s in range(0, n, size)]
        self.group_chunks = [
            (g, idx[s : s + step])
            for g in range(self.n_groups)
            for idx in [torch.nonzero(groups == g).flatten()]
            for step in [max(1, min(batch_size, -(-len(idx) // dist.world())))]
            for s in range(0, len(idx), step)
        ]
        # The gradient's graph does not depend on v: when this process's share of the bank fits in one
        # batch, it is built once (forward + first backward) and every HVP is one more backward through it.
        self.retain = sum(len(idx) for _, idx in mine(self.chunks)) <= batch_size
        self._graphs: dict[str, tuple[list, list]] = {}  # "plain"/"group" -> (versions of params, [(g, idx, grads)])
        # Out-of-memory backoff (core.oom): each of this process's chunks is evaluated in this many pieces.
        # Only this process's own chunks are cut, so the processes still share the bank out exactly.
        self.pieces = 1
        self.batch_size = batch_size

    def _chunk_loss(self, idx: torch.Tensor) -> torch.Tensor:
        """Per-probe losses [n_c] of one chunk."""
        d, b = self.denoiser, self.bank
        dev, dt = d.device, d.dtype
        cond = None if b.cond is None else b.cond[idx].to(dev)
        return d.loss(b.x0[idx].to(dev, dt), b.t[idx].to(dev), b.noise[idx].to(dev, dt), cond, reduction="none")

    def unflat(self, v: torch.Tensor) -> list[torch.Tensor]:
        return self.space.views(v)

    def _local(self, chunks) -> list:
        """This process's share of the chunks, each cut into self.pieces parts."""
        out = []
        for g, idx in mine(chunks):
            step = max(1, -(-len(idx) // self.pieces))
            out += [(g, idx[s : s + step]) for s in range(0, len(idx), step)]
        return out

    def _fitting(self, call):
        """call(), with this process's chunks cut in twice as many pieces after each CUDA out-of-memory
        error (and no graph kept), down to one probe; the sums do not depend on the cut."""
        from ...core import oom

        while True:
            try:
                return call()
            except BaseException as exc:  # noqa: BLE001 - only out-of-memory is handled
                if not oom.is_oom(exc):
                    raise
            self._graphs.clear()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            largest = max((len(idx) for _, idx in self._local(self.chunks + self.group_chunks)), default=1)
            if largest <= 1:
                from ...errors import RunError

                raise RunError(
                    "out of memory in the Hessian-vector products even at one probe: use --params, "
                    "--gradient-checkpointing, a smaller --dtype or another device"
                )
            self.pieces *= 2
            oom.BACKOFFS.append(
                {
                    "where": "sharpness gradients and HVPs",
                    "requested": self.batch_size,
                    "used": max(1, -(-largest // 2)),
                }
            )

    def value_and_grad(self, out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-probe losses [N] (float64, CPU) at the current weights and the gradient of their mean (flat;
        written into `out` when given: no other parameter-sized vector is made)."""
        return self._fitting(lambda: self._value_and_grad(out))

    def _value_and_grad(self, out: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.bank)
        grad = self.space.zeros() if out is None else out.zero_()
        losses = torch.zeros(n, dtype=torch.float64)
        with differentiable(self.params):
            for _, idx in self._local(self.chunks):  # several processes: each its share of the chunks, then summed
                per = self._chunk_loss(idx)
                self.space.backward_into(grad, per.sum() / n)
                losses[idx] = per.detach().double().cpu()
        return dist.sum_across(losses), dist.sum_across(grad)

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """H v for the whole bank (flat v, flat result)."""
        return self._hvp(v, self.chunks)[0]

    def hvp_by_group(self, v: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
        """H v and, for every group g, v^T H_g v, with H_g the Hessian of the group's mean loss."""
        return self._hvp(v, self.group_chunks)

    def _gradients(self, chunks, key: str):
        """(group, indices, gradient with its graph) per chunk of this process; kept for the next HVP when
        self.retain and the weights have not changed since (their version counters say so)."""
        versions = [p._version for p in self.params]
        kept = self._graphs.get(key)
        if kept is not None and kept[0] == versions:
            return kept[1]
        self._graphs.pop(key, None)  # stale: the weights moved
        out = []
        for g, idx in self._local(chunks):
            loss = self._chunk_loss(idx).mean()
            out.append((g, idx, torch.autograd.grad(loss, self.params, create_graph=True)))
        if self.keeps:
            self._graphs[key] = (versions, out)
        return out

    @property
    def keeps(self) -> bool:
        """Whether gradient graphs are kept between HVPs (not once a chunk had to be cut to fit)."""
        return self.retain and self.pieces == 1

    def release(self) -> None:
        """Free the kept gradient graphs (their activations)."""
        self._graphs.clear()

    def _hvp(self, v: torch.Tensor, chunks) -> tuple[torch.Tensor, list[float]]:
        return self._fitting(lambda: self._hvp_once(v, chunks))

    def _hvp_once(self, v: torch.Tensor, chunks) -> tuple[torch.Tensor, list[float]]:
        """Vectors: the result, and one more for a chunk's share when there are several chunks
        (v enters as views; the kept gradient, with its graph, is the other parameter-sized tensor)."""
        n = len(self.bank)
        vs = self.unflat(v)
        out = torch.zeros_like(v)
        quad = [0.0] * self.n_groups
        hv = None
        with differentiable(self.params, second_order=True):
            gradients = self._gradients(chunks, "plain" if chunks is self.chunks else "group")
            for g, idx, grads in gradients:
                # v enters as the gradient's grad_outputs (the vector-Jacobian product of grad L with v):
                # the same numbers as differentiating the scalar grad L . v, without its graph of products
                if g is None and len(gradients) == 1 and len(idx) == n:  # the whole bank at once: straight into out
                    self.space.backward_into(out, grads, vs, retain_graph=self.keeps)
                    continue
                hv = torch.zeros_like(v) if hv is None else hv.zero_()
                self.space.backward_into(hv, grads, vs, retain_graph=self.keeps)
                out.add_(hv, alpha=len(idx) / n)
                if g is not None:
                    quad[g] += float(v @ hv) * len(idx) / self.group_sizes[g]
        del hv
        if dist.world() > 1:
            out = dist.sum_across(out)
            quad = dist.sum_across(torch.tensor(quad, dtype=torch.float64)).tolist()
        return out, quad


def mine(chunks: list) -> list:
    """This process's share of the chunks (all of them in a single-process run): chunk k goes to process k mod N."""
    return [c for k, c in enumerate(chunks) if k % dist.world() == dist.rank()]


# ------------------------------------------------------------------------------- top eigenvalues
@dataclass
class Eigenpairs:
    """Top eigenvalues (counted with multiplicity) by block Lanczos or power iteration, with error bounds."""

    method: str  # "block-lanczos" or "power"
    eigenvalues: list[float]  # largest first; a repeated eigenvalue appears once per multiplicity
    residuals: list[float]  # ||H y_i - theta_i y_i||: theta_i is within it of SOME eigenvalue of H
    bound: float | None  # ||H Y - Y Theta||_2: each theta_i is within it of a DISTINCT eigenvalue
    # (Kahan's theorem; the joint bound that counts multiplicity). None for power iteration.
    converged: bool  # block Lanczos: bound <= tol * min |theta_i|; power: each Rayleigh quotient
    # changed by <= tol (relative) between two HVPs (a stopping rule, not an error bound)
    tol: float
    hvps: int
    block: int = 1  # vectors per Lanczos step (>= k: a block of size b sees multiplicities up to b)
    min_eigenvalue: float | None = None  # lowest Ritz value seen (Lanczos only)
    history: list[float] = field(default_factory=list)  # top estimate after each step (block Lanczos: every
    # `block` HVPs; power iteration: every HVP of the first eigenvalue)
    restarts: int = 0  # thick restarts of block Lanczos (0: the plain block Lanczos basis was never capped)
    max_vectors: int | None = None  # the cap on parameter-sized basis vectors (None: no cap)


def _draw_normal(out: torch.Tensor, gen: torch.Generator, chunk: int) -> None:
    """Fill `out` (contiguous) with the numbers torch.randn(out.numel(), dtype=float64, generator=gen)
    .to(out) gives, drawing at most `chunk` (a multiple of 16, >= 32) float64 numbers at a time.

    torch's CPU normal sampler draws every uniform in turn, maps them 16 at a time (Box-Muller:
    entry i and i + 8 of each 16 from one pair), then redraws the last 16 when the count is not a
    multiple of 16. Pieces that are multiples of 16 with a last piece of at least 16 therefore give
    the same numbers and leave the generator in the same state as one call (tests check it)."""
    flat_out = out.view(-1)
    n, s = flat_out.numel(), 0
    while s < n:
        rest = n - s
        take = rest if rest <= chunk else (chunk if rest - chunk >= 16 else chunk - 16)
        flat_out[s : s + take].copy_(torch.randn(take, generator=gen, dtype=torch.float64))
        s += take


def _orthonormalise(
    w: torch.Tensor, basis: list[torch.Tensor], thresh: float, gen: torch.Generator, chunk: int
) -> tuple[torch.Tensor, float, int]:
    """Orthonormalise the rows of w against `basis` blocks and against each other (two Gram-Schmidt
    passes: enough in float32), in place: the first `kept` rows of w become the new rows. Returns R
    with w = R^T Q (+ dropped rows), the Frobenius norm of what was dropped, and `kept`. A row whose
    remainder is below `thresh` lies in the space already built (the Krylov space closed in that
    direction): its remainder is dropped and a fresh random direction takes its place, so the block
    keeps its size and a closed space is never mistaken for the whole spectrum.

    Two rows beside w and the basis: the row being orthonormalised (v) and one scratch row (t) that
    holds a projection or an aligned copy of a new row (BLAS sums can depend on where a vector
    starts in memory; this keeps every product on the same layout as separate vectors, so the
    numbers are those of the version that stacked copies)."""
    b, dim = w.shape
    coef = torch.zeros(b, b, dtype=torch.float64)  # coef[row of Q_next, column of W]
    dropped, kept = 0.0, 0
    v, t = torch.empty_like(w[0]), torch.empty_like(w[0])

    def against_basis(v: torch.Tensor) -> None:
        for blk in basis:
            v -= torch.mm((blk @ v)[None], blk, out=t[None])[0]  # v -= (blk v) blk

    for c in range(b):
        v.copy_(w[c])
        for _ in range(2):
            against_basis(v)
            for r in range(kept):
                t.copy_(w[r])
                x = float(t @ v)
                coef[r, c] += x
                v -= t.mul_(x)
        n = float(v.norm())
        if n > thresh:
            coef[kept, c] = n
            w[kept].copy_(v.div_(n))  # w[c] was copied to v: rows up to c are free
            kept += 1
            continue
        dropped += n * n
        used = sum(blk.shape[0] for blk in basis) + kept
        if used >= dim:
            continue  # the basis spans the whole space: nothing left to add
        _draw_normal(v, gen, chunk)  # v now holds the fresh direction f
        for _ in range(2):
            against_basis(v)
            for r in range(kept):
                t.copy_(w[r])
                v -= t.mul_(float(t @ v))
        w[kept].copy_(v.div_(v.norm()))  # its coefficient in column c stays 0
        kept += 1
    return coef[:kept], dropped**0.5, kept


def _recombine(blocks: list[torch.Tensor], s: torch.Tensor, dim: int) -> list[torch.Tensor]:
    """Y = V S in place: V is the rows of `blocks` in order, S (float64, rows of V x p) has p <= rows;
    Y's rows overwrite V's first p rows, a few columns at a time (float64 sums), so no extra
    parameter-sized vector is needed. Returns the views that hold Y, as blocks."""
    m, p = s.shape
    cols = max(1, min(2**20, dim // (4 * (m + p))))  # float64 scratch: under half a vector
    st = s.T.to(blocks[0].device)
    for c0 in range(0, dim, cols):
        c1 = min(dim, c0 + cols)
        y = st @ torch.cat([blk[:, c0:c1] for blk in blocks]).double()
        r = 0
        for blk in blocks:
            n = min(blk.shape[0], p - r)
            if n <= 0:
                break
            blk[:n, c0:c1] = y[r : r + n]
            r += n
    held, r = [], 0
    for blk in blocks:
        n = min(blk.shape[0], p - r)
        if n <= 0:
            break
        held.append(blk[:n])
        r += n
    return held


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
    max_vectors: int | None = None,
) -> Eigenpairs:
    """Top-k eigenvalues of a symmetric operator, counted with multiplicity: block Lanczos with full
    re-orthogonalisation and a random start block of b = max(block, k) vectors, thick-restarted
    so that at most `max_vectors` parameter-sized basis vectors exist.

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

    Thick restart (Wu and Simon's, by blocks): when the next block would not fit under max_vectors,
    keep the p top Ritz vectors Y = Q S_p (p a multiple of b, about half of what the cap leaves,
    at least b) and the residual block Q_{j+1}. Exactly as above,
        H Y = Y Theta_p + Q_{j+1} C (+ dropped),   C = B_j S_p,last,
    so on the basis [Y, Q_{j+1}, Q_{j+2}, ...] the projected matrix is the arrowhead
        T = [[Theta_p, C^T], [C, A_{j+1}, B_{j+1}^T], [B_{j+1}, A_{j+2}, ...], ...]
    (block tridiagonal with a diagonal first block) and the residual formulas, bounds and stopping
    rule carry over unchanged; what deflation dropped before the restart stays in the bounds as
    ||D S_p||_2 <= sum_i ||D_i||_F ||S_p,i||_2. Restarts cost no HVP (Y is a recombination) but
    slow convergence: benchmarks/bench_lanczos_restart.py counts the HVPs. Without a restart the
    numbers are those of unrestarted block Lanczos, bit for bit. min_eigenvalue is the lowest Ritz
    value seen at any restart or at the end (the bottom of the spectrum is not kept: an upper
    bound on the lowest eigenvalue that does not improve after the first restart).

    Memory, in parameter-sized vectors (dim entries of `dtype`): the basis, kept in blocks of b rows
    (the block built from the last one's HVPs included), and beside it at most 2 more at any time:
    while the HVPs run, the one result not yet copied into its row; while a block is orthonormalised,
    the row being orthonormalised and one scratch row. With a cap the basis holds at most
    floor(max_vectors / b) blocks (max_vectors >= 3b: b kept Ritz vectors, the residual block, the
    block built from it), so the peak is b * floor(max_vectors / b) + 2 (max_vectors + 2 when b
    divides it); without one, hvps + b + 2 (at most b * (max_iter // b + 1) + 2). No float64 vector
    of dim entries is made: the start block and fresh directions are drawn a few float64 numbers at
    a time (the numbers one torch.randn(b, dim, dtype=float64) gives), and a restart recombines a
    few columns at a time. What the matvec itself holds (an HVP's graph and buffers) comes on top.
    """
    b = min(max(block or k, k), dim)
    if max_iter < b:
        raise ValueError(f"max_iter ({max_iter}) is below one block of {b} HVPs")
    if max_vectors is not None and max_vectors < 3 * b:
        raise ValueError(
            f"max_vectors ({max_vectors}) is below 3 blocks of {b} (kept Ritz vectors, residual block, next block)"
        )
    chunk = 16 * max(2, min(2**16, dim // 64))  # float64 numbers per draw: under half a float32 vector (dim >= 128)
    start = torch.empty(b, dim, device=device, dtype=dtype)
    _draw_normal(start, gen, chunk)  # torch.randn(b, dim, generator=gen, dtype=float64).to(dtype), piece by piece
    _, _, kept = _orthonormalise(start, [], 0.0, gen, chunk)
    store = [start[:kept]]  # the basis, block by block (after a restart Y spans the first ones); last: Q_j
    del start
    sizes = [kept]  # rows of T's blocks (after a restart the first is Y)
    diag: list[torch.Tensor] = []  # A_j (after a restart the first is diag(Theta_p))
    sub: list[torch.Tensor] = []  # B_j (rows: next block, columns: this block; after a restart the first is C)
    drops: list[float] = []  # ||D_j||_F dropped when building block j+1 (after a restart the first bounds ||D S_p||_2)
    history: list[float] = []
    hvps, hnorm, restarts, lowest = 0, 0.0, 0, float("inf")
    eps = float(torch.finfo(dtype).eps)
    while True:
        qj = store[-1]
        w = torch.empty(b, dim, device=qj.device, dtype=dtype)[: len(qj)]  # rows: H q; orthonormalised in
        # place into the next block (every block's storage holds b rows, so a restart can reuse them)
        for c, q in enumerate(qj):
            w[c].copy_(matvec(q))
            hvps += 1
            if progress:
                progress("hessian", hvps, max_iter)
        a = (qj @ w.T).double()
        diag.append((a + a.T) / 2)
        hnorm = max(hnorm, float(torch.linalg.eigvalsh(diag[-1]).abs().max()))
        coef, dropped, kept = _orthonormalise(w, store, 10 * eps * hnorm, gen, chunk)
        sub.append(coef)
        drops.append(dropped)

        offs = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        T = torch.zeros(offs[-1], offs[-1], dtype=torch.float64)
        for i, ai in enumerate(diag):
            T[offs[i] : offs[i + 1], offs[i] : offs[i + 1]] = ai
            if i + 1 < len(sizes):
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
        if converged or not kept or hvps + kept > max_iter:
            break
        nxt = w[:kept]
        if max_vectors is None or b * (len(store) + 2) <= max_vectors:  # the basis and the next block's rows
            store.append(nxt)
            sizes.append(kept)
            continue
        # Thick restart: the next block's HVPs would not fit. Keep p top Ritz vectors and Q_{j+1}.
        del qj, q, a  # views of a block that Y may not reuse: its storage goes once the list lets it go
        p = _kept_ritz(b, offs[-1], max_vectors - 2 * b)
        keep = torch.arange(len(theta) - 1, len(theta) - 1 - p, -1)
        s_keep = s[:, keep]
        lowest = min(lowest, float(theta[0]))
        carried = sum(
            d * float(torch.linalg.matrix_norm(s_keep[offs[i] : offs[i + 1]], ord=2)) for i, d in enumerate(drops)
        )  # bounds ||D S_p||_2
        store = _recombine(store, s_keep, dim) + [nxt]
        sizes = [p, kept]
        diag = [torch.diag(theta[keep])]
        sub = [coef @ s_keep[offs[-2] : offs[-1]]]  # C = B_j S_p,last
        drops = [carried]
        restarts += 1
    low = float(theta[0]) if not restarts else min(lowest, float(theta[0]))
    return Eigenpairs(
        "block-lanczos", vals.tolist(), residuals, bound, converged, tol, hvps, b, low, history, restarts, max_vectors
    )


def _kept_ritz(b: int, rows: int, room: int) -> int:
    """How many top Ritz vectors a restart keeps: whole blocks, half of the room the cap leaves beside the
    residual block and the next one (rounded up), at least one block, fewer rows than the basis has.
    Keeping all of the room, or one block, took up to 2.4x more HVPs on the spectra of
    benchmarks/bench_lanczos_restart.py (this rule changed by hand, 2026-12-07)."""
    blocks = room // b
    return b * max(1, min((blocks + 1) // 2, (rows - 1) // b))


def lanczos_peak_vectors(config) -> int:
    """Parameter-sized vectors block_lanczos holds at most for a sharpness config (its docstring's count)."""
    b = config.top_k
    unrestarted = b * (config.lanczos_iters // b + 1) + 2
    return min(config.lanczos_basis * b + 2, unrestarted)


def power_iteration(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    k: int,
    max_iter: int,
    tol: float,
    gen: torch.Generator,
    device=None,
    dtype=torch.float32,
    progress: Progress = None,
) -> Eigenpairs:
    """Top-k (by magnitude) eigenvalues by power iteration with deflation, PyHessian's way.

    Each eigenvalue iterates v <- H v / |H v| with v kept orthogonal to the ones already found,
    until the Rayleigh quotient changes by less than tol (relative) between two HVPs.
    """
    found: list[torch.Tensor] = []
    vals: list[float] = []
    res: list[float] = []
    hvps, history, converged = 0, [], True
    for _ in range(k):
        v = torch.randn(dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
        lam_prev, ok, used = None, False, v
        for _ in range(max_iter):
            for u in found:
                v.sub_(u, alpha=float(v @ u))
            v /= v.norm()
            used = v  # the unit vector whose Rayleigh quotient is lam
            hv = matvec(v)
            hvps += 1
            lam = float(v @ hv)
            if not found:
                history.append(lam)
            if progress:
                progress("hessian", hvps, k * max_iter)
            residual = float((hv - lam * v).norm())
            if lam_prev is not None and abs(lam - lam_prev) <= tol * (abs(lam_prev) + 1e-12):
                ok = True
                break
            lam_prev, v = lam, hv
        vals.append(lam)
        res.append(residual)
        found.append(used)
        converged &= ok
    return Eigenpairs("power", vals, res, None, converged, tol, hvps, 1, None, history)


# ---------------------------------------------------------------------------------------- trace
@dataclass
class TraceEstimate:
    """Hutchinson trace of the Hessian, whole and broken down (same Rademacher draws for all)."""

    trace: Estimate
    by_group: list[
        Estimate | None
    ]  # per timestep bucket (None: no probe in it): trace of that bucket's mean-loss Hessian
    by_block: dict[str, Estimate]  # per parameter block: trace of its diagonal block
    draws: int
    hvps: int


def hutchinson(
    op: BankLoss,
    draws: int,
    gen: torch.Generator,
    blocks: Blocks | None = None,
    dtype=torch.float32,
    progress: Progress = None,
) -> TraceEstimate:
    """tr(H) from `draws` Rademacher probes; `blocks` (core.params.Blocks) names the diagonal blocks to trace.

    Vectors: v and H v (v * H v is formed in place of H v), plus the HVP's own."""
    totals, groups = [], []
    per_block: dict[str, list[float]] = {name: [] for name in (blocks.names() if blocks else [])}
    v = torch.empty(op.dim, dtype=dtype, device=op.params[0].device)
    for i in range(draws):
        op.space.rademacher(gen, v)
        hv, quad = op.hvp_by_group(v)
        prod = hv.mul_(v)
        totals.append(float(prod.sum()))
        groups.append(quad)
        for name in per_block:
            per_block[name].append(float(blocks.gather(name, prod).sum()))
        del hv, prod
        if progress:
            progress("hutchinson", i + 1, draws)
    by_group = [mean_estimate([q[g] for q in groups]) if op.group_sizes[g] else None for g in range(op.n_groups)]
    return TraceEstimate(
        mean_estimate(totals), by_group, {k: mean_estimate(v) for k, v in per_block.items()}, draws, draws
    )
