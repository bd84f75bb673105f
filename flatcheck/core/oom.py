"""Out-of-memory backoff: a batch that does not fit on the GPU is split in halves and retried.

Every batched loop over samples or probes goes through `batched`: on CUDA out-of-memory the
failing chunk is split in two and each half is run (recursively, down to one item), so a run
never dies of a batch size that was too big; what it costs is stated. Results do not depend on
the split: sample i draws from its own generator, and probe losses are per probe. Each backoff
is recorded in BACKOFFS (requested size, size that fitted, where), which the report prints.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import torch

from ..errors import RunError

T = TypeVar("T")
BACKOFFS: list[dict] = []  # this process's backoffs since the last reset(), in order


def reset() -> None:
    BACKOFFS.clear()


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower() and "CUDA" in str(exc)
    )


def batched(
    run: Callable[[Sequence[int]], T], items: Sequence[int], batch_size: int, where: str, split: bool = True
) -> list[T]:
    """[run(chunk) for each chunk of `items` of at most batch_size], halving any chunk that runs out of memory.

    split: in a run of several processes, chunk k is computed by process k mod N and every process
    gets all results in order (core.dist); False runs every chunk here (a caller whose `run` has side
    effects that must see every chunk, e.g. sampling watched by step hooks).
    """
    from . import dist

    chunks = [list(items[s : s + batch_size]) for s in range(0, len(items), batch_size)]
    fit = lambda c: _fit(run, c, where, batch_size)  # noqa: E731
    parts = dist.split_batches(fit, chunks) if split else [fit(c) for c in chunks]
    return [r for part in parts for r in part]


def _fit(run, chunk: list[int], where: str, requested: int) -> list:
    try:
        return [run(chunk)]
    except BaseException as exc:  # noqa: BLE001 - only out-of-memory is handled, everything else re-raised
        if not is_oom(exc):
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if len(chunk) == 1:
        raise RunError(
            f"out of memory in {where} even at batch size 1: use a smaller --dtype, --sample-size or another device"
        )
    half = len(chunk) // 2
    BACKOFFS.append({"where": where, "requested": requested, "used": half})
    return _fit(run, chunk[:half], where, requested) + _fit(run, chunk[half:], where, requested)


def describe() -> list[dict]:
    """The backoffs, merged per place: the smallest batch that fitted there."""
    merged: dict[str, dict] = {}
    for b in BACKOFFS:
        m = merged.setdefault(b["where"], dict(b))
        m["used"] = min(m["used"], b["used"])
    return list(merged.values())
