"""Real-size trial of single-file checkpoints and LoRA adapters on a random-weight SD 1.5 (benchmarks/README.md).

    .venv/bin/python benchmarks/realsize_single_file_lora.py /tmp/realsize            # everything (~35 min here)
    .venv/bin/python benchmarks/realsize_single_file_lora.py /tmp/realsize --only convert,lora
    .venv/bin/python benchmarks/realsize_single_file_lora.py /tmp/realsize --only sharpness-file,sharpness-folder
    .venv/bin/python benchmarks/realsize_single_file_lora.py /tmp/realsize --clean     # removes the files it made

Steps (each child process under /usr/bin/time, one at a time, torch threads --threads):
- build: ROOT/sd15, the random-weight StableDiffusionPipeline of realsize_build.py (float32; its tokenizer is the
  tiny handmade CLIP tokenizer of tests/families.py), unless it is there;
- convert: ROOT/sd15-single.safetensors, the pipeline's UNet, VAE and CLIP text encoder renamed to the original
  (CompVis) layout by tests/original_layout.py, one file, float32 like the published v1-5 single files;
- lora: ROOT/sd15-lora/pytorch_lora_weights.safetensors, a rank-4 (alpha 8) peft LoRA on the UNet's to_q, to_k,
  to_v, to_out.0, B drawn nonzero, saved by StableDiffusionPipeline.save_lora_weights with its adapter metadata;
- info-file, info-folder: `flatcheck info`;
- sharpness-*: the smallest real sharpness run (SMALL: one average-case draw at one radius, 2 probes, 1 sample of
  2 steps at latent side 32), on the single file (configs and tokenizer from --model-config ROOT/sd15), on the
  folder, and on the folder with --lora (--params lora, then every parameter); each planned first (--dry-run);
- restore: the Python API on an in-memory pipeline, flatcheck.sharpness(pipe, lora=FILE, ...): SHA-256 of every
  UNet tensor's bytes before and after, and their storage pointers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PY = str(ROOT / ".venv" / "bin" / "python")
SMALL = ["--measures", "avg", "--norms", "adaptive", "--radii", "0.01", "--draws", "1", "--no-block-average"]
SMALL += ["--buckets", "1", "--data", "none", "--samples", "1", "--steps", "2", "--probes", "2", "--batch-size", "1"]
SMALL += ["--sample-size", "32", "--seed", "0"]
RANK, ALPHA, TARGETS = 4, 8.0, ["to_q", "to_k", "to_v", "to_out.0"]
STEPS = ("build", "convert", "lora", "info-file", "info-folder", "load-file", "load-folder")
STEPS += ("sharpness-file", "sharpness-folder")
STEPS += ("sharpness-lora", "sharpness-lora-all", "restore")


def paths(root: Path) -> dict[str, Path]:
    return {
        "folder": root / "sd15",
        "file": root / "sd15-single.safetensors",
        "lora": root / "sd15-lora" / "pytorch_lora_weights.safetensors",
        "out": root / "sf-lora-out",
    }


def convert(folder: Path, file: Path) -> None:
    """The pipeline's weights in the original layout, one safetensors file (every tensor in memory once)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from tests.original_layout import clip_to_original, unet_to_original, vae_to_original

    def read(path: Path) -> dict:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}

    unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
    vae_cfg = json.loads((folder / "vae" / "config.json").read_text())
    state = unet_to_original(
        read(folder / "unet" / "diffusion_pytorch_model.safetensors"), unet_cfg["layers_per_block"]
    )
    vae = read(folder / "vae" / "diffusion_pytorch_model.safetensors")
    state.update(vae_to_original(vae, len(vae_cfg["down_block_types"])))
    state.update(clip_to_original(read(folder / "text_encoder" / "model.safetensors")))
    state = {k: v.contiguous() for k, v in state.items()}
    save_file(state, str(file))


def make_lora(folder: Path, file: Path) -> None:
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"))
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, init_lora_weights="gaussian")
    unet.add_adapter(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:  # B starts at zero: a LoRA that changes nothing would prove nothing
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
    state = get_peft_model_state_dict(unet)
    StableDiffusionPipeline.save_lora_weights(
        file.parent, unet_lora_layers=state, unet_lora_adapter_metadata=config.to_dict()
    )


def timed(args: list[str], threads: int) -> dict:
    """A child process under /usr/bin/time: wall seconds, peak RSS (bytes), exit code, last stderr line."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    cmd = ["/usr/bin/time", "-f", "TIME %e s %M KB", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    m = re.search(r"TIME ([\d.]+) s (\d+) KB", proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("TIME")]
    return {
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(int(m.group(2)) / 2**20, 2) if m else None,
        "exit": proc.returncode,
        "last": lines[-1][:300] if lines else "",
        **{k: json.loads(v) for k, v in re.findall(r"^(RESTORE|LOAD) (.*)$", proc.stdout, re.M)},
    }


def flatcheck(*args: str) -> list[str]:
    return [PY, "-m", "flatcheck", *args]


def gib(n) -> float | None:
    return round(n / 2**30, 2) if n else None


def sharpness(name: str, model: Path, extra: list[str], p: dict, threads: int, plan: bool = True) -> dict:
    args = ["sharpness", str(model), *SMALL, *extra, "--threads", str(threads)]
    plan_json = p["out"] / f"{name}.plan.json"
    plan_json.unlink(missing_ok=True)
    planned = timed(flatcheck(*args, "--dry-run", "--json", str(plan_json)), threads) if plan else {"last": "skipped"}
    report = p["out"] / f"{name}.json"
    row = timed(flatcheck(*args, "--json", str(report)), threads)
    row["command"] = "flatcheck " + " ".join(args).replace(str(p["folder"].parent), "ROOT")
    if plan_json.exists():
        plan = json.loads(plan_json.read_text())
        plan = plan.get("plan", plan)
        row["plan_gib"] = gib(plan.get("peak_bytes"))
        row["plan_s"] = round(sum(ph.get("seconds") or 0 for ph in plan.get("phases", [])))
        row["planned_parameters"] = plan.get("measured_parameters")
    else:
        row["plan_error"] = planned["last"]
    if report.exists():
        env = json.loads(report.read_text())["environment"]
        peaks = env.get("peak_memory") or {}
        row["run_gib"] = gib(peaks.get("run_bytes"))
        row["phases_gib"] = {k: gib(v) for k, v in (peaks.get("by_phase") or {}).items()}
        found = re.findall(r'"parameters": (\d+)', report.read_text())
        row["parameters"] = sorted({int(n) for n in found})
    return row


def load_phase(model: str, model_config: str | None) -> dict:
    """The load alone, as the commands do it (denoiser, VAE, scheduler; then the text encoders and tokenizer):
    seconds, the process's peak RSS during it and its RSS after (every weight resident), in GiB."""

    def kib(field: str) -> int:
        return next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith(field))

    import flatcheck as fc
    from flatcheck.core.prompts import load_text_components

    t0 = time.perf_counter()
    ckpt = fc.load(model, model_config=model_config)
    text = load_text_components(ckpt)
    seconds = time.perf_counter() - t0
    modules = [ckpt.denoiser, getattr(ckpt, "vae", None), *(m for m in text.values() if hasattr(m, "parameters"))]
    weights = sum(t.numel() * t.element_size() for m in modules if m is not None for t in m.state_dict().values())
    return {
        "load_s": round(seconds, 1),
        "load_peak_gib": round(kib("VmHWM:") / 2**20, 2),
        "rss_after_gib": round(kib("VmRSS:") / 2**20, 2),
        "weights_gib": round(weights / 2**30, 2),
    }


def restore(p: dict, threads: int) -> dict:
    """flatcheck.sharpness(pipe, lora=FILE) on an in-memory pipeline: the UNet's tensors after, hashed."""
    import hashlib

    import torch

    torch.set_num_threads(threads)
    from diffusers import StableDiffusionPipeline

    import flatcheck as fc
    from flatcheck.core.lora import attached

    pipe = StableDiffusionPipeline.from_pretrained(str(p["folder"]), safety_checker=None, local_files_only=True)

    def digest(unet) -> dict:
        out = {}
        for k, v in unet.state_dict().items():
            out[k] = (
                hashlib.sha256(v.detach().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest(),
                v.data_ptr(),
            )
        return out

    before = digest(pipe.unet)
    types = {n: type(m) for n, m in pipe.unet.named_modules()}
    t0 = time.perf_counter()
    fc.sharpness(
        pipe, lora=str(p["lora"]), probes=2, samples=1, steps=2, batch_size=1, measures=["avg"], radii=[0.01],
        draws=1, norms=["adaptive"], buckets=1, block_average=False, sample_size=32, seed=0,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    after = digest(pipe.unet)
    return {
        "tensors": len(before),
        "same_keys": before.keys() == after.keys(),
        "bytes_equal": all(after[k][0] == v[0] for k, v in before.items()),
        "same_storage": all(after[k][1] == v[1] for k, v in before.items()),
        "no_peft_left": attached(pipe.unet) is None and {n: type(m) for n, m in pipe.unet.named_modules()} == types,
        "sharpness_s": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=",".join(STEPS), help="comma list of: " + ", ".join(STEPS))
    ap.add_argument("--clean", action="store_true", help="remove the single file, the LoRA and the reports")
    ap.add_argument("--no-plan", default="", help="comma list of sharpness steps not planned first (--dry-run)")
    ap.add_argument("--restore-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--load-child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    p = paths(a.root)
    if a.clean:
        p["file"].unlink(missing_ok=True)
        shutil.rmtree(p["lora"].parent, ignore_errors=True)
        shutil.rmtree(p["out"], ignore_errors=True)
        return 0
    if a.load_child:
        print("LOAD " + json.dumps(load_phase(a.load_child[0], (a.load_child[1:] or [None])[0])))
        return 0
    if a.restore_child:
        print("RESTORE " + json.dumps(restore(p, a.threads)))
        return 0
    p["out"].mkdir(parents=True, exist_ok=True)
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    me = [PY, str(Path(__file__).resolve()), str(a.root), "--threads", str(a.threads)]
    results = {}
    for step in only:
        if step == "build" and not (p["folder"] / "model_index.json").exists():
            from benchmarks.realsize_build import build

            build("sd15", a.root, True)
        elif step == "convert":
            code = "import sys; sys.argv[1:]=[]; from benchmarks.realsize_single_file_lora import convert, Path;"
            code += f"convert(Path({str(p['folder'])!r}), Path({str(p['file'])!r}))"
            results[step] = timed([PY, "-c", code], a.threads)
            results[step]["size_gb"] = round(p["file"].stat().st_size / 1e9, 2) if p["file"].exists() else None
        elif step == "lora":
            code = "from benchmarks.realsize_single_file_lora import make_lora, Path;"
            code += f"make_lora(Path({str(p['folder'])!r}), Path({str(p['lora'])!r}))"
            results[step] = timed([PY, "-c", code], a.threads)
        elif step == "info-file":
            results[step] = timed(flatcheck("info", str(p["file"])), a.threads)
        elif step == "info-folder":
            results[step] = timed(flatcheck("info", str(p["folder"])), a.threads)
        elif step == "load-file":
            results[step] = timed([*me, "--load-child", str(p["file"]), str(p["folder"])], a.threads)
        elif step == "load-folder":
            results[step] = timed([*me, "--load-child", str(p["folder"])], a.threads)
        elif step == "sharpness-file":
            extra = ["--model-config", str(p["folder"])]
            results[step] = sharpness(step, p["file"], extra, p, a.threads, step not in a.no_plan.split(","))
        elif step == "sharpness-folder":
            results[step] = sharpness(step, p["folder"], [], p, a.threads, step not in a.no_plan.split(","))
        elif step == "sharpness-lora":
            results[step] = sharpness(step, p["folder"], ["--lora", str(p["lora"]), "--params", "lora"], p, a.threads)
        elif step == "sharpness-lora-all":
            results[step] = sharpness(step, p["folder"], ["--lora", str(p["lora"])], p, a.threads)
        elif step == "restore":
            row = timed([*me, "--restore-child"], a.threads)
            results[step] = row
        if step in results:
            print(step, json.dumps(results[step]), flush=True)
    (p["out"] / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
