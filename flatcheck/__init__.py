"""flatcheck: audit a diffusers checkpoint's robustness.

Loss-surface sharpness, exposure-bias drift and quality under quantization,
measured on one shared probe bank. Measures return dataclasses and never print.
"""

__version__ = "0.1.0"

import logging as _logging

from .errors import FlatcheckError, InputError


class _DropKernelHubNoise(_logging.Filter):
    # bitsandbytes looks for an optional CPU kernel from the Hub on import and warns
    # when it is absent; it then falls back to its own kernel, so the line is noise.
    def filter(self, record: _logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


_logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropKernelHubNoise())

# The Python API (flatcheck/api.py), imported on first use: `import flatcheck` and the CLI's --help stay torch-free.
_API = ("load", "describe", "audit", "sharpness", "exposure", "quantize", "fid", "every_n_steps")
__all__ = [*_API, "AuditReport", "AuditOptions", "FlatcheckError", "InputError", "__version__"]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in ("AuditReport", "AuditOptions"):
        from . import auditing

        return getattr(auditing, name)
    raise AttributeError(f"module 'flatcheck' has no attribute {name!r}")
