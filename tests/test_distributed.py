"""Two processes (torchrun, gloo on CPU; Accelerate's PartialState joins the group) give one process's numbers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flatcheck.cli import run

TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.skipif(not TORCHRUN.exists() or not hasattr(os, "fork"), reason="torchrun not installed")


def two_processes(args: list[str], tmp_path: Path, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000), "-m", "flatcheck",
           *args, "--device", "cpu", "--json", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count(f"flatcheck {args[0]}:") == 1  # one process printed (the main one)
    return json.loads(out.read_text())


def one_process(args: list[str], tmp_path: Path, name: str) -> dict:
    out = tmp_path / f"{name}-1.json"
    assert run([*args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def numbers(node, path=""):
    """Every number of a JSON document by path, timings and process-dependent fields left out."""
    skip = ("timings", "seconds", "time_ratio", "environment", "options", "artifacts")
    if isinstance(node, dict):
        for k, v in node.items():
            if not any(word in k for word in skip):
                yield from numbers(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from numbers(v, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, float(node)


def assert_same_numbers(a: dict, b: dict, rel: float):
    na, nb = dict(numbers(a)), dict(numbers(b))
    assert na.keys() == nb.keys() and len(na) > 10
    bad = {k: (na[k], nb[k]) for k in na if abs(na[k] - nb[k]) > rel * max(1.0, abs(na[k]))}
    assert not bad, list(bad.items())[:5]


def test_audit_quick_across_two_processes(tiny_pipeline, tmp_path):
    """The audit runs every measure (and the single commands are the audit with the others skipped)."""
    model = str(shutil.copytree(tiny_pipeline, tmp_path / "m"))
    audit = ["audit", model, "--quick", "--probes", "16", "--samples", "16", "--steps", "2", "--batch-size", "4",
             "--data", "digits", "--fid-features", "digits-cnn"]
    one, two = one_process(audit, tmp_path, "audit"), two_processes(audit, tmp_path, "audit")
    assert two["environment"]["processes"] == 2 and one["environment"]["processes"] == 1
    # samples (per-sample seeds) and FD features (per image) split by batch: bit for bit
    assert_same_numbers(one["fid"], two["fid"], rel=0)
    assert_same_numbers(one["quantize"]["full_precision"], two["quantize"]["full_precision"], rel=0)
    # gradients and HVPs are summed across processes: equal up to float32 reduction order, which the
    # Hutchinson trace (a sum of +- terms far larger than the result) amplifies to ~5e-5 here
    assert_same_numbers(one, two, rel=1e-3)
