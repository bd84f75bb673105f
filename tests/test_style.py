"""The code style is checked by ruff, configured in pyproject.toml ([tool.ruff]): line length 120,
pycodestyle errors and warnings, pyflakes and import order (flatcheck first-party)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = [name for name in ("flatcheck", "tests", "benchmarks", "examples") if (ROOT / name).is_dir()]

needs_ruff = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None,
    reason="ruff is not installed (pip install -e '.[test]' installs it)",
)


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_ruff
def test_ruff_check_passes():
    result = ruff(*CHECKED)
    assert result.returncode == 0, f"ruff check {' '.join(CHECKED)} failed:\n{result.stdout}{result.stderr}"


@needs_ruff
def test_ruff_check_can_fail(tmp_path):
    """The check is not vacuous: with the repository's configuration, a long line and unsorted imports are reported."""
    bad = tmp_path / "bad.py"
    long_line = 'TEXT = "' + "word " * 38 + '"'
    assert len(long_line) >= 190
    bad.write_text("import sys\nimport os\n\nprint(os, sys)\n" + long_line + "\n")
    result = ruff("--config", str(ROOT / "pyproject.toml"), str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "E501" in result.stdout, result.stdout
    assert "I001" in result.stdout, result.stdout
