"""flatcheck's disk cache: $FLATCHECK_CACHE (default ~/.cache/flatcheck), one folder per kind.

fid/      reference statistics (core.fd.reference)
latents/  --data images encoded by a latent model's autoencoder (core.probes.encode_images)
Files are written atomically (temp file + rename), so a reader sees the old file or the whole new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def cache_root() -> Path:
    env = os.environ.get("FLATCHECK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "flatcheck"


def write_npz_atomic(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)  # readers see the old file or the whole new one, never half of one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
