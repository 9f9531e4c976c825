"""Index-driven tensor ops: GatherElements/ND, Scatter*, Compress, NonZero, TopK, Unique, OneHot, CumSum/Prod,
TensorScatter, ReverseSequence."""
from __future__ import annotations

import numpy as np

from ..errors import KernelError, ShapeError
from ..ir import TensorType
from .infer import norm_axis, same
from .registry import Fusion, op

INJ = Fusion.INJECTIVE
I64 = np.dtype(np.int64)


def _norm_index(idx, n, what):
    idx = np.asarray(idx).astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise KernelError(f"{what}: index out of range [{-n}, {n - 1}]")
    return np.where(idx < 0, idx + n, idx)


# ---------------------------------------------------------------- gathers

@op("GatherElements", since=11, fusion=INJ, attrs={"axis": 0},
    infer=lambda ctx, d, i: TensorType(d.dtype, i.shape))
def _gather_elements(ctx, data, indices):
    axis = norm_axis(ctx["axis"], data.ndim)
    idx = _norm_index(indices, data.shape[axis], "GatherElements")
    return np.take_along_axis(data, idx, axis=axis)


def _infer_gather_nd(ctx, d, i):
    b, k = ctx["batch_dims"], i.shape[-1]
    if not isinstance(k, int):
        raise ValueError("symbolic index depth")
    return TensorType(d.dtype, tuple(i.shape[:-1]) + tuple(d.shape[b + k:]))


@op("GatherND", since=11, fusion=INJ, attrs={"batch_dims": 0}, infer=_infer_gather_nd)
def _gather_nd(ctx, data, indices):
    b = ctx["batch_dims"]
    k = indices.shape[-1]
    batch = data.shape[:b]
    nb = int(np.prod(batch, dtype=np.int64))
    rest = data.shape[b + k:]
    d = data.reshape((nb,) + data.shape[b:])
    idx = indices.reshape(nb, -1, k).astype(np.int64)
    dims = np.array(data.shape[b:b + k], dtype=np.int64)
    if idx.size and ((idx < -dims).any() or (idx >= dims).any()):
        raise KernelError("GatherND: index out of range")
    idx = np.where(idx < 0, idx + dims, idx)
    out = np.stack([d[i][tuple(idx[i].T)] for i in range(nb)]) if nb else \
        np.zeros((0, idx.shape[1]) + rest, data.dtype)
    return out.reshape(tuple(indices.shape[:-1]) + rest)


# ---------------------------------------------------------------- scatters

_REDUCE = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter_into(out, index, updates, reduction):
    if reduction == "none":
        out[index] = updates
    elif reduction in _REDUCE:
        _REDUCE[reduction].at(out, index, updates)
    else:
        raise KernelError(f"unknown scatter reduction {reduction!r}")
    return out


def _scatter_elements(data, indices, updates, axis, reduction):
    axis = norm_axis(axis, data.ndim)
    idx = _norm_index(indices, data.shape[axis], "ScatterElements")
    grid = list(np.indices(idx.shape, sparse=True))
    grid[axis] = idx
    return _scatter_into(data.copy(), tuple(grid), updates, reduction)


@op("ScatterElements", since=11, fusion=INJ, attrs={"axis": 0, "reduction": "none"}, infer=same(0))
def _scatter_el(ctx, data, indices, updates):
    return _scatter_elements(data, indices, updates, ctx["axis"], ctx["reduction"])


@op("Scatter", since=1, fusion=INJ, attrs={"axis": 0}, infer=same(0))
def _scatter_old(ctx, data, indices, updates):
    return _scatter_elements(data, indices, updates, ctx["axis"], "none")


@op("ScatterND", since=11, fusion=INJ, attrs={"reduction": "none"}, infer=same(0))
def _scatter_nd(ctx, data, indices, updates):
    k = indices.shape[-1]
    dims = np.array(data.shape[:k], dtype=np.int64)
    idx = indices.reshape(-1, k).astype(np.int64)
    if idx.size and ((idx < -dims).any() or (idx >= dims).any()):
        raise KernelError("ScatterND: index out of range")
    idx = np.where(idx < 0, idx + dims, idx)
    upd = updates.reshape((idx.shape[0],) + data.shape[k:])
    return _scatter_into(data.copy(), tuple(idx.T), upd, ctx["reduction"])


@op("TensorScatter", since=24, fusion=INJ, attrs={"axis": -2, "mode": "linear"}, infer=same(0))
def _tensor_scatter(ctx, past, update, write_indices=None):
    axis = norm_axis(ctx["axis"], past.ndim)
    if axis == 0:
        raise KernelError("TensorScatter: axis cannot be the batch axis")
    out = past.copy()
    max_len, seq = past.shape[axis], update.shape[axis]
    pre = (slice(None),) * (axis - 1)
    for b in range(past.shape[0]):
        start = 0 if write_indices is None else int(write_indices[b])
        pos = start + np.arange(seq)
        if ctx["mode"] == "circular":
            pos %= max_len
        elif seq and pos[-1] >= max_len:
            raise KernelError(f"TensorScatter: write index {start} + {seq} exceeds {max_len}")
        out[b][pre + (pos,)] = update[b]
    return out


# ---------------------------------------------------------------- selections

@op("Compress", since=9, attrs={"axis": None})
def _compress(ctx, x, condition):
    axis = ctx.get("axis")
    cond = np.asarray(condition).astype(bool).reshape(-1)
    if axis is None:
        return np.compress(cond, x.reshape(-1))
    return np.compress(cond, x, axis=norm_axis(axis, x.ndim))


@op("NonZero", since=9)
def _nonzero(ctx, x):
    if x.ndim == 0:
        return np.zeros((0, int(bool(x))), dtype=np.int64)
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


def _topk(x, k, axis, largest, sorted_):
    axis = norm_axis(axis, x.ndim)
    n = x.shape[axis]
    if k < 0 or k > n:
        raise KernelError(f"TopK: k={k} out of range for axis of size {n}")
    if largest:
        # stable ascending sort of the reversed axis, reversed again: descending, ties by lower index
        rev = np.flip(x, axis)
        order = np.flip(np.argsort(rev, axis=axis, kind="stable"), axis)
        order = n - 1 - order
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)


def _infer_topk(ctx, x, k=None):
    kk = ctx.get("k") if k is None else ctx.const(1)
    if kk is None:
        raise ValueError("k unknown")
    kk = int(np.asarray(kk).reshape(-1)[0])
    axis = norm_axis(ctx["axis"], len(x.shape))
    shape = x.shape[:axis] + (kk,) + x.shape[axis + 1:]
    return TensorType(x.dtype, shape), TensorType(I64, shape)


@op("TopK", since=1, attrs={"axis": -1}, infer=_infer_topk)
def _topk_v1(ctx, x):
    return _topk(x, int(ctx["k"]), ctx["axis"], True, True)


@op("TopK", since=10, attrs={"axis": -1, "largest": 1, "sorted": 1}, infer=_infer_topk)
def _topk_v10(ctx, x, k):
    return _topk(x, int(np.asarray(k).reshape(-1)[0]), ctx["axis"], ctx["largest"], ctx["sorted"])


@op("Unique", since=11, attrs={"sorted": 1, "axis": None})
def _unique(ctx, x):
    axis = ctx.get("axis")
    if axis is not None:
        axis = norm_axis(axis, x.ndim)
    y, first, inverse, counts = np.unique(x if axis is not None else x.reshape(-1), return_index=True,
                                          return_inverse=True, return_counts=True, axis=axis)
    inverse = inverse.reshape(-1)
    if not ctx["sorted"]:
        order = np.argsort(first, kind="stable")
        y = np.take(y, order, axis=0 if axis is None else axis)
        remap = np.empty_like(order)
        remap[order] = np.arange(order.size)
        first, inverse, counts = first[order], remap[inverse], counts[order]
    return y, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)


# ---------------------------------------------------------------- OneHot, cumulative ops, ReverseSequence

def _infer_onehot(ctx, idx, depth, values):
    d = ctx.const(1)
    if d is None or idx.shape is None:
        raise ValueError("depth unknown")
    rank = len(idx.shape) + 1
    axis = norm_axis(ctx["axis"], rank)
    shape, depth = list(idx.shape), int(np.asarray(d).reshape(-1)[0])
    if depth < 0:
        raise ShapeError(f"depth is negative ({depth})")
    shape.insert(axis, depth)
    return TensorType(values.dtype, shape)


@op("OneHot", since=9, attrs={"axis": -1}, infer=_infer_onehot)
def _onehot(ctx, indices, depth, values):
    d = int(np.asarray(depth).reshape(-1)[0])
    if d < 0:
        raise KernelError(f"OneHot: depth is negative ({d})")
    axis = norm_axis(ctx["axis"], indices.ndim + 1)
    idx = np.trunc(indices) if indices.dtype.kind == "f" else indices
    idx = np.asarray(idx).astype(np.int64)
    idx = np.where(idx < 0, idx + d, idx)
    hot = idx[..., None] == np.arange(d)
    hot = np.moveaxis(hot, -1, axis)
    off, on = np.asarray(values).reshape(-1)[:2]
    return np.where(hot, on, off).astype(values.dtype)


def _cumulative(fn, identity):
    def kernel(ctx, x, axis):
        a = norm_axis(int(np.asarray(axis).reshape(-1)[0]), x.ndim)
        y = np.flip(x, a) if ctx["reverse"] else x
        out = fn(y, axis=a, dtype=x.dtype)
        if ctx["exclusive"]:
            pad = np.full_like(np.take(out, [0], axis=a), identity)
            out = np.concatenate([pad, np.take(out, np.arange(out.shape[a] - 1), axis=a)], axis=a)
        return np.flip(out, a) if ctx["reverse"] else out
    return kernel


op("CumSum", since=11, attrs={"exclusive": 0, "reverse": 0}, infer=same(0))(_cumulative(np.cumsum, 0))
op("CumProd", since=26, attrs={"exclusive": 0, "reverse": 0}, infer=same(0))(_cumulative(np.cumprod, 1))


@op("ReverseSequence", since=10, attrs={"batch_axis": 1, "time_axis": 0}, fusion=INJ, infer=same(0))
def _reverse_sequence(ctx, x, lens):
    b, t = ctx["batch_axis"], ctx["time_axis"]
    out = x.copy()
    for i, n in enumerate(np.asarray(lens).reshape(-1)):
        n = int(n)
        src = [slice(None)] * x.ndim
        src[b], src[t] = i, slice(0, n)
        dst = list(src)
        dst[t] = slice(n - 1, None, -1) if n > 0 else slice(0, 0)
        out[tuple(src)] = x[tuple(dst)]
    return out
