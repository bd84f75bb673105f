"""Values in printed tables are text, never rich markup (issue 27, item 2)."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console
from rich.text import Text

from flatcheck.measures.tables import Table


def _render(renderable) -> str:
    con = Console(width=200, record=True, color_system=None)
    con.print(renderable)
    return con.export_text()


def test_bracketed_values_survive():
    t = Table(title="worst case [adaptive]")
    t.add_column("r")
    t.add_column("increase")
    t.add_row("0.003", "0.322 [x11.4]")
    t.add_row("[bold]0.01[/bold]", Text("styled on purpose", style="bold"))
    out = _render(t)
    assert "0.322 [x11.4]" in out and "[bold]0.01[/bold]" in out and "worst case [adaptive]" in out
    assert "styled on purpose" in out


def test_every_table_is_ours():
    """No module builds rich's Table directly (its str cells would be read as markup)."""
    root = Path(__file__).resolve().parents[1] / "flatcheck"
    direct = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "tables.py" and re.search(r"from rich\.table import|rich\.table\.Table", p.read_text())
    ]
    assert not direct, direct
