"""Reference statistics for FD/FID/KID, and their cache.

--ref is one of
  digits            scikit-learn's digits at the model's resolution (bundled, no network)
  patches           the RGB patches' train split (flatcheck.core.patches; needs scikit-image)
  patches-test      their test split (other photographs)
  FOLDER            a folder of images (png/jpg/...; searched recursively)
  FILE.npz / .npy   an array of images ([N,H,W,C], [N,C,H,W] or [N,H,W]; uint8 or floats)
  STATS.npz         an .npz holding `mu` and `sigma` (pytorch-fid, ADM's reference batches):
                    used as is, no feature pass, no KID
  NAME              a torch-fidelity registered dataset (cifar10-train, stl10-test, ...)

Reference images are brought to the model's sample shape (channels, resolution) exactly as
samples are, then rounded to uint8 like saved samples. Their statistics are cached under
$FLATCHECK_CACHE/fid (default ~/.cache/flatcheck/fid), keyed by the reference's content
hash, the feature space (extractor, layer, weight file hash) and the resolution, and written
atomically (temp file + rename), so a second run, or a second call in the same run, skips
the reference's feature pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import InputError
from ..cache import cache_root, write_npz_atomic
from ..data import IMAGE_SUFFIXES, iter_folder
from ..files import file_sha256
from .extractors import Extractor
from .frechet import gaussian_stats

CACHE_VERSION = 1
KID_MAX_ROWS = 10000  # reference feature rows kept for KID (a seeded subset beyond this)


@dataclass
class ReferenceInfo:
    """What the reference was, for reports (no arrays)."""

    spec: str
    kind: str  # digits | patches | folder | images | stats | dataset
    num_images: int | None  # None for a stats file that does not say
    content_hash: str | None
    cache: str  # computed | disk | memory | stats-file | computed (cache not writable: ...)
    cache_path: str | None = None


@dataclass
class ReferenceStats:
    info: ReferenceInfo
    mu: np.ndarray = field(repr=False)
    sigma: np.ndarray = field(repr=False)
    features: np.ndarray | None = field(default=None, repr=False)  # rows for KID; None for a stats file


_MEMORY: dict[str, ReferenceStats] = {}


def clear_memory_cache() -> None:
    _MEMORY.clear()


def reference_stats(
    spec: str,
    extractor: Extractor,
    shape: tuple[int, int, int],
    *,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> ReferenceStats:
    """Statistics (and KID rows) of the reference `spec` in `extractor`'s feature space at sample `shape` (C, H, W)."""
    kind, source = _classify(spec)
    if kind == "stats":
        return _stats_file(spec, source)
    content = _content_hash(kind, source, shape)
    key_fields = {
        "v": CACHE_VERSION,
        "kind": kind,
        "content": content,
        "features": extractor.fingerprint,
        "shape": list(shape),
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:32]
    if use_cache and key in _MEMORY:
        hit = _MEMORY[key]
        return ReferenceStats(_replace(hit.info, spec=spec, cache="memory"), hit.mu, hit.sigma, hit.features)
    path = (Path(cache_dir) if cache_dir is not None else cache_root()) / "fid" / f"{extractor.features}-{key}.npz"
    if use_cache and path.is_file():
        loaded = _read_cache(path, spec, kind, content)
        if loaded is not None:
            _MEMORY[key] = loaded
            return loaded

    if kind == "folder":  # streamed: a large reference folder is never held whole (core.data.iter_folder)
        from .. import dist

        # chunks of 4 batches per process: Extractor splits each chunk into blocks of 4 batches across processes
        chunk = batch_size * 4 * dist.world()
        feats = extractor.extract_stream((_uint8(x) for x in iter_folder(source, shape, chunk)), batch_size)
    elif kind == "dataset":
        feats = extractor.extract(_dataset_uint8(source, shape), batch_size)
    else:  # bundled sets and image files: fitted to the samples' size a chunk at a time (core.data.iter_images)
        from .. import dist
        from ..data import iter_images

        chunk = batch_size * 4 * dist.world()
        try:
            feats = extractor.extract_stream((_uint8(x) for x in iter_images(str(source), shape, chunk)), batch_size)
        except InputError as exc:  # data.py speaks of --data; here the option is --ref
            raise InputError(str(exc).replace("--data", "--ref")) from None
    if len(feats) < 2:
        raise InputError(f"--ref '{spec}' holds {len(feats)} image(s); need at least 2")
    mu, sigma = gaussian_stats(feats)
    kid_rows = feats
    if len(feats) > KID_MAX_ROWS:
        keep = np.sort(np.random.default_rng(0).choice(len(feats), KID_MAX_ROWS, replace=False))
        kid_rows = feats[keep]
    info = ReferenceInfo(spec, kind, len(feats), content, "computed", str(path))
    if use_cache:
        try:
            write_npz_atomic(
                path,
                mu=mu,
                sigma=sigma,
                features=kid_rows.astype(np.float32),
                n=np.int64(len(feats)),
                kind=np.str_(kind),
                content=np.str_(content),
            )
        except OSError as exc:
            info.cache, info.cache_path = f"computed (cache not writable: {exc.strerror or exc})", None
    out = ReferenceStats(info, mu, sigma, kid_rows)
    if use_cache:
        _MEMORY[key] = out
    return out


def _replace(info: ReferenceInfo, **kw) -> ReferenceInfo:
    from dataclasses import replace

    return replace(info, **kw)


# ------------------------------------------------------------------ what the spec is
def check_reference(spec: str) -> str:
    """The reference's kind (digits, patches, folder, images, stats, dataset); InputError before any work if it is
    unusable."""
    return _classify(spec)[0]


def _classify(spec: str) -> tuple[str, object]:
    from ..paths import BUNDLED_DATA, reference_file

    if not spec:
        raise InputError(
            "--ref is empty (give an image folder, an .npz/.npy file, a stats .npz, 'digits', "
            "or a torch-fidelity dataset)"
        )
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_dir():
            return "folder", path
        if path.suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as z:
                    keys = set(z.files)
            except Exception as exc:  # noqa: BLE001 - not a zip, truncated...
                raise InputError(f"cannot read --ref '{spec}': {str(exc).splitlines()[0]}") from None
            return ("stats" if {"mu", "sigma"} <= keys else "images"), path
        reference_file(spec, path)
        return "images", path
    if spec in BUNDLED_DATA:
        return ("digits" if spec == "digits" else "patches"), spec
    from torch_fidelity.registry import DATASETS_REGISTRY

    if spec in DATASETS_REGISTRY:
        return "dataset", spec
    raise InputError(
        f"--ref '{spec}' is not a file or folder, and not 'digits', 'patches', 'patches-test' or a torch-fidelity "
        f"dataset ({', '.join(DATASETS_REGISTRY)})"
    )


def _content_hash(kind: str, source, shape) -> str:
    h = hashlib.sha256(kind.encode())
    if kind == "folder":
        files = sorted(p for p in Path(source).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"--ref folder '{source}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for p in files:  # names and bytes: a renamed, added or edited image changes the key
            h.update(str(p.relative_to(source)).encode() + b"\0" + file_sha256(p).encode())
    elif kind == "images":
        h.update(file_sha256(Path(source)).encode())
    elif kind == "digits":
        from ..datasets import digits_table

        h.update(np.ascontiguousarray(digits_table()[0]).tobytes())
    elif kind == "patches":
        from ..patches import rgb_patches

        h.update(str(source).encode() + rgb_patches("train" if source == "patches" else "test").numpy().tobytes())
    else:  # a registered dataset is pinned by its name (torch-fidelity checks the download's hash)
        h.update(str(source).encode())
    return h.hexdigest()


# ------------------------------------------------------------------ loading images
def _dataset_uint8(source, shape) -> torch.Tensor:
    """A torch-fidelity dataset as uint8 [N, C, H, W] at the samples' shape (same resize and rounding as samples)."""
    from ..data import _fit

    return _uint8(_fit(_dataset_images(str(source)).float() / 127.5 - 1, *shape))


def _uint8(x: torch.Tensor) -> torch.Tensor:
    """float [N, C, H, W] in [-1, 1] -> uint8 [N, C, H, W], rounded as samples are."""
    from ..images import to_uint8

    return torch.from_numpy(to_uint8(x)).permute(0, 3, 1, 2).contiguous()


def _dataset_images(name: str) -> torch.Tensor:
    from torch_fidelity.registry import DATASETS_REGISTRY

    root = Path(torch.hub.get_dir()).parent / "fidelity_datasets"
    try:
        root.mkdir(parents=True, exist_ok=True)
        ds = DATASETS_REGISTRY[name](str(root), True)
    except Exception as exc:  # noqa: BLE001 - offline downloads fail with assorted errors
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise InputError(
            f"torch-fidelity dataset '{name}' is not available ({first}); download it once online into {root}, "
            "or pass the images as a folder or .npz"
        ) from None
    return torch.stack([ds[i] for i in range(len(ds))])


# ------------------------------------------------------------------ stats files and the cache
def _stats_file(spec: str, path: Path) -> ReferenceStats:
    with np.load(path, allow_pickle=False) as z:
        mu, sigma = np.asarray(z["mu"], np.float64), np.asarray(z["sigma"], np.float64)
        n = int(z["n"]) if "n" in z.files and np.asarray(z["n"]).size == 1 else None
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise InputError(f"--ref '{spec}': mu must be [D] and sigma [D, D] (got {mu.shape} and {sigma.shape})")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise InputError(f"--ref '{spec}': mu or sigma holds NaN or Inf")
    return ReferenceStats(ReferenceInfo(spec, "stats", n, file_sha256(path), "stats-file"), mu, sigma, None)


def _read_cache(path: Path, spec: str, kind: str, content: str) -> ReferenceStats | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["content"]) != content:
                return None
            mu, sigma, feats, n = z["mu"], z["sigma"], z["features"].astype(np.float64), int(z["n"])
    except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, never trusted
        return None
    return ReferenceStats(ReferenceInfo(spec, kind, n, content, "disk", str(path)), mu, sigma, feats)
