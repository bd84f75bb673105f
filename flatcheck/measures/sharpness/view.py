"""Sharpness for people: rich tables, PNG plots (matplotlib, Agg) and raw arrays (.npz).

One renderer for the command and the audit: `view` (tables), `plot` (the figure reports embed),
`save` (the files of --out: every plot and the arrays)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...core.stats import Estimate
from ..tables import Table
from .landscape import Landscape
from .measure import SharpnessResult


def _est(e: Estimate | None, digits: int = 3) -> str:
    if e is None:
        return "-"
    if e.stderr is None:
        return f"{e.value:.{digits}g}"
    return f"{e.value:.{digits}g} ± {e.stderr:.2g}"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _ratio(rel: float) -> str:
    """Relative change: a percentage while small, a factor once the loss has multiplied."""
    return f"{100 * rel:+.3g}%" if abs(rel) < 10 else f"x{1 + rel:.3g}"


def reference_radius(result: SharpnessResult) -> float:
    """The swept radius nearest (in log) to the block radius: the one the bucket table shows."""
    radii = result.config.radii
    target = result.block_radius or radii[len(radii) // 2]
    return min(radii, key=lambda r: abs(math.log(r / target)))


def view(result: SharpnessResult, model: str = "") -> list:
    """Rich renderables: summary, radius sweep, timestep buckets, blocks, Hessian, landscape."""
    tables = []
    s = Table(title=f"flatcheck sharpness: {model}".rstrip(": "), show_header=False, title_justify="left")
    s.add_column("field", style="bold")
    s.add_column("value")
    s.add_row(
        "probe bank", f"{result.probes} probes, seed {result.seed}, t in [{result.t_range[0]}, {result.t_range[1]})"
    )
    s.add_row("x0 from", result.source)
    sel = getattr(result, "parameter_selection", "all")
    s.add_row(
        "parameters",
        f"{result.parameters:,} (|theta| = {result.weight_norm:.4g})"
        + ("" if sel == "all" else f"; only --params {sel} (the rest held fixed)"),
    )
    s.add_row("loss L(theta)", _est(result.loss, 4) + " (± over probes)")
    s.add_row(
        "radius r", "relative: |delta| ~ r |theta| (absolute, isotropic); each weight moves ~ r of itself (adaptive)"
    )
    s.add_row("time", ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    tables.append(s)
    if result.reference is not None:
        tables.append(reference_table(result.reference))

    if result.average or result.worst:
        t = Table(
            title="Loss increase L(theta + delta) - L(theta) by radius (relative to L in brackets)",
            title_justify="left",
        )
        t.add_column("radius r", justify="right")
        cols = []
        for a in result.average:
            t.add_column(f"average, {a.norm}\n({a.draws} ± pairs, ± s.e.)", justify="right")
            cols.append(("avg", a))
        for w in result.worst:
            label = "SAM" if w.norm == "absolute" else "ASAM"
            t.add_column(f"worst, {w.norm}\n({w.steps}-step ascent; 1 = {label})", justify="right")
            cols.append(("worst", w))
        avg_r, worst_r = list(result.config.radii), list(result.config.worst_radii)
        radii = sorted(set(avg_r if result.average else []) | set(worst_r if result.worst else []))
        for r in radii:
            row = [f"{r:g}"]
            for kind, c in cols:
                if kind == "avg":
                    p = c.points[avg_r.index(r)] if r in avg_r else None
                    row.append("-" if p is None else f"{_est(p.increase)} [{_ratio(p.relative)}]")
                else:
                    p = c.points[worst_r.index(r)] if r in worst_r else None
                    row.append("-" if p is None else f"{p.increase:.3g} [{_ratio(p.relative)}]")
            t.add_row(*row)
        tables.append(t)

    if result.average or result.hessian:
        r_ref = reference_radius(result) if result.average else None
        title = "By timestep bucket"
        if r_ref is not None:
            title += f" (average case at r = {r_ref:g})"
        t = Table(title=title, title_justify="left")
        t.add_column("timesteps", justify="right")
        t.add_column("L(theta)", justify="right")
        for a in result.average:
            t.add_column(f"average, {a.norm}", justify="right")
        if result.hessian:
            t.add_column(f"Hessian trace\n({result.hessian.probes}-probe sub-bank)", justify="right")
        for b, (lo, hi) in enumerate(result.buckets):
            row = [f"[{lo}, {hi})", _est(result.loss_by_bucket[b], 4)]
            for a in result.average:
                p = a.points[result.config.radii.index(r_ref)]
                row.append(_est(p.by_bucket[b]))
            if result.hessian:
                row.append(_est(result.hessian.trace_by_bucket[b]))
            t.add_row(*row)
        tables.append(t)

    if result.blocks:
        title = "By top-level block"
        if result.block_radius:
            title += f" (average case with only that block perturbed, r = {result.block_radius:g})"
        t = Table(title=title, title_justify="left")
        t.add_column("block")
        t.add_column("parameters", justify="right")
        norms = list(result.blocks[0].average)
        for n in norms:
            t.add_column(f"average, {n}", justify="right")
        if result.hessian:
            t.add_column("Hessian trace", justify="right")
            t.add_column("trace / parameter", justify="right")
        for bl in result.blocks:
            row = [bl.block, f"{bl.parameters:,}"] + [_est(bl.average.get(n)) for n in norms]
            if result.hessian:
                row += [_est(bl.hessian_trace), _num(bl.trace_per_parameter)]
            t.add_row(*row)
        tables.append(t)

    if result.hessian:
        h = result.hessian
        e = h.eigen
        t = Table(
            title=f"Hessian ({h.probes}-probe sub-bank, {h.hvps} Hessian-vector products)",
            show_header=False,
            title_justify="left",
        )
        t.add_column("field", style="bold")
        t.add_column("value")
        for i, (v, r) in enumerate(zip(e.eigenvalues, e.residuals)):
            t.add_row(f"lambda_{i + 1}", f"{v:.5g} (within {r:.2g} of an eigenvalue)")
        if e.bound is not None:
            t.add_row("joint bound", f"{e.bound:.2g}: each value within it of a distinct eigenvalue (repeats counted)")
        how = f"{e.method} (blocks of {e.block})" if e.block > 1 else e.method
        t.add_row(
            "eigenvalues",
            f"{how}, {e.hvps} HVPs, tolerance {e.tol:g} relative: "
            + ("converged" if e.converged else "NOT converged (raise --lanczos-iters)"),
        )
        if e.min_eigenvalue is not None:
            t.add_row("lowest Ritz value", f"{e.min_eigenvalue:.4g}")
        t.add_row("trace (Hutchinson)", f"{_est(h.trace, 4)} ({h.trace.n} Rademacher draws, ± s.e.)")
        t.add_row("trace / parameter", f"{h.trace_per_parameter:.4g}")
        tables.append(t)

    if result.landscape:
        ls = result.landscape
        t = Table(
            title=f"Filter-normalised landscape ({ls.probes}-probe sub-bank, Li et al. 2018)",
            show_header=False,
            title_justify="left",
        )
        t.add_column("field", style="bold")
        t.add_column("value")
        t.add_row("L at 0", f"{ls.base_loss:.4g}")
        t.add_row(f"L at -{ls.span:g} / +{ls.span:g}", f"{ls.curve[0]:.4g} / {ls.curve[-1]:.4g}")
        t.add_row("curvature at 0", f"{_num(ls.curvature, 4)} (second difference of the 1-D curve)")
        if ls.grid:
            flat = np.array(ls.surface)
            t.add_row("2-D surface", f"{len(ls.grid)} x {len(ls.grid)} grid, loss {flat.min():.4g} .. {flat.max():.4g}")
        tables.append(t)
    return tables


def reference_table(ref) -> Table:
    """The headline numbers' percentiles among the reference set, or why there is none."""
    where = f"{ref.family}, {ref.size_class}; table: {ref.table}. Larger = sharper."
    t = Table(title=f"Sharpness scale: {ref.label}\n{where}", title_justify="left")
    t.add_column("headline number")
    t.add_column("value", justify="right")
    t.add_column("percentile\n(% of the set below)", justify="right")
    t.add_column("reference min / median / max", justify="right")
    for p in ref.metrics.values():
        if p.percentile is None:
            t.add_row(p.label, _num(p.value, 4), "-", f"no reference: {p.why}")
            continue
        spread = f"{_num(p.ref_min, 3)} / {_num(p.ref_median, 3)} / {_num(p.ref_max, 3)} (n = {p.n})"
        t.add_row(p.label, _num(p.value, 4), f"{p.percentile:.0f}", spread)
    return t


# ------------------------------------------------------------------------------------- files
def save_arrays(result: SharpnessResult, path: Path) -> Path:
    """Every curve as a raw array (numpy .npz), for notebooks and other plotting tools."""
    a: dict[str, np.ndarray] = {
        "radii": np.array(result.config.radii),
        "worst_radii": np.array(result.config.worst_radii),
        "buckets": np.array(result.buckets),
    }
    for av in result.average:
        a[f"average_{av.norm}"] = np.array([p.increase.value for p in av.points])
        a[f"average_{av.norm}_stderr"] = np.array(
            [np.nan if p.increase.stderr is None else p.increase.stderr for p in av.points]
        )
        a[f"average_{av.norm}_by_bucket"] = np.array(
            [[np.nan if e is None else e.value for e in p.by_bucket] for p in av.points]
        )
    for w in result.worst:
        a[f"worst_{w.norm}"] = np.array([p.increase for p in w.points])
        a[f"worst_{w.norm}_ascent"] = np.array([p.ascent + [np.nan] * (w.steps - len(p.ascent)) for p in w.points])
    if result.hessian:
        h = result.hessian
        a["hessian_eigenvalues"] = np.array(h.eigen.eigenvalues)
        a["hessian_residuals"] = np.array(h.eigen.residuals)
        a["hessian_joint_bound"] = np.array(np.nan if h.eigen.bound is None else h.eigen.bound)
        a["hessian_top_history"] = np.array(h.eigen.history)
        a["hessian_trace_by_bucket"] = np.array([np.nan if e is None else e.value for e in h.trace_by_bucket])
    if result.blocks:
        a["blocks"] = np.array([b.block for b in result.blocks])
        if result.hessian:
            a["hessian_trace_by_block"] = np.array(
                [np.nan if b.hessian_trace is None else b.hessian_trace.value for b in result.blocks]
            )
    if result.landscape:
        ls = result.landscape
        a["landscape_alphas"] = np.array(ls.alphas)
        a["landscape_curve"] = np.array(ls.curve)
        a["landscape_grid"] = np.array(ls.grid)
        a["landscape_surface"] = np.array(ls.surface)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **a)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _radius_panel(ax, result: SharpnessResult, title: str) -> None:
    radii = np.array(result.config.radii)
    for av in result.average:
        y = np.array([p.increase.value for p in av.points])
        err = np.array([p.increase.stderr or 0.0 for p in av.points])
        ax.errorbar(radii, y, yerr=err, marker="o", capsize=3, label=f"average, {av.norm}")
    for w in result.worst:
        ax.plot(
            np.array(result.config.worst_radii),
            [p.increase for p in w.points],
            marker="s",
            ls="--",
            label=f"worst, {w.norm} ({w.steps} steps)",
        )
    ax.set_xscale("log")
    ys = [p.increase.value for av in result.average for p in av.points] + [
        p.increase for w in result.worst for p in w.points
    ]
    if all(y > 0 for y in ys):
        ax.set_yscale("log")
    else:  # small negative averages (noise) need a linear zone around 0
        ax.set_yscale("symlog", linthresh=max(1e-12, min((abs(y) for y in ys if y != 0), default=1e-6)))
    ax.set_xlabel("radius r (relative)")
    ax.set_ylabel("L(theta + delta) - L(theta)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def _landscape_panel(ax, ls: Landscape, title: str) -> None:
    ax.plot(ls.alphas, ls.curve, marker=".")
    ax.set_yscale("log")
    ax.set_xlabel("alpha (filter-normalised direction)")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)


def plot(result: SharpnessResult, path: Path) -> Path | None:
    """The figure reports embed: the radius sweep beside the 1-D landscape."""
    if not (result.average or result.worst or result.landscape):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    if result.average or result.worst:
        _radius_panel(axes[0], result, f"loss increase by radius (L = {result.loss.value:.4g})")
    else:
        axes[0].axis("off")
    if result.landscape:
        _landscape_panel(
            axes[1], result.landscape, f"filter-normalised 1-D landscape ({result.landscape.probes} probes)"
        )
    else:
        axes[1].axis("off")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, Path(path))


def save(result: SharpnessResult, folder: Path, model: str = "") -> list[Path]:
    """--out DIR: every plot (radius sweep, breakdowns, 1-D and 2-D landscapes) and sharpness.npz."""
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if result.average or result.worst:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        _radius_panel(ax, result, f"{model}: sharpness by radius (L = {result.loss.value:.4g})")
        written.append(_save(fig, folder / "sharpness_radius.png"))
    if result.blocks or result.average or result.hessian:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        labels = [f"[{lo},{hi})" for lo, hi in result.buckets]
        x = np.arange(len(labels))
        ax = axes[0]
        if result.average:
            r_ref = reference_radius(result)
            i = result.config.radii.index(r_ref)
            width = 0.8 / max(1, len(result.average))
            for k, av in enumerate(result.average):
                vals = [np.nan if e is None else e.value for e in av.points[i].by_bucket]
                ax.bar(x + k * width, vals, width, label=f"average, {av.norm}, r={r_ref:g}")
            ax.set_ylabel("loss increase")
        elif result.hessian:
            ax.bar(x, [np.nan if e is None else e.value for e in result.hessian.trace_by_bucket], label="Hessian trace")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_xlabel("timestep bucket")
        ax.legend(fontsize=8)
        ax.set_title("where along the schedule", fontsize=10)
        ax = axes[1]
        if result.blocks:
            names = [b.block for b in result.blocks]
            xb = np.arange(len(names))
            norms = list(result.blocks[0].average)
            width = 0.8 / max(1, len(norms) + (1 if result.hessian else 0))
            for k, n in enumerate(norms):
                ax.bar(xb + k * width, [b.average[n].value for b in result.blocks], width, label=f"average, {n}")
            if result.hessian:
                ax2 = ax.twinx()
                ax2.plot(xb, [b.trace_per_parameter for b in result.blocks], "k^-", label="trace / parameter")
                ax2.set_ylabel("Hessian trace / parameter")
                ax2.legend(fontsize=8, loc="upper right")
            ax.set_xticks(xb, names)
            if norms:
                ax.set_ylabel("loss increase")
                ax.legend(fontsize=8, loc="upper left")
        ax.set_title("which block", fontsize=10)
        fig.suptitle(f"{model}: sharpness breakdown", fontsize=10)
        written.append(_save(fig, folder / "sharpness_breakdown.png"))
    if result.landscape:
        ls = result.landscape
        fig, ax = plt.subplots(figsize=(6, 4.2))
        _landscape_panel(ax, ls, f"{model}: 1-D loss landscape ({ls.probes} probes)")
        written.append(_save(fig, folder / "landscape_1d.png"))
        if ls.grid:
            fig, ax = plt.subplots(figsize=(5.5, 4.6))
            z = np.log10(np.maximum(np.array(ls.surface), 1e-12))
            g = np.array(ls.grid)
            cs = ax.contourf(g, g, z.T, levels=20, cmap="viridis")  # surface[a][b]: a on x, b on y
            ax.contour(g, g, z.T, levels=10, colors="k", linewidths=0.4)
            fig.colorbar(cs, ax=ax, label="log10 loss")
            ax.plot([0], [0], "r+", ms=10)
            ax.set_xlabel("alpha (direction 1)")
            ax.set_ylabel("beta (direction 2)")
            ax.set_title(f"{model}: 2-D loss landscape", fontsize=10)
            written.append(_save(fig, folder / "landscape_2d.png"))
    written.append(save_arrays(result, folder / "sharpness.npz"))
    return written


def _save(fig, path: Path) -> Path:
    from ...core.images import save_figure

    return save_figure(fig, path)
