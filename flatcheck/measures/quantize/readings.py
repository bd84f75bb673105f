"""The quantization outcomes `rank` correlates, read from a report's quantize section (larger = more damage):
quantize.<setting>.drift       paired sample MSE / sample variance (W8A8, W4A4, bnb-nf4...)
quantize.<setting>.fd_change   FD/FID of the quantized samples minus full precision's
"""

from __future__ import annotations

from ..base import Reading, estimate, number


def readings(q: dict) -> tuple[dict[str, Reading], list[str]]:
    """The quantization outcomes of one report's quantize section, and notes on what it lacks."""
    out: dict[str, Reading] = {}
    notes: list[str] = []
    fd_label = q.get("fid_label") or "FD"
    for s in q.get("settings") or []:
        name = s["name"]
        drift = number(s.get("relative_mse"))
        mse, mse_se = estimate(s.get("sample_mse"))
        # relative_mse = sample_mse / sample variance: the same standard error, scaled alike.
        se = drift * mse_se / mse if drift is not None and mse and mse_se is not None else None
        out[f"quantize.{name}.drift"] = Reading(
            f"{name} sample drift", f"{name} drift", f"quantize.settings.{name}.relative_mse", drift, se
        )
        if s.get("fid_change") is not None:
            out[f"quantize.{name}.fd_change"] = Reading(
                f"{name} {fd_label} change",
                f"{name} {fd_label.split()[0]} change",
                f"quantize.settings.{name}.fid_change",
                *estimate(s["fid_change"]),
            )
        else:
            notes.append(f"{name} {fd_label} change: not scored (no FD reference)")
    if not any((s.get("bnb_type") or "") == "nf4" for s in q.get("settings") or []):
        notes.append("no nf4 setting in the audits (rank --quantize-settings W8A8,W4A4,bnb-nf4 adds one): no nf4 drift")
    return out, notes
