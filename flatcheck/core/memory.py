"""Memory, measured two ways: the process's peak during a phase, and the tensors that ops create.

    PeakMemory(device)       the peak memory of the process during a block, as the device counts it:
                             on CUDA the caching allocator's max allocated (and reserved) bytes, on a
                             CPU the peak resident set size. What reports and benchmarks record.
    LiveTensors(min_bytes)   a dispatch mode that follows every storage an op creates inside it until
                             that storage dies: bytes alive now and at the peak, and how many storages
                             of at least min_bytes are alive (now, at most, and at the byte peak).
    current_rss()            this process's resident set size now (anonymous_rss: without mapped files).
    process_peak(device)     this process's peak since it started, as the device counts it, including
                             what PeakMemory's resets made the kernel or the allocator forget.

The two answer different questions on purpose. PeakMemory sees everything the process holds
(allocator caches, Python objects, libraries, kernel workspaces) but needs the real device and real
allocations. LiveTensors sees only tensors made by ops inside its block, exactly, on any device,
meta included: it can size a network's activations before anything is allocated, and a test can
count the parameter-sized vectors a measure keeps alive at its peak.
"""

from __future__ import annotations

import sys
import threading
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# ---------------------------------------------------------------------------- the process's peak
_CLEAR_REFS = "/proc/self/clear_refs"
_clear_refs_works: bool | None = None  # None until first tried
_forgotten: dict[tuple, int] = {}  # counter -> the highest high-water mark a reset erased (nothing else keeps it)
_OPEN: list["PeakMemory"] = []  # the blocks we are inside, outermost first


def _status_bytes(field: str, path: str = "/proc/self/status") -> int | None:
    """A 'kB' line of /proc/self/status (VmRSS, VmHWM), or of another /proc file such as /proc/meminfo
    (MemAvailable), in bytes; None where there is no /proc."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


_BASELINE: list[int] = []  # RSS before the last checkpoint's weights were loaded


def mark_baseline() -> None:
    """Note the process's RSS now, before a checkpoint's weights load: a memory plan's baseline
    (the libraries, the interpreter, whatever this process held before this run)."""
    rss = current_rss()
    if rss is not None:
        _BASELINE[:] = [rss]


def baseline_rss() -> int:
    """The RSS noted by mark_baseline (the current RSS when nothing was noted)."""
    return _BASELINE[0] if _BASELINE else (current_rss() or 0)


def meminfo_bytes(field: str) -> int | None:
    """A field of /proc/meminfo (MemAvailable ...) in bytes; None where there is none."""
    return _status_bytes(field, "/proc/meminfo")


def current_rss() -> int | None:
    """This process's resident set size now, in bytes (Linux VmRSS); None where /proc is not there."""
    return _status_bytes("VmRSS")


def anonymous_rss() -> int | None:
    """The part of this process's RSS that is its own (Linux RssAnon + RssShmem): the rest is mapped
    files (e.g. memory-mapped safetensors), which /proc/meminfo's MemAvailable already counts as
    reclaimable page cache."""
    anon, shmem = _status_bytes("RssAnon"), _status_bytes("RssShmem")
    return None if anon is None else anon + (shmem or 0)


_LIBC: list = []  # glibc, once loaded (None where there is none)


def release_free_memory() -> bool:
    """Hand the C allocator's free memory back to the OS (glibc's malloc_trim): what one phase freed (a
    decode's activations, a sampler's batches) otherwise stays in the process's RSS through the next
    phases, whose peaks it inflates (measured here on SD 1.5: 0.5 GiB still resident after the exposure
    measure, of 0.5 GiB of tensors at its peak). False where there is no glibc (another libc, macOS)."""
    if not _LIBC:
        import ctypes

        try:
            lib = ctypes.CDLL("libc.so.6")
            _LIBC.append(lib if hasattr(lib, "malloc_trim") else None)
        except OSError:
            _LIBC.append(None)
    if _LIBC[0] is None:
        return False
    _LIBC[0].malloc_trim(0)
    return True


def _reset_rss_peak() -> bool:
    """Set the kernel's high-water mark of this process's RSS to its RSS now. Linux >= 4.0 does that
    when "5" is written to /proc/self/clear_refs (it only touches the counter). False where that
    file cannot be written: a read-only /proc (EROFS, seen here when /proc is remounted read-only),
    a sandbox that does not implement it, another OS. Tried once per process.

    The reset is process-wide and erases the kernel's only record of the earlier peak: getrusage's
    ru_maxrss, the parent's wait4 and `/usr/bin/time -v` then report the peak since the last reset
    (seen here: 1.1 GB before a reset, 0.6 GB after). process_peak() keeps the whole."""
    global _clear_refs_works
    if _clear_refs_works is False:
        return False
    try:
        with open(_CLEAR_REFS, "wb", buffering=0) as f:  # unbuffered: a refusal raises here, not at close
            f.write(b"5")
        _clear_refs_works = True
    except OSError:
        _clear_refs_works = False
    return _clear_refs_works


def _rss_high_water() -> int:
    """Peak RSS since the last reset (VmHWM); where /proc is missing, ru_maxrss: the peak since the
    process started (Linux counts it in kB, macOS in bytes)."""
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class PeakMemory:
    """The peak memory of this process during a `with` block, as `device` counts it.

        with PeakMemory(device) as mem:
            ...
        mem.peak_bytes, mem.start_bytes, mem.kind, mem.how

    kind:
      'cuda_max_allocated'  CUDA: torch.cuda.max_memory_allocated, the bytes of live tensors as the
                            caching allocator counts them (reserved_peak_bytes: what it held from
                            the driver, max_memory_reserved), after reset_peak_memory_stats;
      'rss'                 any other device: the peak resident set size (VmHWM), after resetting
                            the kernel's high-water mark through /proc/self/clear_refs;
      'rss_since_start'     where that mark cannot be reset: the peak of the whole process so far,
                            an upper bound of the block's (ru_maxrss, or VmHWM without a reset).
    The peak is absolute: it includes what was already held when the block began (start_bytes).

    Blocks nest: before a block resets the device's high-water mark it hands what was seen so far to
    every enclosing block, so an outer peak always contains the inner ones. Code outside this module
    that resets the same mark (torch.cuda.reset_peak_memory_stats, a write to clear_refs) loses what
    was seen before it. The resets also hide the process's earlier peak from whatever reads the same
    mark later (ru_maxrss and `/usr/bin/time -v` on a CPU, torch.cuda.max_memory_allocated on a GPU):
    process_peak() keeps it. The RSS is the whole process's, whatever thread allocated it; the blocks
    themselves are meant for one thread of control.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        device = torch.device(device)
        if device.type == "cuda" and device.index is None and torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.kind: str | None = None  # known once the block has begun
        self.start_bytes: int | None = None
        self._peak = 0
        self._reserved: int | None = None

    # -- the block
    def __enter__(self) -> "PeakMemory":
        if self in _OPEN:
            raise RuntimeError("a PeakMemory block cannot be entered twice")
        self._fold_open()  # what enclosing blocks saw until now, before the reset forgets it
        key = self._counter()
        _forgotten[key] = max(_forgotten.get(key, 0), self._high_water()[0])
        if self._cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_max_allocated"
            self.start_bytes = torch.cuda.memory_allocated(self.device)
        else:
            release_free_memory()  # the phase's peak starts from what is alive, not what earlier phases freed
            self.kind = "rss" if _reset_rss_peak() else "rss_since_start"
            self.start_bytes = current_rss()
        self._peak, self._reserved = 0, None
        self._see(*self._high_water())
        _OPEN.append(self)
        return self

    def __exit__(self, *exc) -> None:
        self._fold_open()
        _OPEN.remove(self)

    # -- what it measured
    @property
    def peak_bytes(self) -> int:
        """The peak during the block (so far, while inside it)."""
        if self in _OPEN:
            self._see(*self._high_water())
        return self._peak

    @property
    def reserved_peak_bytes(self) -> int | None:
        """CUDA only: the peak of what the caching allocator held from the driver (None elsewhere)."""
        if self in _OPEN and self._cuda:
            self._see(*self._high_water())
        return self._reserved

    @property
    def how(self) -> str:
        """One sentence: what the numbers are."""
        return {
            "cuda_max_allocated": f"torch.cuda.max_memory_allocated on {self.device} (tensors, as the caching "
            "allocator counts them), reset at the start of each phase",
            "rss": "peak resident set size of this process (Linux VmHWM, reset at the start of each phase "
            "through /proc/self/clear_refs)",
            "rss_since_start": "peak resident set size of this process since it started (its high-water mark "
            "could not be reset here: each phase shows the peak so far, an upper bound)",
        }.get(self.kind or "", "not measured yet")

    # -- inside
    @property
    def _cuda(self) -> bool:
        return self.device.type == "cuda"

    def _counter(self) -> tuple:
        """The high-water mark this block reads and resets: one per CUDA device, one RSS per process."""
        return ("cuda", self.device.index) if self._cuda else ("rss",)

    def _same_counter(self, other: "PeakMemory") -> bool:
        return self._counter() == other._counter()

    def _high_water(self) -> tuple[int, int | None]:
        if self._cuda:
            return torch.cuda.max_memory_allocated(self.device), torch.cuda.max_memory_reserved(self.device)
        return _rss_high_water(), None

    def _see(self, peak: int, reserved: int | None) -> None:
        self._peak = max(self._peak, peak)
        if reserved is not None:
            self._reserved = max(self._reserved or 0, reserved)

    def _fold_open(self) -> None:
        """Hand the high-water mark since the last reset to every open block that reads the same one."""
        sharing = [m for m in _OPEN if m._same_counter(self)]
        if sharing:
            seen = self._high_water()
            for m in sharing:
                m._see(*seen)


def process_peak(device: torch.device | str = "cpu") -> int:
    """This process's peak memory since it started, in bytes, as `device` counts it (PeakMemory's kinds:
    CUDA max allocated, or the peak RSS): the device's high-water mark now, or the highest one a
    PeakMemory block erased when it reset the mark, whichever is larger."""
    probe = PeakMemory(device)
    return max(_forgotten.get(probe._counter(), 0), probe._high_water()[0])


# ---------------------------------------------------------------------------- tensors that ops create
class LiveTensors(TorchDispatchMode):
    """Follows every storage that an op creates inside the block until that storage dies.

        with LiveTensors(min_bytes=4 * n_params) as live:
            model(x).sum().backward()
        live.peak_bytes, live.count_at_peak, live.peak_count, live.live_bytes

    Counted: each new storage an op returns (results, factories such as torch.empty, gradients, and
    what autograd saves for backward, which dies when backward frees it). Not counted: storages that
    existed before the block (weights, inputs), even when an op inside returns a view of them; views
    and in-place results (they share a storage that is counted once, or not at all). A counted
    storage that an op resizes (out= arguments, resize_) is counted at its new size.

    The bytes are storage.nbytes(): the tensors' own bytes, not the allocator's rounding, caches or
    kernel workspaces that never become a tensor (PeakMemory sees those). A storage's end is seen
    through weakref.finalize on its UntypedStorage: PyTorch keeps a storage's Python object alive as
    long as the C++ storage lives, so the finalizer runs exactly when the memory is released.
    Works on meta tensors (their storages have sizes and no memory): a network's activation memory
    can be estimated before anything is allocated.

    Storages made inside the block are followed after it ends too (live_bytes falls as they die); only
    ops inside the block add. A dispatch mode sees the ops of its own thread; autograd's engine carries
    it into backward (on the CPU backward runs in the caller's thread: tested; CUDA device threads get
    it through ATen's ThreadLocalState: not run here, no GPU). Costs tens of microseconds per op on
    top of the op (benchmarks/bench_memory.py: 2.4x a batch-1 forward+backward of a 0.7 M-parameter
    UNet, 1.03x at batch 64).
    """

    def __init__(self, min_bytes: int = 0):
        super().__init__()
        self.min_bytes = int(min_bytes)
        self.live_bytes = 0  # bytes of counted storages alive now
        self.peak_bytes = 0  # the most live_bytes has been
        self.live_count = 0  # counted storages of >= min_bytes alive now
        self.peak_count = 0  # the most live_count has been
        self.count_at_peak = 0  # live_count when live_bytes first reached peak_bytes
        self._sizes: dict[int, int] = {}  # storage (its C++ address, unique while alive) -> bytes
        self._lock = threading.RLock()  # finalizers may run in another thread, or inside an update (GC)

    def reset_peak(self) -> None:
        """Start the peaks again from what is alive now (to measure a later phase alone)."""
        with self._lock:
            self.peak_bytes, self.peak_count, self.count_at_peak = self.live_bytes, self.live_count, self.live_count

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        before = None  # the storages of the op's arguments, looked up once and only when needed
        for t in _tensors(out):
            try:
                storage = t.untyped_storage()
            except (RuntimeError, NotImplementedError):  # sparse and nested tensors have no single storage
                continue
            key = storage._cdata
            if key in self._sizes:  # a view or in-place result of a counted storage; resized by out= perhaps
                if storage.nbytes() != self._sizes[key]:
                    self._set(key, storage.nbytes())
                continue
            if before is None:
                before = {s._cdata for s in _storages(args, kwargs)}
            if key in before:  # a view or in-place result of a storage from before the block
                continue
            self._set(key, storage.nbytes())
            weakref.finalize(storage, self._set, key, None).atexit = False
        return out

    def _set(self, key: int, nbytes: int | None) -> None:
        """Count storage `key` at nbytes (None: it died)."""
        with self._lock:
            old = self._sizes.pop(key, None)
            if old is not None:
                self.live_bytes -= old
                self.live_count -= old >= self.min_bytes
            if nbytes is None:
                return
            self._sizes[key] = nbytes
            self.live_bytes += nbytes
            self.live_count += nbytes >= self.min_bytes
            self.peak_count = max(self.peak_count, self.live_count)
            if self.live_bytes > self.peak_bytes:
                self.peak_bytes, self.count_at_peak = self.live_bytes, self.live_count


def _tensors(node):
    """The tensors in an op's arguments or results: tensors, and lists, tuples or dicts of them (aten's
    argument shapes). A plain walk: torch's pytree cost about 4x as much per op here."""
    if isinstance(node, torch.Tensor):
        yield node
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _tensors(v)
    elif isinstance(node, dict):
        for v in node.values():
            yield from _tensors(v)


def _storages(*trees):
    for t in _tensors(trees):
        try:
            yield t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            continue
