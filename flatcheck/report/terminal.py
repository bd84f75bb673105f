"""Rich renderables for the terminal report."""

from __future__ import annotations

from rich.table import Table

from ..info import CheckpointInfo


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def info_table(info: CheckpointInfo) -> Table:
    t = Table(title=f"flatcheck info: {info.source}", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    rows = [
        ("checkpoint", f"{info.form} at {info.path}"),
        ("pipeline", info.pipeline_class or "(bare model folder)"),
        ("denoiser", info.denoiser_class),
        ("parameters", f"{info.parameters:,}"),
        ("dtype", info.dtype),
        ("sample shape", " x ".join(map(str, info.sample_shape)) + f" ({info.space})"),
        ("conditioning", info.conditioning + (f" ({info.num_classes} classes)" if info.num_classes else "")),
        ("autoencoder", info.vae_class or "none"),
        ("scheduler", f"{info.scheduler_class} (from {info.scheduler_origin})"),
        ("train timesteps", str(info.num_train_timesteps)),
        ("beta schedule", str(info.beta_schedule)),
        ("prediction type", info.prediction_type),
    ]
    for w in info.weight_files:
        rows.append(("weights", f"{w.path} ({w.format}, {_human_bytes(w.bytes)})"))
    for k, v in rows:
        t.add_row(k, v)
    return t
