"""Pooling: MaxPool (with indices), AveragePool, LpPool, their Global forms and MaxUnpool.

Windows are reduced with one vectorised numpy op per kernel offset over strided slices of the padded input,
never a Python loop over pixels.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import TensorType
from . import nn_ckernels
from .nn import acc_dtype
from .nn_window import check_out, offset_slices, pad_for, pool2d, pool_axis, window
from .registry import Fusion, op

POOL_ATTRS = {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None, "pads": None, "strides": None,
              "kernel_shape": None}


_GEOMETRY: dict = {}  # (ctx, x shape) -> geometry: a node's attributes never change after compile


def _geometry(ctx, x_shape, name):
    key = (ctx, tuple(x_shape))
    geo = _GEOMETRY.get(key)
    if geo is None:
        geo = _resolve(ctx, x_shape, name)
        if len(_GEOMETRY) > 4096:  # bounded for long-lived processes
            _GEOMETRY.clear()
        _GEOMETRY[key] = geo
    return geo


_PLANS: dict = {}  # (ctx, x shape, dtype) -> C kernel plan or None


def _plan(ctx, x, geo, avg, include_pad=False):
    """The C pooling kernel for this node and input (None: use numpy), built once per shape and dtype."""
    key = (ctx, x.shape, x.dtype)
    try:
        return _PLANS[key]
    except KeyError:
        pass
    kernel, strides, dil, pb, pe, out = geo
    plan = nn_ckernels.pool2d_plan(x.shape, x.dtype, kernel, strides, dil, pb, pe, out, avg, include_pad)
    if len(_PLANS) > 4096:  # bounded for long-lived processes
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


def _bind_planned(make_plan, single_output_only=False):
    """A `bind` for pools: each node keeps make_plan(ctx, x) -> fn(x) -> array per input shape and dtype in
    a dict of its own (a pool runs once per node per run: its lookups cost as much as a small pool)."""
    def bind(ctx):
        if single_output_only and ctx.num_outputs > 1:
            return None
        plans: dict = {}

        def kernel(x):
            key = (x.shape, x.dtype)
            plan = plans.get(key)
            if plan is None:
                if len(plans) >= 64:  # bounded: a long-lived session may see many shapes
                    plans.clear()
                plan = plans[key] = make_plan(ctx, x)
            return [plan(x)]
        return kernel
    return bind


def _resolve(ctx, x_shape, name):
    kernel = ctx["kernel_shape"]
    if not kernel:
        raise ShapeError(f"{name} needs kernel_shape")
    kernel = [int(k) for k in kernel]
    if len(x_shape) != len(kernel) + 2:
        raise ShapeError(f"{name}: input rank {len(x_shape)} does not match kernel_shape {kernel}")
    strides, dil, pb, pe, out = window(ctx, list(x_shape[2:]), kernel, bool(ctx.get("ceil_mode", 0)))
    return kernel, strides, dil, pb, pe, out


def _pool_infer(ctx, x, *rest):
    if x.shape is None:
        return (x,) * max(ctx.num_outputs, 1)
    _, _, _, _, _, out = _resolve(ctx, x.shape, "pool")
    y = TensorType(x.dtype, tuple(x.shape[:2]) + tuple(out))
    return (y, TensorType(np.int64, y.shape))[:max(ctx.num_outputs, 1)]


def _padded(x, kernel, strides, dil, pb, out, fill):
    """x padded so that every window of every output position lies inside it (crops unused tails)."""
    need = [(o - 1) * s + (k - 1) * d + 1 - i - b
            for o, s, k, d, i, b in zip(out, strides, kernel, dil, x.shape[2:], pb)]
    return pad_for(x, 2, pb, need, fill)


def _fill_low(dtype):
    return np.iinfo(dtype).min if dtype.kind in "iu" else -np.inf


def _separable(x, ufunc, fill, geo):
    """Window reduction over all spatial dims as successive 1-D passes (max and sum are separable over the
    box window), innermost dim first so later passes touch fewer elements."""
    kernel, strides, dil, pb, _, out = geo
    if x.ndim == 4 and x.size:
        y = pool2d(x, kernel, strides, dil, pb, out, ufunc, fill)
        if y is not None:
            return y
    for axis in reversed(range(len(kernel))):
        x = pool_axis(x, axis + 2, kernel[axis], dil[axis], strides[axis], pb[axis], out[axis], ufunc, fill)
    return x


def _maxpool_plan(ctx, x):
    if x.ndim == 4:
        geo = _geometry(ctx, x.shape, "MaxPool")
        check_out(geo[-1], "MaxPool")
        plan = _plan(ctx, x, geo, avg=False)
        if plan is not None:
            return plan
    return lambda x: _maxpool(ctx, x)


@op("MaxPool", since=1, attrs={**POOL_ATTRS, "storage_order": 0}, fusion=Fusion.OPAQUE, infer=_pool_infer,
    bind=_bind_planned(_maxpool_plan, single_output_only=True))
def _maxpool(ctx, x):
    geo = _geometry(ctx, x.shape, "MaxPool")
    kernel, strides, dil, pb, _, out = geo
    check_out(out, "MaxPool")
    if ctx.num_outputs < 2:
        plan = _plan(ctx, x, geo, avg=False)
        return _separable(x, np.maximum, _fill_low(x.dtype), geo) if plan is None else plan(x)
    best = _separable(x, np.maximum, _fill_low(x.dtype), geo)
    xp = _padded(x, kernel, strides, dil, pb, out, _fill_low(x.dtype))
    # arg = first tap (row-major window order) equal to the max, as K - max_k (K - k) * [tap k == max]:
    # only equal / multiply / maximum over contiguous buffers, no masked or fancy-indexed writes
    taps = list(offset_slices(kernel, dil, strides, out))
    K = len(taps)
    small = np.min_scalar_type(K)
    eq = np.empty(best.shape, bool)
    tmp = np.empty(best.shape, small)
    acc = np.zeros(best.shape, small)
    for k, (_, sl) in enumerate(taps):
        np.equal(xp[(slice(None), slice(None)) + sl], best, out=eq)
        np.multiply(eq.view(np.uint8), K - k, out=tmp, dtype=small)
        np.maximum(acc, tmp, out=acc)
    arg = (K - acc).astype(small)
    if not acc.all():  # no tap equals the max (a NaN max): the first NaN tap, else the first tap
        nan_arg = np.zeros(best.shape, np.int64)
        if best.dtype.kind in "fc":
            for k, (_, sl) in reversed(list(enumerate(taps))):
                nan_arg[np.isnan(xp[(slice(None), slice(None)) + sl])] = k
        arg = np.where(acc == 0, nan_arg, arg).astype(small)
    return best, _argmax_index(arg, x.shape, kernel, strides, dil, pb, out, ctx["storage_order"])


def _argmax_index(arg, x_shape, kernel, strides, dil, pb, out, storage_order):
    """Flat input index of each window's max: row-major over the whole tensor, or with the spatial dims
    in column-major order when storage_order is 1. The index splits into a per-output-position base (window
    origin) plus a per-tap offset looked up from the tap number `arg`."""
    n, c = x_shape[:2]
    spatial = x_shape[2:]
    nd = len(kernel)
    order = list(range(nd)) if storage_order == 0 else list(reversed(range(nd)))
    step = [0] * nd  # element stride of each spatial dim in the flat index
    acc = 1
    for i in reversed(order):
        step[i] = acc
        acc *= spatial[i]
    plane = acc
    koff = np.unravel_index(np.arange(int(np.prod(kernel))), kernel)
    tap_off = sum(koff[i] * dil[i] * step[i] for i in range(nd)).astype(np.int64)
    base = (np.arange(n, dtype=np.int64)[:, None] * c + np.arange(c)[None, :]) * plane
    base = base.reshape((n, c) + (1,) * nd)
    for i in range(nd):
        pos = (np.arange(out[i], dtype=np.int64) * strides[i] - pb[i]) * step[i]
        base = base + pos.reshape([-1 if j == i else 1 for j in range(nd)])
    res = np.take(tap_off, arg)
    res += base
    return res


def _window_counts(size, k, s, d, pb, lo, hi, out):
    """Per output position along one dim, how many window taps fall inside [lo, hi) of input coordinates."""
    starts = np.arange(out) * s - pb
    taps = starts[:, None] + np.arange(k)[None, :] * d
    return ((taps >= lo) & (taps < hi)).sum(axis=1)


def _sum_pool(ctx, x, name, transform=None):
    """Sum of (transformed) window taps in the accumulation dtype; returns (sum, geometry)."""
    geo = _geometry(ctx, x.shape, name)
    check_out(geo[-1], name)
    work = x.astype(acc_dtype(x.dtype), copy=False)
    if transform is not None:
        work = transform(work)
    return _separable(work, np.add, 0, geo), geo


def _avgpool_plan(ctx, x):
    if x.ndim == 4:
        geo = _geometry(ctx, x.shape, "AveragePool")
        check_out(geo[-1], "AveragePool")
        plan = _plan(ctx, x, geo, avg=True, include_pad=bool(ctx["count_include_pad"]))
        if plan is not None:
            return plan
    return lambda x: _avgpool_numpy(ctx, x)


@op("AveragePool", since=1, attrs={**POOL_ATTRS, "count_include_pad": 0}, infer=_pool_infer,
    bind=_bind_planned(_avgpool_plan))
def _avgpool(ctx, x):
    return _avgpool_plan(ctx, x)(x)


def _avgpool_numpy(ctx, x):
    acc, (kernel, strides, dil, pb, pe, out) = _sum_pool(ctx, x, "AveragePool")
    include = bool(ctx["count_include_pad"])
    counts = None
    for i, size in enumerate(x.shape[2:]):
        lo, hi = (-pb[i], size + pe[i]) if include else (0, size)
        ci = _window_counts(size, kernel[i], strides[i], dil[i], pb[i], lo, hi, out[i])
        ci = ci.reshape([-1 if j == i else 1 for j in range(len(kernel))])
        counts = ci if counts is None else counts * ci
    acc /= np.maximum(counts, 1).astype(acc.dtype)
    return acc.astype(x.dtype, copy=False)


@op("LpPool", since=1, attrs={**POOL_ATTRS, "p": 2}, infer=_pool_infer)
def _lppool(ctx, x):
    p = float(ctx["p"])
    acc, _ = _sum_pool(ctx, x, "LpPool", (lambda v: v * v) if p == 2 else (lambda v: np.abs(v) ** p))
    return (np.sqrt(acc) if p == 2 else acc ** (1.0 / p)).astype(x.dtype, copy=False)


def _global_infer(ctx, x):
    if x.shape is None:
        return x
    return TensorType(x.dtype, tuple(x.shape[:2]) + (1,) * (len(x.shape) - 2))


def _global(fn, c_mode=None):
    """(kernel, plan maker) of a global pool: numpy `fn`, or for float32 NCHW the C pool over the whole plane
    when c_mode is "max" or "avg"."""
    def numpy_kernel(ctx, x):
        axes = tuple(range(2, x.ndim))
        return np.asarray(fn(ctx, x.astype(acc_dtype(x.dtype), copy=False), axes)).astype(x.dtype, copy=False)

    def make_plan(ctx, x):
        if c_mode is not None and x.ndim == 4:
            h, w = x.shape[2:]
            # one window covering the plane, stepping by its size: the C pool's exact-tiling path
            plan = _plan(ctx, x, ([h, w], [h, w], [1, 1], [0, 0], [0, 0], [1, 1]), c_mode == "avg")
            if plan is not None:
                return plan
        return lambda x: numpy_kernel(ctx, x)

    def kernel(ctx, x):
        return make_plan(ctx, x)(x)
    return kernel, make_plan


for _name, _fn, _mode in (("GlobalAveragePool", lambda c, x, ax: x.mean(axis=ax, keepdims=True), "avg"),
                          ("GlobalMaxPool", lambda c, x, ax: x.max(axis=ax, keepdims=True), "max")):
    _kernel, _make = _global(_fn, _mode)
    op(_name, fusion=Fusion.REDUCE, infer=_global_infer, bind=_bind_planned(_make))(_kernel)
op("GlobalLpPool", attrs={"p": 2}, fusion=Fusion.REDUCE, infer=_global_infer)(
    _global(lambda c, x, ax: (np.abs(x) ** float(c["p"])).sum(axis=ax, keepdims=True)
            ** (1.0 / float(c["p"])))[0])


def _unpool_shape(ctx, x_shape):
    kernel = [int(k) for k in ctx["kernel_shape"]]
    n = len(kernel)
    strides = list(ctx.get("strides") or [1] * n)
    pads = list(ctx.get("pads") or [0] * (2 * n))
    return [(i - 1) * s + k - pads[j] - pads[n + j]
            for j, (i, s, k) in enumerate(zip(x_shape[2:], strides, kernel))]


def _unpool_infer(ctx, x, idx, shape=None):
    out_shape = ctx.const(2)
    if out_shape is not None:
        return TensorType(x.dtype, tuple(out_shape.tolist()))
    if shape is not None or x.shape is None:
        return TensorType(x.dtype, None)
    return TensorType(x.dtype, tuple(x.shape[:2]) + tuple(_unpool_shape(ctx, x.shape)))


@op("MaxUnpool", since=1, attrs={"kernel_shape": None, "pads": None, "strides": None}, infer=_unpool_infer)
def _maxunpool(ctx, x, indices, output_shape=None):
    default = tuple(x.shape[:2]) + tuple(_unpool_shape(ctx, x.shape))
    shape = default if output_shape is None else tuple(int(d) for d in output_shape)
    flat = indices.reshape(-1).astype(np.int64)
    total = int(np.prod(default, dtype=np.int64))
    if flat.size and (flat.min() < 0 or flat.max() >= total):
        raise ShapeError(f"MaxUnpool index out of range for the unpooled shape {default}")
    if shape != default:
        # indices address the default unpooled layout: re-encode their coordinates in the requested shape
        coords = np.unravel_index(flat, default)
        if any(np.any(c >= d) for c, d in zip(coords, shape)):
            raise ShapeError(f"MaxUnpool output_shape {shape} too small for the indices")
        flat = np.ravel_multi_index(coords, shape)
    y = np.zeros(int(np.prod(shape, dtype=np.int64)), x.dtype)
    y[flat] = x.reshape(-1)
    return y.reshape(shape)
