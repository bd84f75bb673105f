"""Reports: the JSON validates against the shipped schema; Markdown, step summary, HTML (rendered in Chromium)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess

import pytest

from tests.audit_fixtures import tiny_audit, tiny_options  # noqa: F401 - fixture

AREAS = ("sharpness", "exposure", "quantize", "fid")


def schema():
    from flatcheck.results import schema as report_schema

    return report_schema("report")


def validator():
    import jsonschema

    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


def test_schema_ships_in_the_package_and_matches_the_version():
    from flatcheck.auditing import SCHEMA_VERSION

    s = schema()
    assert s["properties"]["schema_version"]["pattern"] == "^1\\.[0-9]+$"
    assert SCHEMA_VERSION.startswith("1.")


def test_audit_json_validates_and_records_everything(tiny_audit):
    report, doc = tiny_audit
    errors = [f"{e.json_path}: {e.message}" for e in validator().iter_errors(doc)]
    assert not errors, errors[:5]
    assert [v["area"] for v in doc["verdicts"]] == list(AREAS)
    assert all(doc[a] is not None for a in AREAS), doc["verdicts"]
    env = doc["environment"]
    assert env["torch"] and env["diffusers"] and env["flatcheck"] and env["device"] == "cpu"
    assert (
        doc["options"]["samples"] == 4
        and doc["options"]["fid_features"] == "digits-cnn"
        and doc["options"]["data"] == "digits"
    )
    assert doc["bank"]["loss"]["stderr"] > 0 and doc["bank"]["n"] == 8
    assert doc["seeds"]["bank"] == doc["seeds"]["samples"] == 0
    # The JSON round-trips (no NaN, no tensors) and nothing private leaks into it.
    assert '"_samples"' not in json.dumps(doc) and '"_fp_samples"' not in json.dumps(doc)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.pop("verdicts"),
        lambda d: d["verdicts"][0].update(status="great"),
        lambda d: d["bank"]["loss"].update(stderr=-1.0),
        lambda d: d["bank"]["loss"].update(extra=1),
        lambda d: d.update(schema_version="2.0"),
        lambda d: d["options"].update(profile="fast"),
        lambda d: d.update(quantize=[1, 2]),
        lambda d: d["quantize"]["settings"][0].pop("sample_mse"),
        lambda d: d["fid"].update(value=3.0),
        lambda d: d["exposure"].update(runs=[]),
        lambda d: d["sharpness"].pop("loss"),
        lambda d: d["environment"]["peak_memory"].update(kind="vram"),
        lambda d: d["environment"]["peak_memory"]["by_phase"].update(inputs=-1),
    ],
)
def test_schema_rejects_broken_reports(tiny_audit, breakage):
    doc = copy.deepcopy(tiny_audit[1])
    breakage(doc)
    assert list(validator().iter_errors(doc))


def test_the_report_records_the_peak_memory_of_the_run_and_of_each_phase(tiny_audit):
    from flatcheck.auditing import selected
    from flatcheck.gate import lookup
    from flatcheck.report.html import audit_html
    from flatcheck.report.markdown import audit_markdown, run_rows

    report, doc = tiny_audit
    peak = doc["environment"]["peak_memory"]
    assert peak["kind"] in ("rss", "rss_since_start") and "resident set size" in peak["how"]  # a CPU run
    assert list(peak["by_phase"]) == ["inputs", *selected(tiny_options()), "bank_loss"]  # in run order
    assert peak["run_bytes"] >= max(peak["by_phase"].values()) > 0
    assert "reserved_run_bytes" not in peak  # CUDA only
    assert lookup(doc, "environment.peak_memory.run_bytes") == (peak["run_bytes"], None)  # a gate can hold it down
    row = dict(run_rows(doc))["peak memory"]
    assert "peak RSS" in row and "inputs " in row and "bank_loss " in row
    assert row in audit_markdown(doc) and row in audit_html(doc)


def test_markdown_has_verdicts_gate_paths_and_goes_to_the_step_summary(tiny_audit, tmp_path, monkeypatch):
    from rich.console import Console

    from flatcheck.report.writers import write_reports

    report, doc = tiny_audit
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = tmp_path / "out"
    written = write_reports(copy.copy(report), Console(file=open(tmp_path / "term.txt", "w"), width=120), out=out)
    md = (out / "audit.md").read_text()
    for v in doc["verdicts"]:
        assert v["line"] in md
    # Every estimate is shown with its uncertainty, under the path the gate accepts.
    w8 = doc["quantize"]["settings"][0]
    assert w8["name"] == "W8A8"
    assert (
        f"`quantize.settings.W8A8.sample_mse` | {w8['sample_mse']['value']:.4g} ± {w8['sample_mse']['stderr']:.2g}"
        in md
    )
    assert "(plots/exposure.png)" in md and (out / "plots" / "exposure.png").is_file()
    s = summary.read_text()
    assert s.startswith("earlier step\n") and "# flatcheck audit" in s  # appended, not overwritten
    assert not list(validator().iter_errors(json.loads((out / "audit.json").read_text())))
    assert written["artifacts"]["html"] == str(out / "audit.html")
    assert "exposure" in (tmp_path / "term.txt").read_text()


def test_no_step_summary_without_the_variable(tmp_path, monkeypatch):
    from flatcheck.report.markdown import write_step_summary

    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert write_step_summary("# x") is None


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_html_is_self_contained_and_renders(tiny_audit, tmp_path):
    import numpy as np
    from PIL import Image

    from flatcheck.report.html import audit_html
    from flatcheck.report.plots import make_plots

    report, doc = tiny_audit
    plots = make_plots(report, tmp_path / "plots")
    assert set(plots) == {"samples", "sharpness", "exposure", "quantize", "fid"}
    html = audit_html(doc, plots)
    assert html.count("src='data:image/png;base64,") == len(plots)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    page = tmp_path / "audit.html"
    page.write_text(html)
    shutil.rmtree(tmp_path / "plots")  # the page must not need them
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,2400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    img = np.asarray(Image.open(shot).convert("RGB")).astype(np.int32)
    assert img.shape[0] >= 2000 and img.shape[1] >= 900
    ink = (img.sum(-1) < 600).mean()  # share of pixels that are not (near) white
    colours = len(np.unique(img.reshape(-1, 3)[::7], axis=0))
    assert ink > 0.02, f"blank page? only {ink:.2%} non-white pixels"
    assert colours > 50, "no plots or badges rendered"
    # The embedded plots were decoded and drawn: matplotlib's default blue (#1f77b4) is on the page.
    blue = (np.abs(img - np.array([31, 119, 180])).max(-1) < 40).sum()
    assert blue > 200, f"only {blue} plot-blue pixels: plots not rendered"


def test_html_shows_plots_and_the_measures_tables_and_keeps_the_number_dump_for_last(tiny_audit, tmp_path):
    from html import escape

    from rich.console import Console
    from rich.table import Table

    from flatcheck.measures import REGISTRY
    from flatcheck.report.writers import write_reports
    from flatcheck.results import number_rows

    report, doc = tiny_audit
    out = tmp_path / "out"
    write_reports(copy.copy(report), Console(file=open(tmp_path / "term.txt", "w"), width=120), out=out)
    html = (out / "audit.html").read_text()
    # FD has a plot: written with the others and embedded in its own section.
    assert (out / "plots" / "fid.png").stat().st_size > 5000
    assert (
        html.index("<h2 id='fid'>") < html.index("<img alt='fid' src='data:image/png;base64,") < html.index("<h2>run")
    )
    # The number dump is one collapsed section after every plot and after the run table.
    assert html.count("<details") == 1 and "<details open" not in html
    dump = html.index("<details")
    assert dump > html.rindex("<figure") and dump > html.index("<h2>run</h2>")
    before, after = html[:dump], html[dump:]
    for area in AREAS:
        for r in number_rows(doc[area]):
            cell = f"<code>{escape(area + '.' + r.path)}</code>"
            assert cell in after and cell not in before, cell
        # Each measure's own tables (its command's view) are in its section, under its plot.
        start, end = before.index(f"<h2 id='{area}'>"), before.find("<h2", before.index(f"<h2 id='{area}'>") + 1)
        section = before[start:end]
        titles = [p.title.plain for p in REGISTRY[area].view(report.results[area], "") if isinstance(p, Table)]
        shown = [t for t in titles if t and f"<caption>{escape(t).replace(chr(10), '<br>')}" in section]
        assert titles and shown == [t for t in titles if t], area  # a title's line breaks are <br> in HTML


def _captured_figure(monkeypatch, draw):
    """The matplotlib figure `draw` saves, kept open to inspect."""
    import flatcheck.core.images as images

    figures = []
    monkeypatch.setattr(images, "save_figure", lambda fig, path, **kw: figures.append(fig) or path)
    draw()
    assert len(figures) == 1
    return figures[0]


@pytest.mark.parametrize("area", ["exposure", "fid"])
def test_plot_legends_are_as_large_as_the_tick_labels(tiny_audit, tmp_path, monkeypatch, area):
    """At the HTML's width (980 px) a 7-point legend was unreadable; legends now match the axes' ticks (10 pt)."""
    from flatcheck.measures import REGISTRY

    report, _ = tiny_audit
    fig = _captured_figure(monkeypatch, lambda: REGISTRY[area].plot(report.results[area], tmp_path / "p.png"))
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    texts = [t for legend in legends for t in legend.get_texts()]
    assert texts and min(t.get_fontsize() for t in texts) >= 10
    if area == "fid":  # the bootstrap distribution behind the interval, with the estimate
        ax = fig.axes[0]
        assert len(ax.patches) > 1 and any(
            abs(line.get_xdata()[0] - report.results["fid"].value.value) < 1e-9 for line in ax.get_lines()
        )
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_audit_says_where_it_wrote_each_report(tiny_audit, tmp_path):
    """Issue 27: `audit --html PATH` wrote the file and never said where."""
    import io

    from rich.console import Console

    from flatcheck.report.writers import write_reports

    report, _ = tiny_audit
    term = io.StringIO()
    md, html, js = tmp_path / "a.md", tmp_path / "a.html", tmp_path / "a.json"
    write_reports(copy.copy(report), Console(file=term, width=400), markdown=md, html=html, json=str(js))
    assert md.is_file() and html.is_file() and js.is_file()
    assert term.getvalue().rstrip().splitlines()[-1] == f"reports: {md}, {html}, {js}"


def test_fid_config_row_names_the_options_fid_scores_with(tiny_audit):
    """Issue 27: the run table's `fid config` row was empty (fid has no options of its own)."""
    from html import escape

    from flatcheck.report.html import audit_html
    from flatcheck.report.markdown import run_rows

    _, doc = tiny_audit
    assert doc["options"]["configs"]["fid"] == {}
    row = dict(run_rows(doc))["fid config"]
    o = doc["options"]
    assert row == (
        "no options of its own; scores with the run's ref=digits (the --data images), "
        f"fid_features={o['fid_features']}, fid_weights=None, fid_bootstrap={o['fid_bootstrap']}, "
        f"fid_kid_subsets={o['fid_kid_subsets']}"
    )
    assert f"<th>fid config</th><td>{escape(row)}</td>" in audit_html(doc)
