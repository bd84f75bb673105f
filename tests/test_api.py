"""The Python API (README, "Python API"): only the public names of `flatcheck` are used here.

An in-memory pipeline audits to the numbers of its folder; the model comes back as it was (weights bit for bit,
train/eval modes, requires_grad flags); one measure is the audit with the others skipped; bad options are refused
before any work; the training-loop callback audits at every n-th step only.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

import flatcheck

TINY = dict(profile="quick", probes=4, samples=4, steps=2, batch_size=4, ref="none", seed=1)


@pytest.fixture(scope="module")
def sd(family_dir):
    from . import families

    path = family_dir("sd")
    return path, families.load_pipeline(path, "sd")


def _weights(module) -> str:
    return hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in module.parameters())).hexdigest()


def _numbers(node):
    """The report without what names the model's provenance or measures time and memory."""
    skip = ("model", "environment", "timings", "sampling_seconds", "time_ratio")
    if isinstance(node, dict):
        return {k: _numbers(v) for k, v in node.items() if k not in skip}
    return [_numbers(v) for v in node] if isinstance(node, list) else node


def test_an_in_memory_pipeline_audits_to_its_folders_numbers_and_is_left_as_it_was(sd):
    path, pipe = sd
    pipe.unet.train()
    pipe.unet.conv_in.weight.requires_grad_(False)  # a frozen layer, as a fine-tuning loop may have
    flags = [p.requires_grad for p in pipe.unet.parameters()]
    before = _weights(pipe.unet)
    mem = flatcheck.audit(pipe, skip=["quantize"], **TINY)
    assert _weights(pipe.unet) == before
    assert pipe.unet.training and all(m.training for m in pipe.unet.modules())
    assert [p.requires_grad for p in pipe.unet.parameters()] == flags
    pipe.unet.eval()
    disk = flatcheck.audit(str(path), skip=["quantize"], **TINY)
    assert isinstance(mem, flatcheck.AuditReport)
    a, b = mem.to_dict(), disk.to_dict()
    assert a["model"]["form"] == "memory" and a["model"]["source"] == "<in-memory StableDiffusionPipeline>"
    assert (
        a["model"]["parameters"] == b["model"]["parameters"]
        and a["model"]["text_encoders"] == b["model"]["text_encoders"]
    )
    assert _numbers(a) == _numbers(b)
    assert json.loads(mem.to_json())["schema_version"] == a["schema_version"]


def test_one_measure_is_the_audit_with_the_others_skipped(sd):
    _, pipe = sd
    report = flatcheck.sharpness(pipe, measures=["hessian"], top_k=1, lanczos_iters=4, hutchinson_draws=2, **TINY)
    assert [k for k, v in report.results.items() if v is not None] == ["sharpness"]
    doc = report.to_dict()
    assert doc["options"]["configs"]["sharpness"]["measures"] == ["hessian"]
    assert doc["sharpness"]["hessian"]["eigen"]["eigenvalues"]


def test_describe_reads_a_folder_without_loading_it_and_a_pipeline_in_memory(sd):
    path, pipe = sd
    on_disk, in_memory = flatcheck.describe(str(path)), flatcheck.describe(pipe)
    assert on_disk.conditioning == in_memory.conditioning == "text"
    assert on_disk.parameters == in_memory.parameters and on_disk.sample_shape == in_memory.sample_shape
    code = f"import sys, flatcheck; flatcheck.describe({str(path)!r}); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-1000:]


def test_bad_options_are_refused_before_any_work(sd):
    _, pipe = sd
    with pytest.raises(flatcheck.InputError, match="probes must be >= 1"):
        flatcheck.audit("a/path/that/does/not/exist", profile="quick", probes=0)  # the option first: nothing is loaded
    with pytest.raises(flatcheck.InputError, match="unknown audit option"):
        flatcheck.audit(pipe, colour="red")
    with pytest.raises(flatcheck.InputError, match="cannot audit a dict"):
        flatcheck.audit({"unet": None}, profile="quick")
    with pytest.raises(flatcheck.InputError):
        flatcheck.every_n_steps(0)


def test_the_training_loop_callback_audits_every_n_steps(sd):
    _, pipe = sd
    seen = []
    check = flatcheck.every_n_steps(
        3,
        lambda step, report: seen.append((step, report.verdicts[0].area)),
        skip=["exposure", "quantize", "fid"],
        sharpness={"measures": ["hessian"], "top_k": 1, "lanczos_iters": 4},
        **TINY,
    )
    out = [check(step, pipe) for step in range(7)]
    assert [s for s, _ in seen] == [0, 3, 6] and all(a == "sharpness" for _, a in seen)
    assert [r is not None for r in out] == [True, False, False, True, False, False, True]
