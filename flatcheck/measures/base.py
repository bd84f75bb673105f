"""What a measure is: the one contract between a measure package, the audit, the commands and the reports.

A measure package (measures/<name>/) holds everything about one measure: its config dataclass
(the only place its defaults live), its run function, its result dataclass, its verdict, its
audit profiles, its JSON schema fragment and its views (terminal tables, plots, files). It
exports one `Measure`, which measures/__init__.py names in the REGISTRY. Nothing outside the
package looks inside it: the audit, the commands and the reports go through these fields.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import InputError, OptionError

PROFILES = ("quick", "default", "full")


@dataclass
class Verdict:
    """One line per measure, read first: good | fair | poor (against a stated rule of thumb),
    info (no absolute scale: compare checkpoints or gate on a baseline), skipped or error."""

    area: str
    status: str
    line: str


def lazy(module: str, name: str) -> Callable:
    """`module.name`, imported when first called: a measure package's __init__ stays torch-free
    (the CLI's --help reads configs and the REGISTRY without loading torch)."""

    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


@dataclass
class Reading:
    """One number of one report that `rank` correlates (rank.extract), with its standard error."""

    label: str
    short: str  # a table's column header
    path: str  # where it is in the report (the gate's dotted path)
    value: float | None  # None: not finite in the report
    stderr: float | None = None  # None: no standard error (held fixed by the noise bootstrap)
    absolute: bool = False  # the quantity is |value|: value is the signed estimate
    bucket: str | None = None  # a timestep bucket's version ("t0-500"); None: the whole bank


@dataclass(frozen=True)
class Readings:
    """Which numbers of a measure's report section `rank` reads: sharpness measures (larger = sharper) or
    robustness outcomes (signed so that larger = more damage), each with its standard error."""

    kind: str  # "measures" or "outcomes"
    what: str  # e.g. "sharpness measures", for the note when a report lacks the section
    read: Callable[[dict], tuple[dict[str, Reading], list[str]]]  # read(section) -> (key -> Reading, notes)
    order: int = 50  # where its numbers come in rank's tables (quantization outcomes before exposure's)


def number(x) -> float | None:
    """A finite JSON number as a float; None for anything else (null, NaN written as a string, booleans)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def estimate(node) -> tuple[float | None, float | None]:
    """(value, stderr) of an Estimate node or a plain number."""
    if isinstance(node, dict):
        return number(node.get("value")), number(node.get("stderr"))
    return number(node), None


class Skipped(Exception):
    """Raised by a measure's run when the run's inputs cannot support it (e.g. FD without a
    reference): the audit records a 'skipped' verdict with this reason and goes on."""


@dataclass(frozen=True)
class Measure:
    name: str  # the area: JSON key, --skip value, command name
    title: str  # what it measures, in a few words
    config: type  # dataclass; a field named like a shared input (seed, batch_size...) takes the run's value
    run: Callable[..., Any]  # run(inputs, config, progress) -> result dataclass (never prints)
    verdict: Callable[[Any], Verdict]  # verdict(result) -> the one line
    view: Callable[..., list]  # view(result, model) -> rich renderables (command and audit alike)
    plot: Callable[[Any, Path], Path | None]  # plot(result, path) -> the PNG the reports embed (None: nothing to plot)
    save: Callable[..., list[Path]] | None = None  # save(result, folder, model) -> the files of `--out DIR`
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # audit profile -> config overrides
    uses_bank: bool = True  # needs the probe bank
    order: int = 50  # run order in the audit (a measure that makes the shared samples while watching runs first)
    cost: Callable[..., list] | None = (
        None  # cost(config, core.work.RunShape, net) -> [core.work.Work]: what it computes (the plan)
    )
    readings: Readings | None = None  # the numbers `rank` correlates (None: none)

    def make_config(
        self, profile: str = "default", shared: Mapping[str, Any] | None = None, given: Mapping[str, Any] | None = None
    ):
        """The config of a run: defaults, then the profile, then the shared inputs, then what the user gave.

        A config field named like a shared input (seed, batch_size, samples, steps, sampler) takes
        the run's value unless the user gave it; a tuple field takes a one-element tuple.
        """
        if profile not in PROFILES:
            raise InputError(f"unknown profile '{profile}' (use {', '.join(PROFILES)})")
        names = {f.name: f for f in dataclasses.fields(self.config)}
        given = dict(given or {})
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise OptionError(unknown[0], f"is not an option of {self.name} (it has: {', '.join(names)})")
        for key, value in given.items():
            given[key] = _checked(key, value, names[key])
        values = dict(self.profiles.get(profile, {}))
        for key, value in (shared or {}).items():
            if key in names and key not in given:
                default = names[key].default
                values[key] = (value,) if isinstance(default, tuple) and not isinstance(value, (tuple, list)) else value
        values.update(given)
        config = self.config(**values)
        check = getattr(config, "validate", None)
        return check() if check is not None else config


def _checked(name: str, value, f: dataclasses.Field):
    """A given config value with the type its field's default has (config files give lists for
    tuples); OptionError naming the field otherwise. Values of other types (objects) pass."""
    default = (
        f.default
        if f.default is not dataclasses.MISSING
        else f.default_factory()
        if f.default_factory is not dataclasses.MISSING
        else None
    )
    if value is None or default is None:
        return value
    if isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)):
            raise OptionError(name, f"must be a list (got {value!r})")
        return tuple(value) if isinstance(default, tuple) else list(value)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        return value
    if not ok:
        raise OptionError(name, f"must be {type(default).__name__} (got {type(value).__name__}: {value!r})")
    return value
