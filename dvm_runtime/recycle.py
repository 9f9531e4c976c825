"""Recycled output arrays for big DVM outputs.

An array of 32 MiB or more is its own mmap in glibc, and smaller ones freed together (the three 4 MiB
outputs of an Adam step) get trimmed off the heap: every call that allocates them again takes a page fault
per page (the kernel zeroes each), which cost about as much as the kernel that fills them (measured: a
32 MiB softmax spent 40% of its time there, the 1024x1024 Adam step 45%). `give` keeps an output after its
kernel ran; `take` hands back a kept array that nothing outside this pool references any more (its
reference count shows only the pool's own references), else a new one. Several per size, so a chain of
same-size kernels in one graph recycles all of its outputs. The pool keeps at most POOL_BYTES: over it,
arrays someone still holds leave first (dropping them frees nothing, and they cannot be handed out now),
then free ones, oldest first. Oldest-first alone let held results push out free arrays of other sizes: after
a caller kept 20 results of a 4096x1024 chain, the next ten 8192x1024 Adam steps took 1626 page faults and
9.6 ms a step; with held arrays out first, none and 8.4 ms.

New arrays start PAGE_OFFSET bytes into a 4 KiB page. malloc put an output right after the input allocated
just before it: 16 to 96 bytes past it modulo 4096, where each store of the output shares its address's low
12 bits with a load of the input a few vectors on, and the core holds such loads back until the store's
address is known (4K aliasing). A 32 MiB softmax ran 2.95 ms with its input that way and 1.21 ms with a copy
of the input 32 bytes after the output; numpy's x * 2 into such an output 3.2 against 2.0 ms. An array is
then a view into a buffer 4 KiB longer: a view of it has that buffer as its base, so an array is free only
when neither it nor its buffer is referenced from outside the pool.
"""
from __future__ import annotations

import collections
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 20  # below, malloc's free lists serve arrays without page faults
POOL_BYTES = 256 << 20
PAGE_OFFSET = 2048 + 64  # far from malloc's small offsets past a page boundary; 64-byte aligned

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
            if _free(arr, 2):   # the pool's list and `arr`
                del kept[i]
                _pool_bytes -= arr.nbytes
                return arr
    return _new(n, dtype)


def _new(n: int, dtype: np.dtype) -> np.ndarray:
    """n elements of dtype starting PAGE_OFFSET bytes into a page (see the module's doc)."""
    buf = np.empty(n * dtype.itemsize + 4096, np.uint8)
    start = (PAGE_OFFSET - buf.ctypes.data) % 4096
    return buf[start:start + n * dtype.itemsize].view(dtype)


def _free(arr: np.ndarray, known: int) -> bool:
    """Whether nothing but the `known` references (the pool's, the caller's) holds arr or the buffer it views
    (a view of arr references that buffer, not arr)."""
    if _getrefcount(arr) != known + 2:   # + this function's parameter and getrefcount's argument
        return False
    buf = arr.base
    # the buffer's references: arr's base, `buf` and getrefcount's argument
    return buf is None or _getrefcount(buf) == 3


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
        if _pool_bytes > POOL_BYTES:
            _evict(held_besides=arr)
        if _pool_bytes > POOL_BYTES:
            _evict()


def _evict(held_besides: np.ndarray | None = None) -> None:
    """Drop kept arrays, oldest first, until the pool fits POOL_BYTES: any, or (given the array being given
    back, which its caller still holds) only the other held ones. Under _lock."""
    global _pool_bytes
    for key in list(_pool):
        kept = _pool[key]
        i = 0
        while i < len(kept) and _pool_bytes > POOL_BYTES:
            if held_besides is not None and (kept[i] is held_besides or _free(kept[i], 1)):   # 1: the list
                i += 1
                continue
            _pool_bytes -= kept.pop(i).nbytes
        if not kept:
            del _pool[key]
        if _pool_bytes <= POOL_BYTES:
            return
