"""A seeded fuzz corpus of bad inputs (issue 26, item 5), generated here, never shipped.

Hundreds of corruptions of the tiny pipeline's configs (model_index.json, the denoiser's config.json, the
scheduler's), of its safetensors file (header and body), of --data files and folders, of prompt and label files,
of gate and [audit] configs, and of option values. Every one must exit 2 with one `flatcheck: error:` line and no
traceback, before any model work, and change no file outside the test's temporary folder. The CLI runs in-process
on the early paths (`info`, `--dry-run` plans, the checks made before a model loads): milliseconds a case.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest

SEED = 20260
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- corruptions of JSON configs
def _bad_json_bytes(rng: random.Random, text: str) -> list[bytes]:
    """Raw corruptions of a JSON file: truncated, emptied, binary, not an object."""
    raw = text.encode()
    cut = rng.randrange(1, len(raw) - 1)
    return [raw[:cut], b"", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b'"a string"', b"null", raw + b"}"]


# Wrong values per key: each makes the config unusable (wrong type, impossible size, unknown name).
BAD_VALUES = ["abc", -3, 0, [], {}, True, 1.5, None]
DENOISER_KEYS = {  # key -> the values that are wrong for it (of BAD_VALUES and more)
    "_class_name": ["NoSuchModel", 5, None, ["diffusers", "UNet2DModel"], "DDPMScheduler"],
    "sample_size": ["abc", -3, 0, {}, True, 1.5, [0, 0]],
    "in_channels": ["abc", -3, 0, [], {}, True, 1.5],
    "out_channels": ["abc", -3, 0, [], {}, True, 1.5],
    "block_out_channels": ["abc", -3, [], [0, -1], {}, True, ["a", "b"]],
    "layers_per_block": ["abc", -3, 0, {}, True, 1.5],
    "down_block_types": ["abc", 3, [], {}, ["NoSuchBlock", "NoSuchBlock"]],
    "up_block_types": ["abc", 3, [], {}, ["NoSuchBlock", "NoSuchBlock"]],
    "norm_num_groups": ["abc", -3, 0, {}, True, 1.5],
}
INDEX_KEYS = {  # (flatcheck reads each component's class from its own config; the index may not name custom code)
    "_class_name": ["NoSuchPipeline", 5, ["my_module", "MyPipe"], "UNet2DModel"],
    "unet": [["my_module", "MyUNet"], ["./unet", "MyUNet"]],
    "scheduler": [["my_module", "MySched"]],
}
SCHEDULER_KEYS = {
    "_class_name": ["NoSuchScheduler", 5, None, "UNet2DModel"],
    "num_train_timesteps": [0, -1, "abc", 1.5, [], True, 1e30],
    "prediction_type": ["nonsense", 5, [], None],
    "beta_start": ["abc", -1.0, 2.0, [], "NaN"],
    "beta_end": ["abc", -1.0, 2.0, [], "Infinity"],
    "beta_schedule": ["nonsense", 5, []],
    "trained_betas": ["abc", [0.5, "x"], [float("nan")] * 1000, [2.0] * 1000, [0.01] * 3, 5],
    "timestep_spacing": ["nonsense", 5],
    "variance_type": ["nonsense", 5],
    "steps_offset": [-1, "abc", 1.5],
}


def _dump(value) -> str:
    return json.dumps(value, allow_nan=True)


def _key_cases(rng: random.Random, path: str, keys: dict[str, list]) -> list[tuple[str, str, bytes]]:
    cases = []
    for key, values in keys.items():
        for v in values:
            cases.append((path, f"{key}={_dump(v)[:20]}", ("SET", key, v)))
        cases.append((path, f"{key} removed", ("DEL", key, None)))
    return cases


def checkpoint_cases(rng: random.Random, model: Path) -> list[tuple[str, str, object]]:
    """(file relative to the model, what was done, the change): JSON key changes, raw JSON damage."""
    cases = []
    for rel, keys in (
        ("model_index.json", INDEX_KEYS),
        ("unet/config.json", DENOISER_KEYS),
        ("scheduler/scheduler_config.json", SCHEDULER_KEYS),
    ):
        cases += _key_cases(rng, rel, keys)
        for raw in _bad_json_bytes(rng, (model / rel).read_text()):
            cases.append((rel, f"raw {raw[:12]!r}", ("RAW", None, raw)))
    # scheduler_config 'removed' of a non-required key is harmless (diffusers' default): keep the required ones
    harmless = {("scheduler/scheduler_config.json", k) for k in SCHEDULER_KEYS if k != "_class_name"}
    harmless |= {("unet/config.json", k) for k in DENOISER_KEYS if k != "_class_name"}
    harmless |= {("model_index.json", "_class_name"), ("model_index.json", "scheduler")}
    return [c for c in cases if not (c[2][0] == "DEL" and (c[0], c[2][1]) in harmless)]


def apply(model: Path, rel: str, change) -> None:
    kind, key, value = change
    path = model / rel
    if kind == "RAW":
        path.write_bytes(value)
        return
    doc = json.loads(path.read_text())
    if kind == "DEL":
        doc.pop(key, None)
    else:
        doc[key] = value
    path.write_text(json.dumps(doc, allow_nan=True))


# ---------------------------------------------------------------------------- safetensors
def safetensors_cases(rng: random.Random, raw: bytes) -> list[tuple[str, bytes]]:
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    first = next(k for k in header if k != "__metadata__")
    out = [
        ("empty", b""),
        ("4 bytes", raw[:4]),
        ("length past the end", struct.pack("<Q", len(raw) * 2) + raw[8:]),
        ("length 0", struct.pack("<Q", 0) + raw[8:]),
        ("header cut", raw[: 8 + n // 2]),
    ]
    for i in range(12):  # truncated bodies
        out.append((f"body cut {i}", raw[: 8 + n + rng.randrange(0, max(1, len(body) - 1))]))
    for i in range(12):  # random bytes of the header flipped (where it stops being valid JSON or valid entries)
        h = bytearray(raw[8 : 8 + n])
        for _ in range(3):
            h[rng.randrange(len(h))] = rng.choice(b'{}[]",:\x00\xff')
        try:  # a flip inside a string still parses: a renamed tensor, refused when the model is built (below)
            json.loads(bytes(h))
            continue
        except ValueError:
            out.append((f"header bytes {i}", raw[:8] + bytes(h) + body))

    def with_header(change) -> bytes:
        h = json.loads(raw[8 : 8 + n])
        change(h)
        text = json.dumps(h).encode()
        return struct.pack("<Q", len(text)) + text + body

    out += [
        ("dtype unknown", with_header(lambda h: h[first].update(dtype="Q7"))),
        ("shape negative", with_header(lambda h: h[first].update(shape=[-1, 4]))),
        ("shape text", with_header(lambda h: h[first].update(shape="abc"))),
        ("offsets reversed", with_header(lambda h: h[first].update(data_offsets=[8, 0]))),
        ("offsets past the end", with_header(lambda h: h[first].update(data_offsets=[0, len(body) * 3]))),
        ("offsets text", with_header(lambda h: h[first].update(data_offsets="x"))),
        ("entry a list", with_header(lambda h: h.update({first: [1, 2]}))),
        ("header a list", struct.pack("<Q", 2) + b"[]" + body),
        ("shape mismatch", with_header(lambda h: h[first].update(shape=[1]))),
    ]
    names = [k for k in header if k != "__metadata__"]
    for i in range(8):  # renamed tensors (a valid header): refused against the config's model, before weights load
        victim = rng.choice(names)
        new_name = rng.choice([victim + "x", victim.replace(".", "_", 1), "model." + victim, victim.upper()])
        out.append((f"names renamed {i}", with_header(lambda h, v=victim, n=new_name: h.update({n: h.pop(v)}))))
    out.append(("names one dropped", with_header(lambda h: h.pop(names[-1]))))
    out.append(("names one added", with_header(lambda h: h.update(extra=dict(h[first])))))

    def swapped_shapes(h):  # two tensors' shapes exchanged, offsets kept: sizes add up, the model's shapes do not
        a, b = next(
            (a, b) for a in names for b in names if h[a]["shape"] != h[b]["shape"] and _numel(h[a]) == _numel(h[b])
        )
        h[a]["shape"], h[b]["shape"] = h[b]["shape"], h[a]["shape"]

    out.append(("names shapes swapped", with_header(swapped_shapes)))
    for i in range(6):  # finite-looking header, non-finite values in the body: refused when the weights load
        b = bytearray(body)
        at = 4 * rng.randrange(len(body) // 4)
        b[at : at + 4] = struct.pack("<f", rng.choice([float("nan"), float("inf"), -float("inf")]))
        out.append((f"body non-finite {i}", raw[: 8 + n] + bytes(b)))
    return out


def _numel(entry: dict) -> int:
    n = 1
    for d in entry["shape"]:
        n *= d
    return n


# ---------------------------------------------------------------------------- data, prompts, labels
def data_cases(rng: random.Random, tmp: Path) -> list[tuple[str, Path]]:
    d = tmp / "data"
    d.mkdir()
    out = []

    def save(name: str, a) -> None:
        np.save(d / name, a, allow_pickle=True)
        out.append((name, d / name))

    good = rng_images = np.random.default_rng(SEED).random((6, 16, 16), dtype=np.float32)
    nan = good.copy()
    nan[2, 3, 4] = np.nan
    save("nan.npy", nan)
    inf = good.copy()
    inf[0, 0, 0] = np.inf
    save("inf.npy", inf)
    save("empty.npy", np.zeros((0, 16, 16), np.float32))
    save("1d.npy", np.zeros(16, np.float32))
    save("5d.npy", np.zeros((2, 1, 1, 16, 16), np.float32))
    save("object.npy", np.array([1, "a"], dtype=object))
    save("strings.npy", np.array(["a", "b"]))
    save("complex.npy", np.zeros((4, 16, 16), np.complex64))
    save("bool.npy", np.zeros((4, 16, 16), bool))
    save("range.npy", (rng_images * 1e6).astype(np.float32))
    save("negative.npy", (rng_images - 10).astype(np.float32))
    save("uint16.npy", np.full((4, 16, 16), 60000, np.uint16))
    save("zero-size.npy", np.zeros((4, 0, 16), np.float32))
    np.savez(d / "nan.npz", images=nan)
    out.append(("nan.npz", d / "nan.npz"))
    np.savez(d / "empty-archive.npz")
    out.append(("empty-archive.npz", d / "empty-archive.npz"))
    np.savez(d / "object.npz", images=np.array([None, 1], dtype=object))
    out.append(("object.npz", d / "object.npz"))
    raw = (d / "nan.npz").read_bytes()
    for name, content in (
        ("not-a-zip.npz", b"this is not a zip"),
        ("cut.npz", raw[: len(raw) // 2]),
        ("not-npy.npy", b"\x93NUMPY garbage"),
        ("text.npy", b"hello"),
        ("cut.npy", (d / "nan.npy").read_bytes()[:100]),
        ("empty.npz", b""),
    ):
        (d / name).write_bytes(content)
        out.append((name, d / name))
    for i in range(6):  # random bytes flipped in an .npz / .npy
        src = raw if i % 2 else (d / "nan.npy").read_bytes()
        b = bytearray(src)
        for _ in range(8):
            b[rng.randrange(len(b))] = rng.randrange(256)
        name = f"flipped-{i}" + (".npz" if i % 2 else ".npy")
        (d / name).write_bytes(bytes(b))
        out.append((name, d / name))
    # folders: empty, images that are not images, a truncated PNG
    (d / "empty-folder").mkdir()
    out.append(("empty-folder", d / "empty-folder"))
    bad = d / "not-images"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png at all")
    (bad / "b.jpg").write_bytes(b"")
    out.append(("not-images", bad))
    from PIL import Image

    cut = d / "cut-png"
    cut.mkdir()
    Image.fromarray((rng_images[0] * 255).astype(np.uint8)).save(cut / "a.png")
    (cut / "b.png").write_bytes((cut / "a.png").read_bytes()[:20])
    out.append(("cut-png", cut))
    return out


def text_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    """(what, arguments) for --labels and --prompts."""
    d = tmp / "text"
    d.mkdir()
    files = {
        "binary": b"\xff\xfe\x00\x01\x80",
        "empty": b"",
        "blank": b"\n \n\t\n",
        "words": b"three seven",
        "floats": b"1.5, 2.5",
    }
    for name, content in files.items():
        (d / name).write_bytes(content)
    out = [(f"--labels file {n}", ["--labels", str(d / n)]) for n in files]
    out += [
        (f"--labels {v}", ["--labels", v]) for v in ("a,b", "", ",", "1;2", "3,x", "1e400", "99999999999999999999x")
    ]
    out += [(f"--prompts file {n}", ["--prompts", str(d / n)]) for n in ("binary", "empty", "blank")]
    out += [("--prompts missing", ["--prompts", str(d / "missing.txt")]), ("--prompts folder", ["--prompts", str(d)])]
    return out


# ---------------------------------------------------------------------------- options and configs
OPTION_VALUES = {
    "--probes": ["0", "-1", "abc", "1.5", "nan", ""],
    "--samples": ["0", "-5", "x", "1e9x"],
    "--steps": ["0", "-1", "two", "inf"],
    "--batch-size": ["0", "-8", "b"],
    "--seed": ["x", "1.5", ""],
    "--timesteps": ["abc", "5", "5:2", "-1:10", "0:5000", "1:2:3", "x:10", "10:10"],
    "--sampler": ["nonsense", "", "ddim2", "flow"],
    "--features": ["nonsense", "", "inception-v4"],
    "--fid-weights": ["./missing.pth", "", "/nonexistent/w.safetensors"],
    "--skip": ["nonsense", "sharpness,nope"],
    "--guidance-scale": ["-1", "nan", "inf", "abc"],
    "--threads": ["0", "-2", "many"],
    "--device": ["nonsense", "cuda:x", "cpu:0:1", "", " "],
    "--dtype": ["int8", "nonsense", "", " "],
    "--mixed-precision": ["fp8", "yes"],
    "--ref": ["./missing-ref", "x.txt", "~/nope/none.npz"],
    "--data": ["./missing", "x.csv", "/nonexistent/a.npy"],
    "--scheduler": ["./missing-scheduler"],
    "--variant": ["fp77"],
    "--sample-size": ["3", "0", "-2", "x"],
}
GATE_CONFIGS = [
    "this is = not toml [",
    "[gate]\n",
    "[gate]\nrules = 5\n",
    '[[gate.rules]]\nmetric = "nonsense.path"\nmax = 1\n',
    '[[gate.rules]]\nmetric = "sharpness.hessian"\nmax = 1\n',
    '[[gate.rules]]\nmetric = "bank.loss"\n',
    '[[gate.rules]]\nmetric = "bank.loss"\nmax = "high"\n',
    '[[gate.rules]]\nmetric = "bank.loss"\nmax = 1\nrelative = "nonsense"\n',
    '[[gate.rules]]\nmetric = "bank.loss"\nmin = 2\nmax = 1\n',
    "[[gate.rules]]\nmetric = 5\nmax = 1\n",
    '[[gate.rules]]\nmetric = "bank.loss"\nmax = 1\nrelative = "ratio"\n',
    '[[gate.rules]]\nmetric = "quantize.settings.W9A9.relative_mse"\nmax = 1\n',
    '[audit]\nprobes = -1\n[[gate.rules]]\nmetric = "bank.loss"\nmax = 1\n',
    '[audit]\nnonsense = 1\n[[gate.rules]]\nmetric = "bank.loss"\nmax = 1\n',
    '[audit.sharpness]\nradii = "abc"\n[[gate.rules]]\nmetric = "bank.loss"\nmax = 1\n',
    '[audit.nonsense]\nx = 1\n[[gate.rules]]\nmetric = "bank.loss"\nmax = 1\n',
    '[audit]\nskip = 5\n[[gate.rules]]\nmetric = "bank.loss"\nmax = 1\n',
    '[gate]\nbaseline = "./missing.json"\n[[gate.rules]]\nmetric = "bank.loss"\nmax = 1\nrelative = "ratio"\n',
    "\xff\xfe binary",
]


# ---------------------------------------------------------------------------- the corpus
def _snapshot(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and ".git" not in p.parts and ".venv" not in p.parts and "__pycache__" not in p.parts:
                if ".pytest_cache" in p.parts:
                    continue
                st = p.stat()
                out[str(p)] = f"{st.st_size}:{st.st_mtime_ns}"
    return out


def corpus(tmp: Path, pipeline: Path) -> list[tuple[str, list[str]]]:
    """Every case as (name, CLI arguments); the files it needs are written under tmp."""
    rng = random.Random(SEED)
    cases: list[tuple[str, list[str]]] = []
    models = tmp / "models"
    models.mkdir()
    k = 0

    def model_copy() -> Path:
        nonlocal k
        k += 1
        m = models / f"m{k:04d}"
        shutil.copytree(pipeline, m)
        return m

    for rel, what, change in checkpoint_cases(rng, pipeline):
        m = model_copy()
        apply(m, rel, change)
        # a denoiser config diffusers cannot build is found when the plan builds it (on the meta device)
        command = ["audit", str(m), "--quick", "--dry-run"] if rel.startswith("unet") else ["info", str(m)]
        cases.append((f"{rel}: {what}", command))
    weights = next((pipeline / "unet").glob("*.safetensors"))
    for what, raw in safetensors_cases(rng, weights.read_bytes()):
        m = model_copy()
        (m / "unet" / weights.name).write_bytes(raw)
        # non-finite values are found when the weights load, names against the model built (on the meta device)
        command = ["audit", str(m), "--quick", "--dry-run"] if what.startswith(("body", "names")) else ["info", str(m)]
        cases.append((f"safetensors {what}", command))
    run = ["audit", str(pipeline), "--quick", "--probes", "4", "--samples", "4", "--steps", "2", "--dry-run"]
    for what, path in data_cases(rng, tmp):
        cases.append((f"--data {what}", [*run, "--data", str(path)]))
        cases.append((f"--ref {what}", [*run, "--data", "none", "--ref", str(path)]))
    for what, args in text_cases(tmp):
        cases.append((what, [*run, *args]))
    for option, values in OPTION_VALUES.items():
        for v in values:
            cases.append((f"{option} {v!r}", [*run, option, v]))
    (tmp / "weights.pth").write_bytes(b"not safetensors")
    for features in ("digits-cnn", "patches-cnn", "dinov2"):  # weights a feature network cannot take
        cases.append((f"--fid-weights for {features}", [*run, "--features", features, "--fid-weights", "weights.pth"]))
    short = model_copy()  # a schedule of 50 steps: a range inside 1000 but past its end
    apply(short, "scheduler/scheduler_config.json", ("SET", "num_train_timesteps", 50))
    for spec in ("0:51", "40:100", "50:"):
        cases.append((f"--timesteps {spec} of 50", ["audit", str(short), "--quick", "--dry-run", "--timesteps", spec]))
    for i, text in enumerate(GATE_CONFIGS):
        path = tmp / f"gate-{i}.toml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        cases.append((f"gate config {i}", ["gate", str(pipeline), "--quick", "--config", str(path)]))
        if "[audit" in text or i == 0 or "\xff" in text:  # audit --config reads only the [audit] tables
            cases.append((f"audit config {i}", [*run, "--config", str(path)]))
    return cases


@pytest.fixture(scope="module")
def fuzz_outcomes(tiny_pipeline, tmp_path_factory):
    import os

    from flatcheck.cli import run

    tmp = tmp_path_factory.mktemp("fuzz")
    watched = (REPO, tiny_pipeline.parent)
    before = _snapshot(*watched)
    cases = corpus(tmp, tiny_pipeline)
    outcomes, timing = [], []
    old_cwd = os.getcwd()
    os.chdir(tmp)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FLATCHECK_CACHE", str(tmp / "cache"))
            mp.delenv("GITHUB_STEP_SUMMARY", raising=False)
            for name, args in cases:
                import contextlib
                import io

                err = io.StringIO()
                t0 = time.perf_counter()
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    try:
                        code = run(args)
                    except BaseException as exc:  # noqa: BLE001 - a crash is an outcome to report
                        code = f"raised {type(exc).__name__}: {exc}"
                outcomes.append((name, args, code, err.getvalue()))
                timing.append((time.perf_counter() - t0, name))
    finally:
        os.chdir(old_cwd)
    del timing
    return outcomes, before, _snapshot(*watched)


def test_the_corpus_is_hundreds_of_cases(fuzz_outcomes):
    outcomes, _, _ = fuzz_outcomes
    assert len(outcomes) >= 300, len(outcomes)


def test_every_corruption_exits_2_in_one_line(fuzz_outcomes):
    outcomes, _, _ = fuzz_outcomes
    bad = []
    for name, args, code, err in outcomes:
        lines = err.strip().splitlines()
        ok = code == 2 and len(lines) == 1 and lines[0].startswith("flatcheck: error: ") and "Traceback" not in err
        ok = ok and "rerun with --debug" not in err  # an unexpected exception, not an input error
        if not ok:
            bad.append(f"{name}: exit {code}: {err.strip()[-200:]}")
    assert not bad, f"{len(bad)} of {len(outcomes)}:\n" + "\n".join(bad)


def test_no_file_outside_the_temporary_folder_changed(fuzz_outcomes):
    _, before, after = fuzz_outcomes
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, changed[:10]


def test_the_api_refuses_bad_data_and_timesteps_before_work(tiny_pipeline, tmp_path):
    """The Python API checks the --data content as the command line does, and --timesteps against the schedule,
    before any sampling (a NaN in the data used to end the run as a LinAlgError)."""
    import flatcheck

    nan = np.random.default_rng(0).random((4, 16, 16), dtype=np.float32)
    nan[1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "cut.npz").write_bytes(b"not a zip")
    small = dict(profile="quick", probes=2, samples=2, steps=1)
    for data, why in (("nan.npy", "non-finite"), ("cut.npz", "not an .npz")):
        with pytest.raises(flatcheck.InputError, match=why):
            flatcheck.audit(str(tiny_pipeline), data=str(tmp_path / data), **small)
    with pytest.raises(flatcheck.InputError, match="non-finite"):
        flatcheck.fid(str(tiny_pipeline), ref=str(tmp_path / "nan.npy"), **small)
    with pytest.raises(flatcheck.InputError, match="HI <= 1000"):
        flatcheck.sharpness(str(tiny_pipeline), timesteps="0:1001", progress=_NoWork(), **small)


class _NoWork:
    """A progress callback that fails the test if any work is reported (the refusal must come first)."""

    def __call__(self, task, done, total):
        raise AssertionError(f"work started ({task}) before the bad input was refused")
