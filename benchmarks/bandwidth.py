"""The machine's copy bandwidth (the physical limit of memory-bound kernels), measured with N threads.

`harness.copy_bandwidth` is one np.copyto on one thread; a kernel that splits its tiles over N threads
can go faster, so the limit it is compared with is measured with the same N threads: each thread copies
its own slice with np.copyto (numpy releases the GIL for a plain contiguous copy).
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def copy_bandwidth(threads: int = 1, nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Best-of-`repeats` GB/s (bytes read + bytes written) of copying `nbytes` with `threads` threads."""
    threads = max(1, int(threads))
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first touch of dst's pages is not part of any timed copy
    edges = np.linspace(0, src.size, threads + 1).astype(int)
    parts = [(dst[a:b], src[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    best = math.inf
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            if threads == 1:
                np.copyto(dst, src)
            else:
                list(pool.map(lambda p: np.copyto(*p), parts))
            best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def measure(threads: int, nbytes: int = 256 << 20, repeats: int = 5) -> dict:
    """{'threads', 'nbytes', 'gbps_1t', 'gbps_nt', 'gbps'}: gbps (the limit used) is the best of the two."""
    one = copy_bandwidth(1, nbytes, repeats)
    many = copy_bandwidth(threads, nbytes, repeats) if threads > 1 else one
    return {"threads": threads, "nbytes": nbytes, "gbps_1t": one, "gbps_nt": many, "gbps": max(one, many)}
