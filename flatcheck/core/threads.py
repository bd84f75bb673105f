"""How many CPU threads torch may use: the CPUs this process may run on, less the cores other jobs keep busy.

CI runners and containers give a process fewer CPUs than the machine has (an affinity mask, a cgroup quota),
and shared machines run other jobs. torch sizes its pool from the host, and an OpenMP team waits at every
barrier for its slowest thread: with one of two cores taken by another job, two threads made the same
command 4-14x slower (issue 27; benchmarks/README.md, "Threads under a competing load"). So by default:

- OpenMP waits passively (OMP_WAIT_POLICY=PASSIVE, unless the caller set it): a thread that reaches a
  barrier sleeps instead of spinning on the core its teammate needs. libgomp reads it once, when torch
  loads, so the CLI sets it before importing torch (`before_torch`);
- the thread count is the CPUs this process may use less the cores other processes kept busy while
  flatcheck started (/proc/stat over the seconds of the imports, less this process's own CPU time), at
  least 1, never more than torch was already given (OMP_NUM_THREADS, a test's pin).

`--threads N` is used as given. Every report records the count and why (`environment.threads_reason`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Shorter than this since the first reading, the load is sampled for this long instead: a snapshot of
# a few milliseconds mostly sees the other jobs' scheduling noise.
MIN_WINDOW_S = 0.25


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str  # one sentence, recorded in every report


@dataclass(frozen=True)
class Reading:
    """Where the CPUs stood at one moment: wall and own CPU seconds, and the CPUs' busy clock ticks."""

    wall: float
    own_cpu: float
    busy_ticks: int | None  # None where /proc/stat cannot be read


_start: Reading | None = None  # taken by before_torch(), first thing in the CLI
_others: list[float | None] = []  # the load measured once per process: one command, one thread count
_last: ThreadChoice | None = None


def available_cpus() -> int:
    """min(affinity mask, cgroup v2/v1 CPU quota), at least 1."""
    n = len(_affinity())
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, quota)
    return max(1, n)


def _affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


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


# ---------------------------------------------------------------------------- the load
def busy_ticks(stat_text: str, cpus: set[int]) -> int:
    """Clock ticks the given CPUs spent busy (user, nice, system, irq, softirq, steal) in /proc/stat's text."""
    total = 0
    for line in stat_text.splitlines():
        f = line.split()
        if f and f[0].startswith("cpu") and f[0][3:].isdigit() and int(f[0][3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in (f[1:9] + ["0"] * 8)[:8])
            total += user + nice + system + irq + softirq + steal
    return total


def reading() -> Reading:
    try:
        ticks = busy_ticks(Path("/proc/stat").read_text(), _affinity())
    except (OSError, ValueError):
        ticks = None
    return Reading(time.monotonic(), time.process_time(), ticks)


def others_busy(start: Reading, end: Reading, ticks_per_s: float) -> float | None:
    """Cores that other processes kept busy between two readings: the CPUs' busy time less this process's own."""
    wall = end.wall - start.wall
    if start.busy_ticks is None or end.busy_ticks is None or wall <= 0:
        return None
    busy = (end.busy_ticks - start.busy_ticks) / ticks_per_s
    return max(0.0, (busy - (end.own_cpu - start.own_cpu)) / wall)


def before_torch() -> None:
    """The CLI's first step: OpenMP's passive wait policy before torch loads its OpenMP runtime (later it
    has no effect, so it is not set then), and the first load reading, so that the seconds the imports take
    are the window the default thread count looks at (no extra wait)."""
    global _start
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _start = reading()


def measured_others() -> float | None:
    """Cores other processes kept busy since before_torch() (or over MIN_WINDOW_S now); measured once."""
    if not _others:
        start = _start
        if start is None or time.monotonic() - start.wall < MIN_WINDOW_S:
            start = reading()
            time.sleep(MIN_WINDOW_S)
        _others.append(others_busy(start, reading(), os.sysconf("SC_CLK_TCK")))
    return _others[0]


# ---------------------------------------------------------------------------- the choice
def choose_threads(cpus: int, mask: int, given: int, others: float | None) -> ThreadChoice:
    """The default thread count. cpus: what this process may use (available_cpus); mask: the CPUs of its
    affinity mask, which `others` was read over; given: what torch has now (OMP_NUM_THREADS, a caller's pin),
    never raised; others: cores other processes kept busy (None: unknown). A core counts as taken when
    others kept at least half of it busy: a team thread on it would wait for its turn at every barrier."""
    cap = min(cpus, given)
    if cap <= 1:
        why = "the CPUs this process may use" if cpus <= 1 else f"torch was given {given} (OMP_NUM_THREADS or caller)"
        return ThreadChoice(max(1, cap), f"default: {why}")
    if others is None:
        return ThreadChoice(cap, f"default: {cap} of {cpus} CPUs (the load could not be read)")
    taken = math.floor(others + 0.5)
    n = max(1, min(cap, mask - taken))
    busy = f"other processes kept {others:.1f} of {mask} cores busy"
    if n == cap:
        return ThreadChoice(n, f"default: {n} of {cpus} CPUs ({busy})")
    return ThreadChoice(n, f"default: {n} of {cpus} CPUs, since {busy}")


def check_threads(n: int | None) -> None:
    """OptionError for a --threads below 1 (None: the default)."""
    from ..errors import require_at_least

    require_at_least("threads", n, 1)


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads: n as given, or by default choose_threads() (the load is measured once
    per process, so every model of a command runs at one count). Returns the count set."""
    global _last
    check_threads(n)
    import torch

    given = torch.get_num_threads()
    if n is not None:
        choice = ThreadChoice(n, f"--threads {n}")
    else:
        cpus, mask = available_cpus(), len(_affinity())
        # One thread allowed: nothing to choose, so the load is not read (no wait in tests, which pin 1).
        others = measured_others() if min(cpus, given) > 1 else None
        choice = choose_threads(cpus, mask, given, others)
    if choice.threads != given:
        torch.set_num_threads(choice.threads)
    _last = choice
    return choice.threads


def threads_reason(current: int) -> str:
    """Why torch runs `current` threads, for the report: the last set_threads' reason, unless the count has
    been changed since (a caller of the Python API)."""
    if _last is not None and _last.threads == current:
        return _last.reason
    return "set by the caller (flatcheck's default was not applied)"


def wait_policy() -> str:
    """OpenMP's wait policy as torch's runtime read it ('default': not set, libgomp spins before sleeping)."""
    return os.environ.get("OMP_WAIT_POLICY") or "default"  # set but empty: libgomp's default too
