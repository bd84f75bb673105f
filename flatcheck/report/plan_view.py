"""The plan of a run (flatcheck.plan) in the terminal and in Markdown."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from ..measures.tables import Table
from ..plan import FIT_MARGIN


def _gib(n: int | float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _count(n: int) -> str:
    return f"{n:,}" if n else "-"


def plan_renderable(plan) -> Group:
    head = Text(
        f"flatcheck plan: {plan.model} on {plan.device}, {plan.dtype}; denoiser {plan.parameters:,} parameters, "
        f"measured {plan.measured_parameters:,} (one vector {_gib(plan.vector_bytes)}); weights "
        f"{_gib(plan.weights_bytes)}; the process before them {_gib(plan.baseline_bytes)}"
    )
    t = Table(show_lines=False, title_justify="left")
    for col, j in (
        ("phase", "left"),
        ("forward", "right"),
        ("grad", "right"),
        ("HVP", "right"),
        ("decode", "right"),
        ("batch", "right"),
        ("vec", "right"),
        ("peak GiB", "right"),
        ("time", "right"),
    ):
        t.add_column(col, justify=j, overflow="fold")
    for p in plan.phases:
        w = p.work
        t.add_row(
            w.phase + (" (at most)" if w.upper_bound else ""),
            _count(w.forwards * (2 if w.guided else 1)),
            _count(w.gradients),
            _count(w.hvps),
            _count(w.decodes),
            str(w.batch),
            str(w.vectors),
            f"{p.peak_bytes / 2**30:.2f}",
            _duration(p.seconds),
        )
    verdict = "fits" if plan.fits else "does NOT fit"
    lines = [
        head,
        t,
        Text(
            f"peak {_gib(plan.peak_bytes)} ({plan.worst.work.phase}) of {_gib(plan.usable_bytes)} usable "
            f"({_gib(plan.available_bytes)} available, {plan.available_source}, less {FIT_MARGIN:.0%} kept free): "
            f"{verdict}"
            if plan.worst
            else "nothing to run",
            style="bold green" if plan.fits else "bold red",
        ),
    ]
    if plan.advice:
        lines.append(Text("would fit with: " + "; or ".join(plan.advice)))
    if plan.seconds is not None:
        lines.append(
            Text(
                f"estimated time {_duration(plan.seconds)} ({plan.calibration['how']}; HVPs as a multiple of a "
                "forward + backward; counts marked 'at most' are the most a loop can do)"
            )
        )
    else:
        lines.append(Text("time not estimated (no timed call: the weights were not loaded)"))
    lines.append(
        Text(
            "Images counted per network pass (a guided sampling step is two); vec: parameter-sized vectors held. "
            "Peak = the process before the weights + weights + vec x one vector + one call's peak traced on the "
            "meta device.",
            style="dim",
        )
    )
    return Group(*lines)
