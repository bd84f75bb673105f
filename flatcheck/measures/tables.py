"""rich tables whose string cells are text, never markup.

rich reads square brackets in a str cell as a style tag: a sharpness cell `0.322 [x11.4]` was shown as
`0.322`, the factor dropped without a word. Every table flatcheck prints is this one: str cells and
titles are shown as they are; a cell that wants a style passes a rich Text.
"""

from __future__ import annotations

from rich.table import Table as _RichTable
from rich.text import Text


class Table(_RichTable):
    def __init__(self, *columns, title=None, **kwargs):
        if isinstance(title, str):
            title = Text(title, style="table.title")
        super().__init__(*columns, title=title, **kwargs)

    def add_row(self, *renderables, **kwargs) -> None:
        super().add_row(*(Text(r) if isinstance(r, str) else r for r in renderables), **kwargs)
