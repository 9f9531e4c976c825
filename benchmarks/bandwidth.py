"""The machine's copy bandwidth (the physical limit of memory-bound kernels), measured with N threads.

`harness.copy_bandwidth` is one np.copyto on one thread; a kernel that splits its tiles over N threads
can go faster, so the limit it is compared with is measured with the same N threads: each thread copies
its own slice with np.copyto (numpy releases the GIL for a plain contiguous copy).

`copier` is that copy as a runner, for timing in the same interleaved rounds as the kernels it is the
limit of: this machine's 2-thread copy bandwidth is not steady (after 10 ms idle, 256 MiB copies ran
9.4 ms and reached 5.9 ms only after 25 back-to-back copies), so a best-of-5 taken once at the start of
a suite is a peak that kernels timed later, in rounds that each begin after an idle pause, do not see.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


# A thread's slice below this stays one np.copyto: handing it to a pool thread costs tens of microseconds.
MIN_SLICE_BYTES = 4 << 20
_pools: dict[int, ThreadPoolExecutor] = {}


def copier(threads: int, nbytes: int) -> Callable[[], None]:
    """A function that copies nbytes / 2 bytes (nbytes moved: read + written) with `threads` threads, each
    its own slice (one thread where slices would be under MIN_SLICE_BYTES); its pages already touched."""
    src = np.ones(max(nbytes // 8, 1), np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first touch of dst's pages is not part of any timed copy
    threads = max(1, min(int(threads), src.nbytes // MIN_SLICE_BYTES))
    if threads == 1:
        return lambda: np.copyto(dst, src)
    edges = np.linspace(0, src.size, threads + 1).astype(int)
    parts = [(dst[a:b], src[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    pool = _pools.get(threads) or _pools.setdefault(threads, ThreadPoolExecutor(threads))
    return lambda: list(pool.map(lambda p: np.copyto(*p), parts))


def copy_bandwidth(threads: int = 1, nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Best-of-`repeats` GB/s (bytes read + bytes written) of copying `nbytes` with `threads` threads."""
    copy = copier(threads, 2 * nbytes)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        copy()
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best / 1e9


def measure(threads: int, nbytes: int = 256 << 20, repeats: int = 5) -> dict:
    """{'threads', 'nbytes', 'gbps_1t', 'gbps_nt', 'gbps'}: gbps (the limit used) is the best of the two."""
    one = copy_bandwidth(1, nbytes, repeats)
    many = copy_bandwidth(threads, nbytes, repeats) if threads > 1 else one
    return {"threads": threads, "nbytes": nbytes, "gbps_1t": one, "gbps_nt": many, "gbps": max(one, many)}
