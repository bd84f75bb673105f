"""The exposure outcomes `rank` correlates, read from a report's exposure section (larger = more damage):
exposure.<steps>.gap           |eps-norm gap| / forward norm summed over steps (|.|: either sign is bias)
exposure.<steps>.lambda        |lambda - 1| of the constant epsilon scaling that closes the gap
"""

from __future__ import annotations

from ..base import Reading, estimate, number


def readings(e: dict) -> tuple[dict[str, Reading], list[str]]:
    """The exposure outcomes of one report's exposure section, and notes on what it lacks."""
    out: dict[str, Reading] = {}
    notes: list[str] = []
    what = "eps" if e.get("quantity", "eps") == "eps" else e["quantity"]
    for i, run in enumerate(e.get("runs") or []):
        steps = run["steps"]
        total, total_se = estimate(run.get("gap_total"))
        rel = number(run.get("gap_relative"))
        # gap_relative = gap_total / (sum of forward norms): the standard error scales alike.
        se = abs(rel * total_se / total) if rel is not None and total and total_se is not None else None
        out[f"exposure.{steps}.gap"] = Reading(
            f"exposure gap ({steps} steps)",
            f"gap {steps} steps",
            f"exposure.runs.{i}.gap_relative",
            rel,
            se,
            absolute=True,
        )
        const = next((sc for sc in run.get("scaling") or [] if sc.get("form") == "constant"), None)
        if const is not None and number(const.get("b")) is not None:
            out[f"exposure.{steps}.lambda"] = Reading(
                f"{what} scaling |lambda - 1| ({steps} steps)",
                f"|lambda-1| {steps} steps",
                f"exposure.runs.{i}.scaling.constant.b",
                const["b"] - 1.0,
                None,
                absolute=True,
            )
        else:
            notes.append(f"no constant {what} scaling at {steps} steps: no lambda outcome")
    return out, notes
