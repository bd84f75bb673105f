"""Errors that the CLI turns into one line on stderr and a documented exit code.

Exit codes:
    0  ok
    1  a gate threshold was crossed
    2  usage or input error (bad path, option, checkpoint)
    3  failure while running (out of memory, a measure that could not finish)
  130  interrupted (Ctrl-C); weights are restored before exiting
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3
EXIT_INTERRUPTED = 130


class FlatcheckError(Exception):
    """Base class: carries the exit code the CLI should use."""

    exit_code = EXIT_RUNTIME


class InputError(FlatcheckError):
    """The user's input is wrong: a path, an option value, a checkpoint."""

    exit_code = EXIT_USAGE


class RunError(FlatcheckError):
    """Something failed while measuring (e.g. out of memory)."""

    exit_code = EXIT_RUNTIME
