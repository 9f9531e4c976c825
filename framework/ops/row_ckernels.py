"""float32 LayerNorm, (log-)softmax over the last axis and erf through framework._ckernels (built by setup.py).

One C pass per row instead of numpy's 5-10 whole-tensor passes, each with a temporary: at a transformer
block's sizes the numpy kernels spend most of their time in call overhead. Each function returns None where
the C path does not apply (extension not built, other dtype, a scale that is not one row's worth) and the
caller runs its numpy kernel.
"""
from __future__ import annotations

import math

import numpy as np

from .nn_ckernels import _C

F32 = np.dtype(np.float32)


def _c_contig(a):
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def layer_norm(x: np.ndarray, scale, bias, axis: int, eps: float, n_stats: int):
    """(y, mean, inv_std) normalized over axes >= axis (stats shaped [..., 1, ...] as the op defines), or
    None. Only for a scale and bias that cover exactly the normalized shape (no broadcast of a row)."""
    if _C is None or x.dtype != F32 or scale.dtype != F32 or (bias is not None and bias.dtype != F32):
        return None
    inner = x.shape[axis:]
    cols = math.prod(inner)
    for p in (scale, bias):
        if p is not None and (p.size != cols or p.ndim > len(inner) or p.shape != inner[len(inner) - p.ndim:]):
            return None
    if cols == 0 or x.size == 0:
        return None
    rows = x.size // cols
    y = np.empty(x.shape, F32)
    stat_shape = x.shape[:axis] + (1,) * len(inner)
    mean = np.empty(stat_shape, F32) if n_stats > 1 else None
    inv = np.empty(stat_shape, F32) if n_stats > 2 else None
    _C.layer_norm(_c_contig(x), _c_contig(scale), None if bias is None else _c_contig(bias), y, mean, inv,
                  rows, cols, float(np.float32(eps)))
    return y, mean, inv


def softmax(x: np.ndarray, log: bool):
    """softmax (or log-softmax) over the last axis of a float32 array, or None."""
    if _C is None or x.dtype != F32 or x.size == 0 or x.ndim == 0:
        return None
    y = np.empty(x.shape, F32)
    cols = x.shape[-1]
    _C.softmax(_c_contig(x), y, x.size // cols, cols, log)
    return y


def erf(x: np.ndarray):
    """erf of a float32 array (the same clipped rational fit as the numpy kernel), or None."""
    if _C is None or x.dtype != F32:
        return None
    y = np.empty(x.shape, F32)
    _C.erf(_c_contig(x), y, x.size)
    return y
