"""One progress protocol for the engine and every measure.

    progress(task, done, total)

`task` names what is running ("exposure", "quantize: W4A4", "sharpness: worst case"), `done` is
the number of units finished so far in that task (a running count, never an increment) and
`total` the units planned (None while unknown). Units are whatever the task counts: images,
Hessian-vector products, network calls x samples. A progress function may raise (Ctrl-C): the
measures restore the weights and let it through. Rendering is the report layer's business
(report/progress.py); measures only call the function.
"""

from __future__ import annotations

from typing import Callable, Optional

Progress = Callable[[str, int, Optional[int]], None]


def silent(task: str, done: int, total: int | None) -> None:
    """The progress function of a run nobody watches."""


class Counter:
    """Counts increments into the protocol's running total: `c = Counter(progress, "fid", 64); c.add(8)`."""

    def __init__(self, progress: Progress | None, task: str, total: int | None = None):
        self.progress, self.task, self.total, self.done = progress or silent, task, total, 0

    def add(self, k: int = 1) -> None:
        self.done += k
        self.progress(self.task, min(self.done, self.total) if self.total else self.done, self.total)

    def stage(self, task: str, total: int | None = None) -> "Counter":
        """A fresh counter for the next stage of the same run."""
        return Counter(self.progress, task, total)
