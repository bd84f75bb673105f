"""Several processes, one run: Hugging Face Accelerate's process group, used for work that splits by batch.

    accelerate launch --multi_gpu --num_processes 8 -m flatcheck audit MODEL    # GPUs, one or many machines
    torchrun --nproc_per_node 2 -m flatcheck fid MODEL --device cpu            # CPU processes (gloo)

(accelerate 1.15's `launch --cpu` starts a single process unless given an MPI host file; torchrun
sets the same environment, which Accelerate's PartialState reads.)

What is split: every hook-free batched loop (core.oom.batched): sampling, sample folders,
probe-bank losses, FD feature extraction, quantize settings and the per-layer scan (they sample),
and the sharpness gradients and Hessian-vector products (summed across processes). Batch k goes
to process k mod N; results come back in batch order on every process, so each process holds
what a single process would (sample i is the same: it draws from its own generator; per-probe
numbers are equal; sums over probes equal up to float reduction order). Sampling runs whose step
hooks accumulate statistics (exposure) run whole on every process. Only the main process prints
and writes files.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import torch

T = TypeVar("T")
_STATE = None


def _world_size_env() -> int:
    import os

    for key in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(key):
            try:
                return int(os.environ[key])
            except ValueError:
                pass
    return 1


def start(device: torch.device | str | None = None):
    """Join the launcher's process group (once); single-process runs create nothing."""
    global _STATE
    if _STATE is None and _world_size_env() > 1:
        from accelerate import PartialState

        cpu = torch.device(device).type == "cpu" if device is not None else not torch.cuda.is_available()
        _STATE = PartialState(cpu=cpu)
    return _STATE


def world() -> int:
    return _STATE.num_processes if _STATE is not None else 1


def rank() -> int:
    """This process's index (the launcher's RANK before the group is joined)."""
    if _STATE is not None:
        return _STATE.process_index
    import os

    try:
        return int(os.environ.get("RANK", "0")) if _world_size_env() > 1 else 0
    except ValueError:
        return 0


def is_main() -> bool:
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """A GPU run puts process k on its own GPU (the launcher's LOCAL_RANK)."""
    if _STATE is not None and device.type == "cuda" and device.index is None:
        return _STATE.device
    return device


def split_batches(run: Callable[[list[int]], T], chunks: Sequence[list[int]]) -> list[T]:
    """[run(c) for c in chunks], chunk k computed by process k mod N and shared with all (in order)."""
    if world() == 1 or len(chunks) < 2:
        return [run(c) for c in chunks]
    import torch.distributed as dist

    mine = {k: _to_cpu(run(c)) for k, c in enumerate(chunks) if k % world() == rank()}
    everyone: list = [None] * world()
    dist.all_gather_object(everyone, mine)
    merged: dict = {}
    for part in everyone:
        merged.update(part)
    return [merged[k] for k in range(len(chunks))]


def sum_across(t: torch.Tensor) -> torch.Tensor:
    """The sum of t over processes (t itself for one process)."""
    if world() == 1:
        return t
    import torch.distributed as dist

    out = t.detach().clone()
    dist.all_reduce(out)
    return out


def _to_cpu(x):
    if torch.is_tensor(x):
        return x.cpu()
    if isinstance(x, list):
        return [_to_cpu(v) for v in x]
    return x
