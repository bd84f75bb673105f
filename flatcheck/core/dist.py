"""Several processes, one run: Hugging Face Accelerate's process group, used for work that splits by batch.

    accelerate launch --multi_gpu --num_processes 8 -m flatcheck audit MODEL                # GPUs, one or many machines
    accelerate launch --multi_gpu --num_processes 2 -m flatcheck fid MODEL --device cpu    # CPU processes (gloo)
    torchrun --nproc_per_node 2 -m flatcheck fid MODEL --device cpu                        # the same, torch's launcher

(accelerate 1.15's `launch --cpu --num_processes N` starts a single process unless given an MPI
host file: start() says so in one line and the run goes on as one process. `--multi_gpu` runs
torch.distributed.run, which starts N processes on CPUs too; Accelerate's PartialState reads the
environment either launcher sets.)

What is split: every hook-free batched loop (core.oom.batched): sampling, sample folders,
probe-bank losses, FD feature extraction, quantize settings and the per-layer scan (they sample),
and the sharpness gradients and Hessian-vector products (summed across processes). Batch k goes
to process k mod N; results come back in batch order on every process, so each process holds
what a single process would (sample i is the same: it draws from its own generator; per-probe
numbers are equal; sums over probes equal up to float reduction order). Sampling runs whose step
hooks accumulate statistics (exposure) run whole on every process. Only the main process prints
and writes files: a sample folder is read and written by the main process alone, which hands the
list of missing shards to the others (`from_main`) and gathers what they generated (core.sample_store).

A failing command prints its one error line once: an error every process meets (a bad option, a
refused folder) is printed by the main process; an error met by one process only is printed by that
process, named (`error_line_is_mine`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

from ..errors import FlatcheckError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI's error path reads this module without it
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


def single_cpu_launch() -> bool:
    """True under `accelerate launch --cpu --num_processes N>1`, which started this one process only.

    That launcher sets ACCELERATE_USE_CPU and, for N > 1, MASTER_ADDR, but no WORLD_SIZE (it would
    start N processes through mpirun, given --mpirun_hostfile).
    """
    import os

    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes", "y", "on")
    return (
        use_cpu and bool(os.environ.get("MASTER_ADDR")) and _world_size_env() == 1 and not os.environ.get("WORLD_SIZE")
    )


SINGLE_CPU_WARNING = (
    "flatcheck: warning: `accelerate launch --cpu` started a single process (several CPU processes need an "
    "MPI host file, --mpirun_hostfile): running as one process, same numbers. For N CPU processes use "
    "`accelerate launch --multi_gpu --num_processes N -m flatcheck ... --device cpu`\n"
)
_WARNED = False


def start(device: torch.device | str | None = None):
    """Join the launcher's process group (once); single-process runs create nothing."""
    global _STATE, _WARNED
    if single_cpu_launch() and not _WARNED:
        import sys

        _WARNED = True
        sys.stderr.write(SINGLE_CPU_WARNING)
    if _STATE is None and _world_size_env() > 1:
        import torch
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


def from_main(compute: Callable[[], T]) -> T:
    """compute() run by the main process alone, its result handed to every process (pickled).

    For what the main process owns (a sample folder: only it reads and writes the disk, so the
    processes need no shared file system). An error in compute() is raised on every process: the
    main one raises it, the others raise ShownByMain with its exit code (the main one prints it).
    """
    if world() == 1:
        return compute()
    import torch.distributed as dist

    box: list = [None]
    error: BaseException | None = None
    if is_main():
        try:
            box[0] = ("ok", compute())
        except BaseException as exc:  # noqa: BLE001 - handed to the others, then re-raised here
            error = exc
            code = exc.exit_code if isinstance(exc, FlatcheckError) else _exit_code(exc)
            box[0] = ("error", (str(exc), code))
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    kind, value = box[0]
    if kind == "error":
        raise ShownByMain(*value)
    return value


def gather_to_main(obj):
    """[obj of process 0, obj of process 1, ...] on the main process, None on the others."""
    if world() == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world() if is_main() else None
    dist.gather_object(_to_cpu(obj), out, dst=0)
    return out


def sum_across(t: torch.Tensor) -> torch.Tensor:
    """The sum of t over processes (t itself for one process)."""
    if world() == 1:
        return t
    import torch.distributed as dist

    out = t.detach().clone()
    dist.all_reduce(out)
    return out


def _to_cpu(x):
    import torch

    if torch.is_tensor(x):
        return x.cpu()
    if isinstance(x, list):
        return [_to_cpu(v) for v in x]
    return x


# ---------------------------------------------------------------------------- one error line per run
def _exit_code(exc: BaseException) -> int:
    from ..errors import EXIT_INTERRUPTED, EXIT_RUNTIME

    return EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_RUNTIME


class ShownByMain(FlatcheckError):
    """The main process's error, raised on the others: same exit code, printed by the main process only."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


ERROR_WAIT_S = 3.0  # how long another process waits to see whether the main one reports the same error
PRE_GROUP_WAIT_S = 1.0  # before the group exists: how long another process leaves the main one to print


def error_line_is_mine(message: str, exc: BaseException | None = None) -> str | None:
    """The error line this process should print for `message`, or None when another process prints it.

    One process: the message. Several: before the group is joined, every process runs the same
    checks on the same command line, so the main process alone prints. Once joined, processes
    post their message in the launcher's key-value store: the main process prints its own unless
    another process failed first with a different message (its own is then that failure seen
    through a collective); another process stays quiet when the main process reports within a few
    seconds, and otherwise prints its message, prefixed with its index. A quiet process waits
    (briefly) for the main one to print: the launcher stops every process once one has exited.
    """
    import time

    if _world_size_env() <= 1 and _STATE is None:
        return message
    store = _store() if _STATE is not None else None
    if store is None:
        if is_main():
            return message
        time.sleep(PRE_GROUP_WAIT_S)
        return None
    me = rank()
    try:
        if is_main():
            for r in range(1, world()):
                key = f"flatcheck/error/{r}"
                if store.check([key]) and store.get(key).decode() != message:
                    store.set(f"flatcheck/error/{me}", message)
                    return None  # a consequence of process r's error, which process r prints
            return message  # the caller prints it, then calls error_reported()
        store.set(f"flatcheck/error/{me}", message)
        deadline = time.monotonic() + ERROR_WAIT_S
        while time.monotonic() < deadline:
            if store.check(["flatcheck/error/0"]):
                _wait_for_main_exit(store, deadline)
                return None
            time.sleep(0.05)
    except Exception:  # noqa: BLE001 - the store is gone (the main process exited): say it here
        pass
    return None if isinstance(exc, ShownByMain) else f"process {me}: {message}"


def _wait_for_main_exit(store, deadline: float) -> None:
    """Stay until the main process has exited (its store stops answering), so that the launcher, which
    stops every process once one ends, records the main process's own exit code rather than its SIGTERM."""
    import time

    try:
        while time.monotonic() < deadline:
            store.check(["flatcheck/error/0"])
            time.sleep(0.05)
    except Exception:  # noqa: BLE001 - gone: the main process has exited
        pass


def error_reported(message: str) -> None:
    """The main process has printed its error line (the others may now stay quiet)."""
    store = _STATE is not None and is_main() and _store()
    if store:
        try:
            store.set("flatcheck/error/0", message)
        except Exception:  # noqa: BLE001
            pass


def _store():
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except Exception:  # noqa: BLE001 - a private torch API: without it, the main process prints
        return None
