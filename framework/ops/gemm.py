"""float32 matrix products on our own GEMM (framework/csrc/gemm.c: register micro-kernels chosen at run time,
tiles on a thread pool) where framework._ckernels is built; None elsewhere, and the caller uses numpy's BLAS.

Why not BLAS: on the bundled transformer's products ours was 15-35% faster than OpenBLAS on one thread, and
OpenBLAS's own threads split each GEMM statically and spin while they wait, so with other processes on the
cores a threaded GEMM stalled for tens of milliseconds (benchmarks/gemm.py compares the two and MLAS).
"""
from __future__ import annotations

import os

import numpy as np

from .nn_ckernels import _C

F32 = np.dtype(np.float32)  # native float32 arrays share this dtype object: an identity test is enough
# Products of at most this many multiply-adds stay on numpy: OpenBLAS runs them on one thread (its
# GEMM_MULTITHREAD_THRESHOLD 4 x 65536), where its lower call overhead made it 0.3-0.9 us faster than ours up
# to 512k; above it ours was 15-35% faster on one thread on the bundled transformer's shapes (2026-12-06).
BLAS_ONE_THREAD_MACS = 4 * 65536


def cpu_threads() -> int:
    """Threads for our C kernels (the GEMM here, the DVM's VM): $MSGX_NUM_THREADS, else $OMP_NUM_THREADS, else
    the CPUs this process may use (an MPI rank bound to one core gets one thread, not one per CPU)."""
    for var in ("MSGX_NUM_THREADS", "OMP_NUM_THREADS"):
        text = os.environ.get(var, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_threads: list = []  # [cpu_threads()], read on first use (as the VM reads it once per backend)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray | None:
    """a @ b for float32 a (..., M, K) and b (K, N) or (..., K, N) with a's batch shape, above
    BLAS_ONE_THREAD_MACS; else None. Views need no copy where a's rows and b's rows or columns are unit-stride
    and the batch dimensions step as at most two levels (attention's heads: q [b, h, s, d] and k^T [b, h, d, s]
    as transposes of [b, s, h, d]). a and b have rank >= 1 (MatMul's operands). Called for every MatMul, so
    it checks little itself: the extension rejects other shapes and layouts (ValueError). `out`: a C-contiguous
    float32 array of the product's shape to write into (a kept buffer), or None for a new one."""
    if a.size * b.shape[-1] <= BLAS_ONE_THREAD_MACS:  # first: most calls at small shapes stop here
        return None
    if _C is None or a.dtype is not F32 or b.dtype is not F32 or b.ndim < 2:
        return None
    if not _threads:
        _threads.append(cpu_threads())
    if out is None:
        out = np.empty(a.shape[:-1] + b.shape[-1:], F32)
    try:
        _C.matmul(a, b, out, _threads[0])
    except ValueError:  # ranks below 2, a batch b does not match, K differs, other strides: numpy's rules apply
        return None
    return out
