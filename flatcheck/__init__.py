"""flatcheck: audit a diffusers checkpoint's robustness.

Loss-surface sharpness, exposure-bias drift and quality under quantization,
measured on one shared probe bank. Measures return dataclasses and never print.
"""

__version__ = "0.1.0"

import logging as _logging


class _DropKernelHubNoise(_logging.Filter):
    # bitsandbytes looks for an optional CPU kernel from the Hub on import and warns
    # when it is absent; it then falls back to its own kernel, so the line is noise.
    def filter(self, record: _logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


_logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropKernelHubNoise())
