"""examples/zoo/train_zoo.py: its loop is train_digits.train() for AdamW and SAM, it writes loadable
pipelines, logs and a summary, and a second call skips what is built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _import_scripts():
    for p in (ROOT / "examples", ROOT / "examples" / "zoo"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
    import train_digits
    import train_zoo

    return train_digits, train_zoo


def test_zoo_loop_is_train_digits_step_for_step():
    train_digits, train_zoo = _import_scripts()
    from flatcheck.core.datasets import digits_images

    data = digits_images()
    for rho in (None, 0.05):
        a, _, _ = train_digits.train(2, 16, 2e-3, 0, rho=rho, ema_decay=0.995)
        b, _, _, log = train_zoo.train_run(
            data, train_digits.UNET_CONFIG, 2, 16, 2e-3, 100, 0, "sam" if rho else "adamw", rho=rho or 0.0
        )
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
        assert len(log["losses"]) == 2


def test_asam_perturbation_matches_kwon_et_al():
    _, train_zoo = _import_scripts()
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.0]))
    p.grad = torch.tensor([0.5, 0.5, 1.0])
    (e,) = train_zoo.sam_perturbation([p], rho=0.5, adaptive=True, eta=0.01)
    t = p.detach().abs() + 0.01
    assert torch.allclose(e, 0.5 * t * t * p.grad / torch.linalg.norm(t * p.grad))
    (s,) = train_zoo.sam_perturbation([p], rho=0.5, adaptive=False, eta=0.0)
    assert torch.allclose(s, 0.5 * p.grad / torch.linalg.norm(p.grad))


def test_zoo_script_builds_members_and_resumes(tmp_path, monkeypatch, capsys):
    script = ROOT / "examples" / "zoo" / "train_zoo.py"
    args = [
        "--steps",
        "4",
        "--batch",
        "8",
        "--grid-steps",
        "2",
        "--only",
        "adamw-s0,ema,swa",
        "--out",
        str(tmp_path / "models"),
        "--logs",
        str(tmp_path / "logs"),
        "--summary",
        str(tmp_path / "zoo.json"),
        "--samples",
        str(tmp_path / "samples"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    first = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "run adamw-s0" in first.stdout
    summary = json.loads((tmp_path / "zoo.json").read_text())
    assert set(summary["members"]) == {"adamw-s0", "ema", "swa"}
    assert summary["recipe"]["steps"] == 4
    log = json.loads((tmp_path / "logs" / "adamw-s0.json").read_text())
    assert len(log["losses"]) == 4 and log["swa_averaged_steps"] == 1
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(tmp_path / "models" / "swa")
    assert pipe.unet.config.sample_size == 16
    assert (tmp_path / "samples" / "ema.png").is_file()
    # The second call in this process (the script as a process is the first's): its imports cost seconds.
    _, train_zoo = _import_scripts()
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    capsys.readouterr()
    train_zoo.main()  # an argparse error or a failure raises here
    again = capsys.readouterr().out
    assert "adamw-s0" in again and "run adamw-s0" not in again
