"""Same seed + same device + same thread count = the same report, bit for bit.

What may differ at another thread count is not asserted here: torch splits the reductions inside
matmul/conv kernels by thread, so float rounding changes (README, *Reproducibility*, gives the
sizes measured on the bundled models). Timings and peak memory are the only numbers allowed to differ
between two identical runs.
"""

from __future__ import annotations

import json

import torch

from tests.audit_fixtures import TINY_CLI, tiny_audit  # noqa: F401 (fixture)

# Keys whose values are wall-clock or memory measurements or say where a cache lives / whether it was
# hit: everything else in the report is a function of (inputs, seed, device, threads, versions).
RUN_DEPENDENT = {
    "timings",
    "sampling_seconds",
    "seconds",
    "time_ratio",
    "cache",
    "cache_path",
    "peak_memory",
    "memory_plan",
}


def _without_run_dependent(node):
    if isinstance(node, dict):
        return {k: _without_run_dependent(v) for k, v in node.items() if k not in RUN_DEPENDENT}
    if isinstance(node, list):
        return [_without_run_dependent(v) for v in node]
    return node


def _differences(a, b, path=""):
    """Paths where two JSON trees differ (floats compared exactly)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k} (only in one)" for k in set(a) ^ set(b)]
        for k in a.keys() & b.keys():
            out += _differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}.{i}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_same_seed_device_threads_give_a_bit_identical_report(cli, tiny_pipeline, tmp_path, monkeypatch):
    """audit --quick twice in one process: every number equal (floats compared with ==), only timings and
    peak memory differ.

    The first run computes the FD reference statistics, the second reads them from the disk cache
    (the memory caches are cleared between the runs), so the cache round trip is covered too. The
    global RNGs are left wherever the first run put them: a draw that used them would show here.
    """
    from flatcheck.core.fd.extractors import clear_memo
    from flatcheck.core.fd.reference import clear_memory_cache

    monkeypatch.setenv("FLATCHECK_CACHE", str(tmp_path / "cache"))
    args = ["audit", tiny_pipeline, *TINY_CLI, "--device", "cpu", "--features", "digits-cnn", "--json", "-"]
    threads = torch.get_num_threads()
    docs = []
    for _ in range(2):
        clear_memory_cache()
        clear_memo()
        code, out, err = cli(*args)
        assert code == 0, err
        docs.append(json.loads(out))
    first, second = docs
    assert first["environment"]["torch_threads"] == threads
    assert first["fid"]["reference"]["cache"] == "computed" and second["fid"]["reference"]["cache"] == "disk"
    assert (
        first["timings"] and first["sharpness"]["timings"] and first["environment"]["peak_memory"]
    )  # the excluded keys exist: the filter is not vacuous
    diffs = _differences(_without_run_dependent(first), _without_run_dependent(second))
    assert not diffs, diffs[:20]


def test_report_records_the_thread_count_and_cpu_capability(tiny_audit):
    report, doc = tiny_audit
    assert doc["environment"]["torch_threads"] == torch.get_num_threads()
    assert doc["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert doc["environment"]["threads_reason"] and doc["environment"]["omp_wait_policy"]  # why that many threads


def test_cuda_runs_ask_cudnn_for_deterministic_kernels(monkeypatch):
    """On CUDA the CLI switches cuDNN to deterministic algorithms (flags only: this runs without a GPU)."""
    from flatcheck.core.runtime import deterministic_kernels

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    deterministic_kernels(torch.device("cpu"))
    assert not torch.backends.cudnn.deterministic  # CPU runs leave the process's settings alone
    deterministic_kernels(torch.device("cuda"))
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
