"""Two processes (`accelerate launch --multi_gpu`, gloo on CPU) give one process's numbers and sample folders.

`accelerate launch --multi_gpu --num_processes 2 ... --device cpu` runs torch.distributed.run, which
starts two CPU processes; `accelerate launch --cpu --num_processes 2` starts one (accelerate 1.15
needs an MPI host file for more), which flatcheck says in one line and runs as one process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flatcheck.cli import run
from flatcheck.results import all_numbers

ACCELERATE = Path(sys.executable).with_name("accelerate")
pytestmark = pytest.mark.skipif(
    not ACCELERATE.exists() or not hasattr(os, "fork"), reason="accelerate launcher not installed"
)
SAMPLE = ["--samples", "12", "--steps", "2", "--batch-size", "4", "--sampler", "ddim"]  # 3 shards of 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], *, cpu: bool = False, script: Path | None = None) -> subprocess.CompletedProcess:
    """`accelerate launch` of flatcheck (or a script) with 2 processes: --multi_gpu (two CPU processes), or --cpu
    (one)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        str(ACCELERATE),
        "launch",
        "--cpu" if cpu else "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        *([str(script)] if script else ["-m", "flatcheck"]),
        *args,
    ]
    if script is None:
        cmd += ["--device", "cpu"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def two_processes(args: list[str], tmp_path: Path, name: str, printed: str | None = None) -> dict:
    out = tmp_path / f"{name}.json"
    proc = launch([*args, "--json", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count(printed or f"flatcheck {args[0]}:") == 1  # one process printed (the main one)
    return json.loads(out.read_text())


def one_process(args: list[str], tmp_path: Path, name: str) -> dict:
    out = tmp_path / f"{name}-1.json"
    assert run([*args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


# Timings and process-dependent fields differ between runs by nature.
SKIP = ("timings", "seconds", "time_ratio", "environment", "options", "artifacts")


def assert_same_numbers(a: dict, b: dict, rel: float):
    na, nb = dict(all_numbers(a, SKIP)), dict(all_numbers(b, SKIP))
    assert na.keys() == nb.keys() and len(na) > 10
    bad = {k: (na[k], nb[k]) for k in na if abs(na[k] - nb[k]) > rel * max(1.0, abs(na[k]))}
    assert not bad, list(bad.items())[:5]


def test_audit_quick_across_two_processes(tiny_pipeline, tmp_path):
    """The audit runs every measure (and the single commands are the audit with the others skipped)."""
    model = str(shutil.copytree(tiny_pipeline, tmp_path / "m"))
    audit = [
        "audit",
        model,
        "--quick",
        "--probes",
        "16",
        "--samples",
        "16",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--data",
        "digits",
        "--fid-features",
        "digits-cnn",
    ]
    one, two = one_process(audit, tmp_path, "audit"), two_processes(audit, tmp_path, "audit")
    assert two["environment"]["processes"] == 2 and one["environment"]["processes"] == 1
    # samples (per-sample seeds) and FD features (per image) split by batch: bit for bit
    assert_same_numbers(one["fid"], two["fid"], rel=0)
    assert_same_numbers(one["quantize"]["full_precision"], two["quantize"]["full_precision"], rel=0)
    # gradients and HVPs are summed across processes: equal up to float32 reduction order, which the
    # Hutchinson trace (a sum of +- terms far larger than the result) amplifies to ~5e-5 here
    assert_same_numbers(one, two, rel=1e-3)


def test_layer_sensitivity_shared_out_by_layer(tiny_pipeline, tmp_path):
    """The per-layer scan: layer k by process k mod 2 (its few samples are one batch), the same ranking and drifts."""
    model = str(shutil.copytree(tiny_pipeline, tmp_path / "m"))
    args = [
        "quantize",
        model,
        "--samples",
        "8",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--bits",
        "4",
        "--calib-samples",
        "4",
        "--sensitivity-samples",
        "4",
        "--sensitivity-steps",  # the scan's own default is 20 steps: 51 layers x 20 forwards, a split unchanged by it
        "2",
        "--data",
        "digits",
        "--ref",
        "none",
    ]
    one, two = one_process(args, tmp_path, "quantize"), two_processes(args, tmp_path, "quantize")
    layers = one["quantize"]["sensitivity"]
    assert len(layers) > 10 and [r["name"] for r in two["quantize"]["sensitivity"]] == [r["name"] for r in layers]
    assert_same_numbers(one["quantize"], two["quantize"], rel=0)


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".npy"}


def test_sample_folder_across_two_processes(tiny_pipeline, tmp_path):
    """The main process writes the folder the two processes generate: the same shard files as one process,
    and a resumed run generates only the shards missing from the manifest; `.npz` and PNGs come from the main
    process."""
    model = str(tiny_pipeline)
    # One process, launched by `accelerate launch --cpu --num_processes 2`: it says it runs alone, once.
    one = launch(["sample", model, "--out", str(tmp_path / "one"), *SAMPLE, "--no-png"], cpu=True)
    assert one.returncode == 0, one.stderr[-3000:]
    assert one.stderr.count("started a single process") == 1 and "--multi_gpu" in one.stderr
    two = two_processes(["sample", model, "--out", str(tmp_path / "two"), *SAMPLE], tmp_path, "sample", "generated now")
    assert two["generated"] == 12
    ref, store = folder_files(tmp_path / "one" / "store"), tmp_path / "two" / "store"
    assert len(ref) == 3 and folder_files(store) == ref
    assert (tmp_path / "two" / "samples.npz").read_bytes() == (tmp_path / "one" / "samples.npz").read_bytes()
    assert len(list((tmp_path / "two" / "png").glob("*.png"))) == 12

    # Interrupted after its first shard, a copy of the folder becomes the one `fid --out` uses (OUT/samples-ddim-2,
    # which only the main process is told): the resumed run generates the two shards missing from the manifest only.
    store = tmp_path / "fid" / "samples-ddim-2"
    shutil.copytree(tmp_path / "two" / "store", store)
    manifest = json.loads((store / "manifest.json").read_text())
    kept = manifest["shards"][0]
    manifest["shards"], manifest["count"] = [kept], kept["count"]
    (store / "manifest.json").write_text(json.dumps(manifest))
    before = {p.name: p.stat().st_mtime_ns for p in store.glob("*.npy")}
    fid = two_processes(
        [
            "fid",
            model,
            "--out",
            str(tmp_path / "fid"),
            *SAMPLE,
            "--ref",
            "digits",
            "--fid-features",
            "digits-cnn",
            "--bootstrap",
            "10",
        ],
        tmp_path,
        "fid",
    )
    assert fid["environment"]["processes"] == 2
    after = {p.name: p.stat().st_mtime_ns for p in store.glob("*.npy")}
    assert [name for name in before if after[name] == before[name]] == [kept["file"]]  # the other two were made again
    assert folder_files(store) == ref and len(json.loads((store / "manifest.json").read_text())["shards"]) == 3


def test_errors_are_printed_once_with_their_exit_code(tiny_pipeline, tmp_path):
    model = str(tiny_pipeline)
    # Before the processes meet: every process rejects the option, the main one prints it.
    usage = launch(["sample", model, "--bogus"])
    assert usage.returncode != 0 and usage.stderr.count("flatcheck: error:") == 1, usage.stderr[-3000:]
    # The launcher exits 1 and lists each process's exit code: the main one's is kept (the other, quiet, may be stopped
    # first).
    assert "rank      : 0 (local_rank: 0)\n  exitcode  : 2" in usage.stderr
    # After: the main process refuses the folder (another seed's samples) and tells the other one.
    assert run(["sample", model, "--out", str(tmp_path / "s"), *SAMPLE, "--no-png", "--no-npz"]) == 0
    refused = launch(["sample", model, "--out", str(tmp_path / "s"), *SAMPLE, "--seed", "3", "--no-png", "--no-npz"])
    assert refused.stderr.count("flatcheck: error:") == 1 and "seed 0, not 3" in refused.stderr, refused.stderr[-3000:]
    assert "rank      : 0 (local_rank: 0)\n  exitcode  : 2" in refused.stderr
    # An error of one process only is printed by that process, named.
    script = tmp_path / "one_fails.py"
    script.write_text(
        "import sys\n"
        "from flatcheck.cli import _fail\n"
        "from flatcheck.core import dist\n"
        "from flatcheck.errors import RunError\n"
        "dist.start('cpu')\n"
        "if dist.rank() == 1:\n"
        "    try:\n"
        "        raise RunError('only here')\n"
        "    except RunError as exc:\n"
        "        sys.exit(_fail(str(exc), exc.exit_code, False))\n"
        "import torch.distributed\n"
        "torch.distributed.barrier()\n"
    )
    alone = launch([], script=script)
    assert alone.stderr.count("flatcheck: error:") == 1 and "flatcheck: error: process 1: only here" in alone.stderr, (
        alone.stderr[-3000:]
    )
    assert "rank      : 1 (local_rank: 1)\n  exitcode  : 3" in alone.stderr


def test_accelerate_cpu_launch_is_one_process_with_a_warning(monkeypatch, capsys):
    """`accelerate launch --cpu --num_processes 2` sets ACCELERATE_USE_CPU and MASTER_ADDR, no WORLD_SIZE."""
    from flatcheck.core import dist

    for key in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setattr(dist, "_WARNED", False)
    assert dist.single_cpu_launch()
    assert dist.start("cpu") is None and dist.start("cpu") is None and dist.world() == 1
    err = capsys.readouterr().err
    assert err.count("flatcheck: warning:") == 1 and "accelerate launch --multi_gpu --num_processes N" in err
    monkeypatch.setenv("ACCELERATE_USE_CPU", "False")  # a GPU launch of one process
    assert not dist.single_cpu_launch()
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.delenv("MASTER_ADDR")  # --num_processes 1 sets no MASTER_ADDR
    assert not dist.single_cpu_launch()
