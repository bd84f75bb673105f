"""How many CPU threads torch may use: the CPUs this process may run on, not the host's count.

CI runners and containers give a process fewer CPUs than the machine has (an affinity mask, a
cgroup quota). torch sizes its pool from the host, and two threads per core fighting other jobs
made the same command 10-16x slower on a shared 2-core runner (benchmarks/README.md, "Slowdown
under a competing load"). `--threads` defaults to what the process may actually use.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def available_cpus() -> int:
    """min(affinity mask, cgroup v2/v1 CPU quota), at least 1."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, quota)
    return max(1, n)


def _cgroup_quota() -> int | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()  # v2: "max 100000" or "200000 100000"
        if text and text[0] != "max":
            return max(1, math.ceil(int(text[0]) / int(text[1])))
    except (OSError, ValueError, IndexError):
        pass
    try:  # v1
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if q > 0 and p > 0:
            return max(1, math.ceil(q / p))
    except (OSError, ValueError):
        pass
    return None


def check_threads(n: int | None) -> None:
    """OptionError for a --threads below 1 (None: the default)."""
    from ..errors import require_at_least

    require_at_least("threads", n, 1)


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads: n, or by default min(available_cpus(), what torch uses now), so a
    caller that pinned fewer (OMP_NUM_THREADS, a test) is never raised. Returns the count set."""
    check_threads(n)
    import torch

    want = n if n is not None else min(available_cpus(), torch.get_num_threads())
    if want != torch.get_num_threads():
        torch.set_num_threads(want)
    return want
