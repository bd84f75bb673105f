# The docstring is the usage text main() prints: kept as written (indented, long lines).
"""The evidence files' helper, called by make.sh (run that, not this).

    evidence.py env                 the run's environment (versions, threads, CPU instruction set) as JSON
    evidence.py noisy DIR           digits-base with Gaussian noise of each tensor's own std (seed 0): the gate's failing model
    evidence.py fid-pairs WORK      paired FD differences between the bundled models and the real-vs-real sanity rows, as JSON
    evidence.py compare OLD NEW     every number of two runs/ folders, timings and peak memory excluded: exit 1 on a difference
    evidence.py render              the tables of the .md files, from runs/ (between <!-- evidence:NAME --> markers)
"""  # noqa: E501  # fmt: skip

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
MODELS = ("digits-base", "digits-ema", "digits-sam")
# Keys whose values are measurements of time, of memory or of this machine's cache, not results.
VOLATILE = (
    "seconds",
    "wall",
    "timings",
    "time_ratio",
    "statistics",
    "cache",
    "path",
    "folder",
    "npz",
    "artifacts",
    "created",
    "elapsed",
    "duration",
    "peak_memory",
    "memory_plan",
)


# ---------------------------------------------------------------------------- env, noisy, fid-pairs
def env() -> dict:
    import torch

    from flatcheck.core.runtime import environment  # the same record every report has

    return {**environment(torch.device("cpu")), "OMP_NUM_THREADS": __import__("os").environ.get("OMP_NUM_THREADS")}


def noisy(out: Path) -> None:
    import shutil

    import torch
    from diffusers import UNet2DModel

    from flatcheck.core.checkpoint import bundled_root

    src = bundled_root() / "digits-base"
    shutil.copytree(src, out, dirs_exist_ok=True)
    net = UNet2DModel.from_pretrained(src / "unet")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=g) * p.std())
    net.save_pretrained(out / "unet")


def _npz_samples(path: Path):
    import numpy as np
    import torch

    u = np.load(path)["images"]  # uint8 [N, H, W, C], rounded as a PNG is
    return torch.from_numpy(u).permute(0, 3, 1, 2).float() / 127.5 - 1


def _fid_doc(r) -> dict:
    return {
        "fd": r.value.value,
        "fd_stderr": r.value.stderr,
        "fd_interval": [r.value.ci_low, r.value.ci_high],
        "kid": r.kid.value if r.kid else None,
        "kid_stderr": r.kid.stderr if r.kid else None,
        "n": r.num_samples,
    }


def fid_pairs(work: Path) -> dict:
    """Rescore each model's exported samples as `flatcheck fid` does (digits, digits-cnn, 200 rounds,
    seed 0), check that this gives the fid command's FD, and take the paired differences; then the
    sanity rows (two halves of the digits, a blurred half, noise)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from flatcheck.core.datasets import digits_images
    from flatcheck.core.fd.score import fd_change, score_samples

    kw = dict(features="digits-cnn", bootstrap=200, seed=0)
    scored, out = {}, {"pairs": {}, "sanity": {}, "rescored_equals_fid": {}}
    for m in MODELS:
        scored[m] = score_samples(_npz_samples(work / f"sample-{m}" / "samples.npz"), "digits", **kw)
        fid_json = json.loads((RUNS_OF(work) / f"fid-{m}.json").read_text())["fid"]["value"]["value"]
        out["rescored_equals_fid"][m] = scored[m].value.value == fid_json
    for a, b in (("digits-sam", "digits-base"), ("digits-ema", "digits-base"), ("digits-sam", "digits-ema")):
        d = fd_change(scored[a], scored[b])
        out["pairs"][f"{a} - {b}"] = {
            "value": d.value,
            "stderr": d.stderr,
            "interval": [d.ci_low, d.ci_high],
            "independent_stderr": math.hypot(scored[a].value.stderr, scored[b].value.stderr),
        }
    x = digits_images()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    half_a, half_b = x[perm[: len(x) // 2]], x[perm[len(x) // 2 :]]
    ref = work / "half-b.npz"
    np.savez(ref, images=half_b.numpy())
    blurred = F.interpolate(F.avg_pool2d(half_a, 2), scale_factor=2, mode="nearest")
    noise = torch.rand(half_a.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for name, s in (
        ("real half A", half_a),
        ("half A blurred (2x2 average pool, upsampled)", blurred),
        ("uniform noise (seed 0)", noise),
    ):
        r = score_samples(s, str(ref), use_cache=False, **kw)
        out["sanity"][name] = {**_fid_doc(r), "kid_subset_std": r.kid_subset_std, "reference_n": len(half_b)}
    return out


def RUNS_OF(work: Path) -> Path:
    """The runs folder make.sh is writing (its own in --check mode)."""
    return work / "runs" if (work / "runs").is_dir() else RUNS


# ---------------------------------------------------------------------------- compare
def _numbers(doc, path: str = ""):
    if isinstance(doc, dict):
        if isinstance(doc.get("path"), str) and any(word in doc["path"] for word in VOLATILE):
            return  # a compare row of a timing
        for k, v in doc.items():
            if any(word in k for word in VOLATILE):
                continue
            yield from _numbers(v, f"{path}.{k}" if path else k)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _numbers(v, f"{path}.{i}")
    elif isinstance(doc, bool) or doc is None or isinstance(doc, str):
        return
    elif isinstance(doc, (int, float)):
        yield path, doc


def compare(old: Path, new: Path) -> int:
    """Every number of every JSON in `new` against `old` (timings, peak memory and paths excluded)."""
    bad = total = 0
    for f in sorted(new.glob("*.json")):
        if f.name == "env.json":
            continue
        ref = old / f.name
        if not ref.exists():
            print(f"{f.name}: not in {old}")
            bad += 1
            continue
        a = dict(_numbers(json.loads(ref.read_text())))
        b = dict(_numbers(json.loads(f.read_text())))
        diffs = [
            (k, a.get(k), b.get(k))
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
            and not (
                isinstance(a.get(k), float) and isinstance(b.get(k), float) and math.isnan(a[k]) and math.isnan(b[k])
            )
        ]
        total += len(b)
        if diffs:
            bad += 1
            worst = max(diffs, key=lambda d: _rel(d[1], d[2]))
            print(
                f"{f.name}: {len(diffs)} of {len(b)} numbers differ; largest relative {_rel(worst[1], worst[2]):.3g} "
                f"at {worst[0]} ({worst[1]} -> {worst[2]})"
            )
        else:
            print(f"{f.name}: all {len(b)} numbers identical")
    envs = [json.loads((d / "env.json").read_text()) if (d / "env.json").exists() else {} for d in (old, new)]
    for k in ("torch", "diffusers", "torch_threads", "cpu_capability"):
        if envs[0].get(k) != envs[1].get(k):
            print(
                f"environment differs: {k} {envs[0].get(k)} -> {envs[1].get(k)} (numbers may move in the last digits)"
            )
    print(f"{'OK' if not bad else 'DIFFERENT'}: {total} numbers compared")
    return 1 if bad else 0


def _rel(a, b) -> float:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


# ---------------------------------------------------------------------------- main
def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "render"
    if cmd == "env":
        print(json.dumps(env(), indent=1))
    elif cmd == "noisy":
        noisy(Path(argv[1]))
    elif cmd == "fid-pairs":
        print(json.dumps(fid_pairs(Path(argv[1])), indent=1))
    elif cmd == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    elif cmd == "render":
        from render import render_all  # noqa: E402 - examples/evidence/render.py

        render_all(RUNS, HERE)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main(sys.argv[1:]))
