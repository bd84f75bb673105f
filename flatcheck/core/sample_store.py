"""Generated samples on disk: shards plus a manifest, resumable after an interruption.

Layout of a sample folder:
    manifest.json       what made the samples (model fingerprint, sampler and its config,
                        steps, seed, sample shape, dtype) and the list of finished shards
    shard-00000.npy     float32 [k, C, H, W], model space (latents for latent models),
    shard-00001.npy     samples start .. start+k-1 in index order

One shard is one sampling batch. A shard file is written atomically (temp file + rename)
and only then entered in the manifest (also atomic), so after Ctrl-C or a crash the
manifest lists exactly the finished shards and a rerun generates only what is missing:
no sample generated twice, none lost. A resumed run keeps the first run's shard size, so
every batch holds the same samples as in an uninterrupted run and the final set is
identical bit for bit. A folder made by another model, sampler, step count, seed, shape or
dtype is refused with one line rather than mixed; so is such a folder given to read samples from
(`--samples-from`, core.inputs), unless the user accepts it explicitly. The manifest also names the
model as the user gave it (`made_by`, outside the spec: the same weights elsewhere make the same samples).

In a run of several processes (core.dist: accelerate launch, torchrun) the folder belongs to the
main process: it alone reads the manifest and hands every process the same list of missing
shards, the processes generate them round by round (shard k of a round by process k), and the
main process gathers each round and writes its shards in order, each atomically as above. So a
resumed distributed run also generates only what is missing, no shard twice, and the shard files
equal a single process's bit for bit; the other processes need no shared file system.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import InputError

MANIFEST = "manifest.json"
FORMAT = "flatcheck-samples/1"


def model_fingerprint(net: torch.nn.Module) -> str:
    """Hash of the weights (names, dtypes, shapes, bytes): equal iff the state dicts are equal."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class SampleSpec:
    """Everything that decides the samples' values; two runs with equal specs give equal samples."""

    model: str  # model_fingerprint of the denoiser
    sampler: dict  # sampling.sampler_config(scheduler): class and config
    steps: int
    seed: int
    shape: tuple[int, ...]  # (C, H, W) of one sample
    dtype: str  # compute dtype of the network
    conditions: dict | None = None  # conditioning.describe(): labels/prompts and guidance (None: unconditional)

    def to_json(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "SampleSpec":
        return cls(
            d["model"],
            d["sampler"],
            int(d["steps"]),
            int(d["seed"]),
            tuple(d["shape"]),
            d["dtype"],
            d.get("conditions"),
        )

    @classmethod
    def of_run(cls, denoiser, scheduler, steps: int, seed: int) -> "SampleSpec":
        from .runtime import dtype_name
        from .sampling import sampler_config

        return cls(
            model_fingerprint(denoiser.net),
            sampler_config(scheduler),
            int(steps),
            int(seed),
            tuple(denoiser.sample_shape),
            dtype_name(denoiser.dtype),
            denoiser.conditioning.describe() if denoiser.conditioning is not None else None,
        )


def mismatch(have: SampleSpec, want: SampleSpec, made_by: str | None = None) -> str | None:
    """The first field that differs, described for the user; None when the specs agree.
    made_by: the model the folder names as its maker, said with its fingerprint."""
    if have.model != want.model:
        maker = f"{made_by}, " if made_by else ""
        return f"another model's weights: {maker}fingerprint {have.model[:12]}, not this model's {want.model[:12]}"
    if have.sampler["class"] != want.sampler["class"]:
        return f"sampler {have.sampler['class']}, not {want.sampler['class']}"
    if have.sampler != want.sampler:
        keys = sorted(
            k
            for k in set(have.sampler["config"]) | set(want.sampler["config"])
            if have.sampler["config"].get(k) != want.sampler["config"].get(k)
        )
        return f"another {want.sampler['class']} config ({', '.join(keys)} differ)"
    if have.conditions != want.conditions:
        return "other conditions (labels, prompts or guidance scale differ)"
    for name in ("steps", "seed", "shape", "dtype"):
        a, b = getattr(have, name), getattr(want, name)
        if a != b:
            return f"{name} {a}, not {b}"
    return None


@dataclass
class Shard:
    file: str
    start: int
    count: int
    sha256: str


class SampleStore:
    """A folder of samples for one SampleSpec. Open it with `SampleStore.open(folder, spec)`."""

    def __init__(
        self, folder: Path, spec: SampleSpec, shard_size: int, shards: list[Shard], made_by: str | None = None
    ):
        self.folder = folder
        self.spec = spec
        self.shard_size = shard_size
        self.shards = shards
        self.made_by = made_by  # the model as the user named it when the folder was made (None: not recorded)

    # -- opening
    @classmethod
    def open(cls, folder: str | Path, spec: SampleSpec, shard_size: int, made_by: str | None = None) -> "SampleStore":
        """Create the folder, or reopen it for the same spec (its shard size wins). InputError on a mismatch."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise InputError(f"sample folder '{folder}' is a file")
        path = folder / MANIFEST
        if not path.exists():
            if folder.exists() and any(folder.iterdir()):
                raise InputError(f"sample folder '{folder}' is not empty and holds no {MANIFEST}: use a new folder")
            if shard_size < 1:
                raise InputError(f"shard size must be >= 1 (got {shard_size})")
            store = cls(folder, spec, shard_size, [], made_by)
            store._write_manifest()
            return store
        store = cls.read(folder)
        why = mismatch(store.spec, spec, store.made_by)
        if why is not None:
            raise InputError(
                f"sample folder '{folder}' holds samples of another run ({why}): use a new folder or delete it"
            )
        return store

    @classmethod
    def read(cls, folder: str | Path) -> "SampleStore":
        """An existing folder, whatever made it (e.g. to load samples for FID)."""
        folder = Path(folder)
        try:
            m = json.loads((folder / MANIFEST).read_text())
            if m.get("format") != FORMAT:
                raise InputError(f"'{folder / MANIFEST}' is not a flatcheck sample manifest ({FORMAT})")
            spec = SampleSpec.from_json(m["spec"])
            shards = [Shard(**s) for s in m["shards"]]
            shard_size = int(m["shard_size"])
            made_by = m.get("made_by")
        except FileNotFoundError:
            raise InputError(f"'{folder}' holds no {MANIFEST}: not a flatcheck sample folder") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"'{folder / MANIFEST}' is damaged ({type(exc).__name__}: {exc}): delete the folder"
            ) from None
        store = cls(folder, spec, shard_size, shards, made_by)
        store._drop_missing()
        return store

    # -- state
    def missing(self, n: int) -> list[tuple[int, int]]:
        """The shards still to generate for samples 0..n-1, as (start, end): each up to the next shard boundary."""
        out, start = [], self.count
        while start < n:
            end = min(n, (start // self.shard_size + 1) * self.shard_size)
            out.append((start, end))
            start = end
        return out

    @property
    def count(self) -> int:
        """Samples stored: always the prefix 0 .. count-1."""
        return sum(s.count for s in self.shards)

    def load(self, n: int | None = None, verify: bool = True) -> torch.Tensor:
        """The first n samples (all by default) as float32 [n, C, H, W]; checksums verified."""
        n = self.count if n is None else n
        if n > self.count:
            raise InputError(f"sample folder '{self.folder}' holds {self.count} samples, {n} asked")
        out, have = [], 0
        for s in self.shards:
            if have >= n:
                break
            data = (self.folder / s.file).read_bytes()
            if verify and hashlib.sha256(data).hexdigest() != s.sha256:
                raise InputError(
                    f"'{self.folder / s.file}' does not match its checksum in the manifest: "
                    "delete the folder and regenerate"
                )
            arr = np.load(io.BytesIO(data), allow_pickle=False)
            out.append(torch.from_numpy(arr)[: n - have])
            have += len(out[-1])
        return torch.cat(out) if out else torch.empty((0, *self.spec.shape))

    # -- writing
    def add_shard(self, start: int, samples: torch.Tensor) -> None:
        if start != self.count:
            raise ValueError(f"shard starts at {start}, store holds {self.count}")
        arr = np.ascontiguousarray(samples.detach().float().cpu().numpy())
        name = f"shard-{start // self.shard_size:05d}.npy"
        if start % self.shard_size:  # the tail of a partial last shard, extended by a later run
            name = f"shard-{start // self.shard_size:05d}-{start % self.shard_size:05d}.npy"
        path = self.folder / name
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        self.shards.append(Shard(name, start, len(arr), hashlib.sha256(path.read_bytes()).hexdigest()))
        self._write_manifest()

    def _write_manifest(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        m = {
            "format": FORMAT,
            "spec": self.spec.to_json(),
            **({"made_by": self.made_by} if self.made_by is not None else {}),
            "shard_size": self.shard_size,
            "count": self.count,
            "shards": [asdict(s) for s in self.shards],
        }
        tmp = self.folder / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(m, indent=1) + "\n")
        tmp.replace(self.folder / MANIFEST)

    def _drop_missing(self) -> None:
        """Keep the longest prefix of shards whose files exist with the recorded size."""
        kept, expect = [], 0
        per_sample = 4 * int(np.prod(self.spec.shape))
        for s in self.shards:
            p = self.folder / s.file
            if s.start != expect or not p.is_file() or p.stat().st_size < s.count * per_sample:
                break
            kept.append(s)
            expect += s.count
        self.shards = kept


def generate(
    folder: str | Path | None,
    denoiser,
    scheduler,
    steps: int,
    n: int,
    seed: int,
    *,
    batch_size: int = 64,
    hooks: Sequence = (),
    progress: Callable[[int], None] | None = None,
) -> SampleStore | None:
    """Make sure `folder` holds samples 0..n-1 of this run, generating only the missing ones.

    The first run's batch size becomes the shard size; progress(k) is called after each
    shard is safely on disk (k samples). Returns the store (load() gives the tensor).
    Asking later for more samples than a first run made extends its last, partial shard
    with a smaller batch: those samples then equal an uninterrupted run's within float noise.

    Several processes (core.dist): every process calls this; the main process alone opens the
    folder (`folder` matters there only), the missing shards are split by rounds of one shard per
    process (step hooks, which must watch every batch, make every process generate every shard),
    and the main process writes them. Returns the store on the main process, None on the others:
    `load_everywhere` gives every process the samples.
    """
    from . import dist
    from .sampling import check_run, sample_batch

    check_run(steps, batch_size, n)
    store: SampleStore | None = None

    def plan() -> list[tuple[int, int]]:  # the main process's view of the folder, handed to all
        nonlocal store
        spec = SampleSpec.of_run(denoiser, scheduler, steps, seed)
        store = SampleStore.open(folder, spec, batch_size, made_by=getattr(denoiser, "source", None))
        return store.missing(n)

    todo = dist.from_main(plan)

    def shard(start: int, end: int) -> torch.Tensor:
        from .oom import batched

        # A shard that does not fit on the GPU is generated in halves (core.oom); the shard is the same.
        return torch.cat(
            batched(
                lambda pos: sample_batch(denoiser, scheduler, steps, [start + p for p in pos], seed, hooks=hooks),
                range(end - start),
                end - start,
                "sampling",
                split=False,
            )
        )

    per_round = 1 if dist.world() == 1 or hooks else dist.world()
    for first in range(0, len(todo), per_round):
        batch = todo[first : first + per_round]
        if per_round == 1:
            made = [shard(*batch[0])]
        else:
            mine = shard(*batch[dist.rank()]) if dist.rank() < len(batch) else None
            made = dist.gather_to_main(mine)  # in process order = shard order; None off the main process
        for k, (start, end) in enumerate(batch):
            if store is not None:
                store.add_shard(start, made[k])
            if progress:
                progress(end - start)
    return store


def load_everywhere(store: SampleStore | None, n: int) -> torch.Tensor:
    """The first n samples of what `generate` returned, on every process (read by the main one, sent to the others)."""
    from . import dist

    return dist.from_main(lambda: store.load(n))
