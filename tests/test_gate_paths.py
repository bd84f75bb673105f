"""Every gate path the project shows a user (README, examples, docstrings, error messages) exists in
a real report: a user who copies one into flatcheck.toml gets a number, not an error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.audit_fixtures import tiny_audit  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
PATH = re.compile(r"[\"'`]((?:bank|sharpness|exposure|quantize|fid)(?:\.[A-Za-z0-9_-]+|\[\d+\])+)[\"'`]")
FILES = ("*.png", "*.npz", "*.json", "*.md", "*.html")  # names like `exposure.png` are files, not paths


def shown_paths() -> dict[str, list[str]]:
    """path -> where it is shown."""
    sources = [
        ROOT / "README.md",
        *ROOT.glob("examples/**/*.md"),
        *ROOT.glob("examples/**/*.toml"),
        *ROOT.glob("examples/**/*.yml"),
        *(ROOT / "flatcheck").rglob("*.py"),
    ]
    found: dict[str, list[str]] = {}
    for f in sources:
        for m in PATH.finditer(f.read_text(encoding="utf-8")):
            path = m.group(1)
            if not any(Path(path).match(pattern) for pattern in FILES):
                found.setdefault(path, []).append(str(f.relative_to(ROOT)))
    from flatcheck.gate import EXAMPLE_PATH

    found.setdefault(EXAMPLE_PATH, []).append("flatcheck/gate.py (error messages)")
    return found


def test_the_docs_show_paths_at_all():
    paths = shown_paths()
    assert {"quantize.settings.W8A8.relative_mse", "sharpness.hessian.eigen.eigenvalues.0", "bank.loss"} <= set(paths)


@pytest.mark.parametrize("path", sorted(shown_paths()))
def test_every_shown_path_resolves_in_a_real_report(tiny_audit, path):
    from flatcheck.gate import lookup

    _, doc = tiny_audit
    value, _ = lookup(doc, path)  # InputError (the test fails) when the report has no such number
    assert value is not None, f"{path} is null in the report"
