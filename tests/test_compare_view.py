"""compare in the terminal: the rows that differ, readable at any width; the JSON and Markdown keep every row."""

from __future__ import annotations

import copy
import io
import re

import pytest

from tests.audit_fixtures import tiny_audit, tiny_options  # noqa: F401 - fixture

NAMES = ["./runs/baseline", "./runs/sharpness-aware"]


@pytest.fixture(scope="module")
def comparison(tiny_audit):  # noqa: F811 - fixture
    """The tiny audit beside a copy whose measured estimates are 10% larger: its settings (seeds, sizes,
    radii: plain numbers) are equal in both."""
    from flatcheck.compare import compare_reports
    from flatcheck.results import document, is_estimate

    doc = tiny_audit[1]
    other = copy.deepcopy(doc)

    def grow(node):
        if is_estimate(node) and isinstance(node.get("value"), float):
            node["value"] *= 1.1
        elif isinstance(node, dict):
            for v in node.values():
                grow(v)
        elif isinstance(node, list):
            for v in node:
                grow(v)

    grow(other)
    return document("compare", compare_reports([doc, other], NAMES))


def render(comparison: dict, width: int) -> str:
    from rich.console import Console

    from flatcheck.report.terminal import compare_renderable

    con = Console(file=io.StringIO(), width=width, color_system=None)
    con.print(compare_renderable(comparison))
    return con.file.getvalue()


def split(comparison: dict):
    from flatcheck.report.terminal import is_constant

    shown = [r for r in comparison["rows"] if not is_constant(r)]
    constant = [r for r in comparison["rows"] if is_constant(r)]
    return shown, constant


def tokens(text: str) -> set[str]:
    return set(re.split(r"[\s│┃]+", text))


def test_the_comparison_has_settings_equal_in_both_and_numbers_that_differ(comparison):
    shown, constant = split(comparison)
    paths = {r["path"] for r in constant}
    assert {"sharpness.seed", "quantize.settings.W8A8.wbits"} <= paths
    assert "bank.loss" in {r["path"] for r in shown} and len(shown) > 20


@pytest.mark.parametrize("width", [80, 200])
def test_the_terminal_shows_what_differs_whole_at_80_and_200_columns(comparison, width):
    from flatcheck.report.terminal import MIN_METRIC

    text = render(comparison, width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    shown, constant = split(comparison)
    words = tokens(text)
    for r in shown:  # each metric's name on one line, not wrapped letter by letter
        assert r["path"] in words, r["path"]
    for r in constant:
        assert r["path"] not in words, f"{r['path']} is equal in both models but listed"
    assert f"{len(constant)} equal in every model" in " ".join(text.split())
    assert "--json and --markdown" in " ".join(text.split())
    # Every value and every difference whole on its line (a cell squeezed to a few characters is cut or wrapped).
    for r in shown:
        for cell in r["text"]:
            assert any(cell in line for line in lines), cell
    # No column of a table narrower than 8 characters; the metric column, if there is one, at its minimum.
    for line in lines:
        if line.startswith("┏"):
            columns = [len(c) for c in line[1:-1].split("┳")]
            assert min(columns) >= 8, line
    numbers = [line for line in lines if line.startswith("┃ metric")]
    if numbers:
        longest = max(len(r["path"]) for r in shown)
        assert len(numbers[0].split("┃")[1]) >= min(MIN_METRIC, longest) + 2


@pytest.mark.parametrize("width", range(60, 241, 6))
def test_at_every_width_the_values_stay_whole_and_the_names_distinct(comparison, width):
    """Between the layouts (one table, names shortened from the left, a line per metric), nothing is cut."""
    from flatcheck.report.terminal import shorten_path

    text = render(comparison, width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    shown, _ = split(comparison)
    for r in shown:
        for cell in r["text"]:
            assert any(cell in line for line in lines), (width, cell)
    words = tokens(text)
    labels = []
    for r in shown:
        label = next(
            (
                s
                for s in (shorten_path(r["path"], k, i) for k in range(width, 0, -1) for i in (True, False))
                if s in words
            ),
            None,
        )
        assert label is not None, (width, r["path"])
        labels.append(label)
    assert len(set(labels)) == len(labels), width


def test_shorten_path_cuts_from_the_left():
    from flatcheck.report.terminal import shorten_path

    path = "sharpness.average.adaptive.points.0.increase"
    assert shorten_path(path, 60) == path
    assert shorten_path(path, 36) == "s.average.adaptive.points.0.increase"
    assert shorten_path(path, 30) == "s.a.adaptive.points.0.increase"
    assert shorten_path(path, 15) == "…a.p.0.increase"
    assert shorten_path(path, 30, initials=False) == "…adaptive.points.0.increase"
    assert all(len(shorten_path(path, w)) <= w for w in range(1, 50))


def test_json_and_markdown_keep_every_row(comparison, tiny_audit):  # noqa: F811 - fixture
    from flatcheck.report.markdown import compare_markdown
    from flatcheck.results import number_rows

    doc = tiny_audit[1]
    expected = [r.path for r in number_rows(doc["bank"]["loss"], "bank.loss")]
    for area in ("sharpness", "exposure", "quantize", "fid"):
        expected += [r.path for r in number_rows(doc[area], area)]
    assert [r["path"] for r in comparison["rows"]] == expected
    md = compare_markdown(comparison)
    for path in expected:
        assert f"`{path}`" in md
