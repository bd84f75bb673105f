"""The evidence files' tables are what their committed runs say (examples/evidence/make.sh)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

EVIDENCE = Path(__file__).resolve().parent.parent / "examples" / "evidence"


def _render_module():
    spec = importlib.util.spec_from_file_location("evidence_render", EVIDENCE / "render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not (EVIDENCE / "runs").is_dir(), reason="no committed evidence runs")
def test_committed_tables_equal_a_render_of_the_committed_runs(tmp_path):
    render = _render_module()
    for name in render.FILES:
        shutil.copy(EVIDENCE / name, tmp_path / name)
    render.render_all(EVIDENCE / "runs", tmp_path)
    for name in render.FILES:
        assert (tmp_path / name).read_text() == (EVIDENCE / name).read_text(), (
            f"{name}: tables differ from runs/ (run make.sh)"
        )
        assert "<!-- evidence:" in (tmp_path / name).read_text()


def test_a_marker_without_a_table_is_an_error(tmp_path):
    render = _render_module()
    for name in render.FILES:
        shutil.copy(EVIDENCE / name, tmp_path / name)
    with open(tmp_path / "fid.md", "a") as f:
        f.write("\n<!-- evidence:no-such-table -->\n<!-- /evidence -->\n")
    with pytest.raises(SystemExit, match="no-such-table"):
        render.render_all(EVIDENCE / "runs", tmp_path)
