"""The one rich progress display: renders the progress protocol (core/progress.py) on a console."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def progress_display(con, transient: bool = True):
    """Yields progress(task, done, total): one bar per task, a task's bar closed when the next one starts.

    The display starts with the first report, so a run that fails before any work (a bad
    input) leaves the console untouched: its error stays the only line.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=con,
        transient=transient,
    )
    tasks: dict[str, int] = {}

    def update(task: str, done: int, total: int | None) -> None:
        if not tasks:
            bar.start()
        if task not in tasks:
            for other in tasks.values():  # stages run one after the other: the previous one is done
                bar.update(other, total=bar.tasks[other].completed)
            tasks[task] = bar.add_task(task, total=total)
        bar.update(tasks[task], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()
