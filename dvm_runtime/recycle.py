"""Recycled output arrays for big DVM outputs.

An array of 32 MiB or more is its own mmap in glibc, and smaller ones freed together (the three 4 MiB
outputs of an Adam step) get trimmed off the heap: every call that allocates them again takes a page fault
per page (the kernel zeroes each), which cost about as much as the kernel that fills them (measured: a
32 MiB softmax spent 40% of its time there, the 1024x1024 Adam step 45%). `give` keeps an output after its
kernel ran; `take` hands back a kept array that nothing outside this pool references any more (its
reference count shows only the pool's own references), else a new one. Several per size, so a chain of
same-size kernels in one graph recycles all of its outputs. The pool keeps at most POOL_BYTES, oldest out
first.
"""
from __future__ import annotations

import collections
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 20  # below, malloc's free lists serve arrays without page faults
POOL_BYTES = 256 << 20

_pool: collections.OrderedDict = collections.OrderedDict()  # (n, dtype) -> arrays given back, oldest first
_pool_bytes = 0
_lock = threading.Lock()
_getrefcount = sys.getrefcount


def take(n: int, dtype) -> np.ndarray:
    """An uninitialized array of n elements of dtype: a recycled one nobody else holds, else a new one."""
    global _pool_bytes
    dtype = np.dtype(dtype)   # the pool's keys hold dtypes: np.float32 (a type) hashes apart and never matched
    with _lock:
        kept = _pool.get((n, dtype), ())
        for i in range(len(kept)):   # not enumerate(): its reused result tuple holds one more reference
            arr = kept[i]
            # references: the pool's list, `arr` and getrefcount's argument; more means someone holds it
            # (or a view of it: a view references its base)
            if _getrefcount(arr) == 3:
                del kept[i]
                _pool_bytes -= arr.nbytes
                return arr
    return np.empty(n, dtype)


def give(arr: np.ndarray) -> None:
    """Keep arr for a later take() of the same size and dtype; it is reused only once nobody holds it."""
    global _pool_bytes
    if arr.nbytes > POOL_BYTES:
        return
    key = (arr.size, arr.dtype)
    with _lock:
        _pool.setdefault(key, []).append(arr)
        _pool.move_to_end(key)
        _pool_bytes += arr.nbytes
        while _pool_bytes > POOL_BYTES:
            oldest_key, kept = next(iter(_pool.items()))
            _pool_bytes -= kept.pop(0).nbytes
            if not kept:
                del _pool[oldest_key]
