"""Keep freed large buffers in the process heap (glibc malloc), so kernels reuse warm memory.

numpy allocates every result with malloc. glibc serves blocks above its mmap threshold (128 KiB at first,
then adapting) with fresh mmap pages and trims the heap top once 128 KiB is free: a graph whose
intermediates are a few hundred KiB each then page-faults on every run, and which buffers fault depends on
the exact order of allocations and frees (measured: tiny_gpt batch 8 x seq 128 at 1 thread, 13 to 21 ms per
run with 2,000 to 5,000 page faults, against 7.6 ms and none with the settings below). onnxruntime avoids
this with its own arena. Here, once per process: blocks under MMAP_THRESHOLD come from the heap and up to
TRIM_THRESHOLD of free heap top is kept. Set MSGX_MALLOC_TUNING=0 to leave malloc as it is.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20
_applied: bool | None = None


def tune() -> bool:
    """Apply the settings once (glibc only); True when they are in effect."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux") and os.environ.get("MSGX_MALLOC_TUNING", "1") != "0":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = getattr(libc, "mallopt", None)
                _applied = bool(mallopt and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except OSError:  # not glibc (musl has no mallopt): nothing to tune
                _applied = False
    return _applied
