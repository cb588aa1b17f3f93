"""Where and how fast: devices, CPU threads, numeric precision and the memory allocator."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import platform
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

from modelmill.errors import ConfigError
from modelmill.machine import physical_cores

log = logging.getLogger("modelmill")


def set_threads(threads: int | None) -> None:
    wanted = threads or physical_cores()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def set_deterministic(on: bool) -> None:
    # Only when it changes: the call imports torch's compiler stack (~1.5 s) the first time.
    if torch.are_deterministic_algorithms_enabled() != on:
        torch.use_deterministic_algorithms(on, warn_only=True)


@contextmanager
def process_settings(threads: int | None, deterministic: bool) -> Iterator[None]:
    """Threads and determinism as the training config asks, inside the block only: a
    notebook or a server that trains keeps its own settings afterwards."""
    before_threads = torch.get_num_threads()
    before_deterministic = torch.are_deterministic_algorithms_enabled()
    before_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    set_threads(threads)
    set_deterministic(deterministic)
    try:
        yield
    finally:
        if torch.get_num_threads() != before_threads:
            torch.set_num_threads(before_threads)
        if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) \
                != (before_deterministic, before_warn_only):
            torch.use_deterministic_algorithms(before_deterministic, warn_only=before_warn_only)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device is 'cuda' but no CUDA GPU is available; use 'auto' or 'cpu'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bfloat16_is_fast(device: torch.device) -> bool:
    """Whether this device computes in bfloat16 natively: a GPU that supports it, or a CPU
    whose oneDNN kernels have bfloat16 instructions (AVX-512 or AMX); elsewhere it is
    emulated and slower than float32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
                and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(setting: str, device: torch.device) -> torch.dtype | None:
    """The dtype the training forward pass autocasts to; None: float32 throughout."""
    if setting == "float32":
        return None
    if bfloat16_is_fast(device):
        return torch.bfloat16
    if setting == "bfloat16":
        log.warning(f"training.precision is bfloat16 but this {device.type.upper()} has no native bfloat16: "
                    "it is emulated and slower than float32. Fix: precision: auto (bfloat16 only where fast)")
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[object]:
    """Mixed precision for the forward pass: matrix products and convolutions in ``dtype``,
    reductions, norms and the loss in float32; the weights and the optimiser stay float32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


@functools.cache  # process-wide settings: once is enough
def keep_freed_memory() -> None:
    """Lets glibc's allocator keep the memory of freed tensors for the next step.

    By default every activation buffer above a dynamic threshold is mapped from the kernel
    and unmapped again when freed, and the top of the heap is handed back as soon as 128 KB
    are free: each step then page-faults its buffers in afresh. On MNIST with batch 256 that
    made the first epoch ~45% slower than the later ones. Larger thresholds (mapping only
    above 32 MB, returning memory only past 256 MB free) reuse the buffers instead; the
    price is up to 256 MB more resident memory while training. No-op off glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 * 2**20)
        libc.mallopt(_M_TOP_PAD, 64 * 2**20)
    except (OSError, AttributeError):  # a libc without mallopt: keep its defaults
        return


def peak_rss() -> int:
    """This process's peak resident memory since it started, in bytes (``ru_maxrss``: KiB on
    Linux, bytes on macOS)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PrivatePeak:
    """The largest private resident memory of this process (Linux's ``RssAnon``: its own pages,
    not the shared ones it maps, such as the blocks of Ray's object store a worker reads, which
    ``peak_rss`` counts), sampled every ``interval`` seconds by a daemon thread while in the
    ``with`` block. ``peak`` is None where /proc/self/status has no such line (not Linux)."""

    def __init__(self, interval: float = 0.2) -> None:
        import threading

        self.interval, self.peak = interval, private_rss()
        self._lock = threading.Lock()  # the sampler and the caller of take() both update the peak
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="modelmill-private-peak", daemon=True)

    def __enter__(self) -> PrivatePeak:
        if self.peak is not None:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.take()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.take()

    def take(self) -> None:
        """Sample now (the thread samples every ``interval`` seconds)."""
        now = private_rss()
        with self._lock:
            if now is not None and self.peak is not None:
                self.peak = max(self.peak, now)


def private_rss() -> int | None:
    """This process's private resident memory now, in bytes (``RssAnon``), or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
