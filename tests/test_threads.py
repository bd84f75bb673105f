"""The default thread count (core.threads): the choice from the CPUs and a faked load reading, the reading
itself from /proc/stat's text, OpenMP's wait policy set before torch loads, and --threads used as given."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from flatcheck.core import threads
from flatcheck.core.threads import Reading, busy_ticks, choose_threads, others_busy, set_threads

STAT = """cpu  900 0 300 5000 10 0 5 0 0 0
cpu0 400 0 100 2500 5 0 2 0 0 0
cpu1 500 0 200 2500 5 0 3 0 0 0
intr 12345 0 0
procs_running 3
"""


def test_a_free_machine_gets_every_cpu():
    c = choose_threads(cpus=2, mask=2, given=2, others=0.1)
    assert c.threads == 2 and "0.1 of 2 cores" in c.reason


def test_a_core_taken_by_another_job_is_left_to_it():
    for others in (0.6, 1.0, 1.4):
        c = choose_threads(cpus=2, mask=2, given=2, others=others)
        assert c.threads == 1 and "since other processes kept" in c.reason, (others, c)
    assert choose_threads(cpus=2, mask=2, given=2, others=0.4).threads == 2  # less than half a core: not taken
    assert choose_threads(cpus=8, mask=8, given=8, others=2.8).threads == 5


def test_at_least_one_thread_and_never_more_than_given_or_the_quota():
    assert choose_threads(cpus=2, mask=2, given=2, others=5.0).threads == 1  # every core taken: still one
    assert choose_threads(cpus=8, mask=8, given=4, others=0.0).threads == 4  # OMP_NUM_THREADS=4 is not raised
    # A cgroup quota of 2 on an 8-CPU mask: the load is read over the 8, the quota still caps.
    assert choose_threads(cpus=2, mask=8, given=8, others=3.0).threads == 2
    assert choose_threads(cpus=2, mask=8, given=8, others=6.6).threads == 1


def test_nothing_to_choose_and_an_unreadable_load_say_so():
    pinned = choose_threads(cpus=2, mask=2, given=1, others=None)
    assert pinned.threads == 1 and "torch was given 1" in pinned.reason
    one_cpu = choose_threads(cpus=1, mask=4, given=4, others=None)
    assert one_cpu.threads == 1 and "CPUs this process may use" in one_cpu.reason
    unknown = choose_threads(cpus=2, mask=2, given=2, others=None)
    assert unknown.threads == 2 and "could not be read" in unknown.reason


def test_busy_ticks_read_the_cpus_of_the_mask():
    # busy = user + nice + system + irq + softirq + steal; idle and iowait are not busy
    assert busy_ticks(STAT, {0}) == 400 + 100 + 2
    assert busy_ticks(STAT, {0, 1}) == 502 + 703
    assert busy_ticks(STAT, {1, 7}) == 703  # a CPU the text lacks adds nothing
    assert busy_ticks("cpu0 1 2 3 4", {0}) == 6  # an old kernel's short line


def test_others_are_the_busy_time_less_this_process_own():
    start = Reading(wall=10.0, own_cpu=1.0, busy_ticks=1000)
    # 2 s, 300 ticks at 100/s = 3 core-seconds busy, of which this process used 1: others kept 1 core busy
    assert others_busy(start, Reading(12.0, 2.0, 1300), 100) == pytest.approx(1.0)
    assert others_busy(start, Reading(12.0, 3.5, 1200), 100) == 0.0  # never negative (tick rounding)
    assert others_busy(start, Reading(12.0, 2.0, None), 100) is None


def test_default_follows_a_faked_load_and_is_recorded(monkeypatch):
    """set_threads(None) with the load reading faked: a taken core is left to the other job, a free machine
    gets both CPUs; the reason is what the report records; --threads 2 stays 2 under the same load."""
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(threads, "_affinity", lambda: {0, 1})
    n = torch.get_num_threads()
    try:
        for load, want in ((1.1, 1), (0.05, 2)):
            monkeypatch.setattr(threads, "_others", [load])  # measured once per process: this is that value
            torch.set_num_threads(2)
            assert set_threads(None) == want and torch.get_num_threads() == want
            assert threads.threads_reason(want).startswith("default: ") and f"{load:.1f} of 2" in (
                threads.threads_reason(want)
            )
        monkeypatch.setattr(threads, "_others", [1.1])
        assert set_threads(2) == 2 and torch.get_num_threads() == 2
        assert threads.threads_reason(2) == "--threads 2"
        torch.set_num_threads(1)  # changed behind flatcheck's back: the report does not claim a reason
        assert "set by the caller" in threads.threads_reason(1)
    finally:
        torch.set_num_threads(n)


def test_the_load_is_read_from_the_start_of_the_command(monkeypatch):
    """measured_others: from before_torch's reading to now, less this process's CPU time; read once."""
    monkeypatch.setattr(threads, "_others", [])
    monkeypatch.setattr(threads, "_start", Reading(wall=0.0, own_cpu=0.0, busy_ticks=0))
    ends = iter([Reading(wall=4.0, own_cpu=3.0, busy_ticks=700)])  # 7 core-s busy in 4 s, 3 of them ours
    monkeypatch.setattr(threads, "reading", lambda: next(ends))
    monkeypatch.setattr(threads.time, "monotonic", lambda: 4.0)
    monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)
    assert threads.measured_others() == pytest.approx(1.0)
    assert threads.measured_others() == pytest.approx(1.0)  # not read again (the iterator is spent)


def _policy(env: dict, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_passive_wait_is_set_before_torch_loads_and_a_set_policy_wins():
    code = (
        "import os\nfrom flatcheck.core.threads import before_torch\nbefore_torch()\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    assert _policy({}, code) == "PASSIVE"
    assert _policy({"OMP_WAIT_POLICY": "ACTIVE"}, code) == "ACTIVE"
    # torch already loaded: its OpenMP runtime has read the environment, so setting it would be a claim only
    late = "import torch\n" + code
    assert _policy({}, late) == "None"
