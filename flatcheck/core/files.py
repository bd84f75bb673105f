"""What a checkpoint's files say, read without torch or any weight: JSON configs, safetensors headers (dtype
and shape of every tensor, checked against the file's size), and the libraries a model_index.json names."""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

# Weight files read by unpickling (refused unless --allow-pickle: loading a pickle can run arbitrary code)
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")

# safetensors' dtype codes -> torch's names (a code not listed is reported as written)
SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "C64": "complex64",
}


@dataclass(frozen=True)
class TensorEntry:
    """One stored tensor's dtype and shape, as a safetensors header lists it (its data is never read)."""

    dtype: str  # torch's name: float32, bfloat16 ...
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read '{path}': not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"cannot read '{path}': expected a JSON object")
    return data


def check_safetensors(path: Path) -> dict[str, TensorEntry]:
    """Header parse and size check: catches truncated or corrupt files without reading the data.
    Returns the header's tensors (name -> dtype and shape): what `info` counts parameters from."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("shorter than its 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise ValueError("header length exceeds the file")
            header = json.loads(fh.read(n))
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        end = check_entries(tensors)
        entries = {
            k: TensorEntry(SAFETENSORS_DTYPES.get(v["dtype"], str(v["dtype"])), tuple(int(d) for d in v["shape"]))
            for k, v in tensors.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, IndexError) as exc:
        raise InputError(f"corrupt safetensors file '{path}': {type(exc).__name__}: {exc}") from None
    if 8 + n + end != size:
        raise InputError(
            f"truncated or corrupt safetensors file '{path}': header expects {8 + n + end} bytes, file has {size}"
        )
    return entries


def check_entries(tensors: dict) -> int:
    """Each tensor entry as safetensors writes it: a known dtype, a shape of sizes >= 0, and data offsets that
    hold exactly its bytes, the entries tiling the data without gaps or overlaps. Returns the data's length."""
    spans = []
    for name, v in tensors.items():
        dtype, shape, offsets = v["dtype"], v["shape"], v["data_offsets"]  # KeyError / TypeError: not an entry
        if dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"tensor '{name}' has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"tensor '{name}' has shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ValueError(f"tensor '{name}' has data_offsets {offsets!r}")
        size = 1 if dtype.startswith(("F8", "BOOL")) else int(re.sub(r"\D", "", dtype)) // 8  # bytes per item
        if offsets[1] - offsets[0] != math.prod(shape) * size or offsets[0] < 0:
            raise ValueError(f"tensor '{name}': data_offsets {offsets} do not hold {shape} of {dtype}")
        spans.append(tuple(offsets))
    at = 0
    for start, stop in sorted(spans):
        if start != at:
            raise ValueError("the tensors' data_offsets leave gaps or overlap")
        at = stop
    return at


# The libraries a model_index.json component may come from: what diffusers itself loads without custom code.
# Any other name is a module shipped beside the weights (`["my_module", "MyUNet"]` loads my_module.py).
COMPONENT_LIBRARIES = ("diffusers", "transformers")


def check_component_sources(index: dict, where: Path) -> None:
    """InputError unless every component of a model_index.json comes from diffusers, transformers or one of
    diffusers' own pipeline modules (old pipelines name their safety checker ["stable_diffusion", ...]).
    Nothing is imported to decide it: the name is only compared."""
    from .diffusers_source import package_root

    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or len(entry) != 2 or entry[0] is None:
            continue
        library = entry[0]
        if library in COMPONENT_LIBRARIES:
            continue
        pipelines = package_root() / "pipelines" if package_root() is not None else None
        if (
            isinstance(library, str)
            and library.isidentifier()
            and pipelines is not None
            and (pipelines / library / "__init__.py").is_file()
        ):
            continue
        raise InputError(
            f"{where}: component '{name}' comes from {library!r}, not diffusers or transformers "
            "(code shipped beside the weights): custom code is never run"
        )


_FILE_HASH: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """Content hash of a file, memoised on (path, size, mtime) so a 100 MB weight file is read once per run."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASH:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _FILE_HASH[key] = h.hexdigest()
    return _FILE_HASH[key]


def forget_file_hashes() -> None:
    _FILE_HASH.clear()
