"""Normalizations: Batch/Instance/Layer/RMS/Group normalization, LRN, LpNormalization,
MeanVarianceNormalization."""
from __future__ import annotations

import numpy as np

from ..dtypes import np_dtype
from ..errors import ShapeError
from ..ir import TensorType
from .infer import norm_axis, same
from . import row_ckernels
from .nn import acc_dtype
from .registry import Fusion, op


def _chan(v, ndim, dtype):
    """Per-channel vector [C] shaped to broadcast against [N, C, *S]."""
    return np.asarray(v).astype(dtype, copy=False).reshape((1, -1) + (1,) * (ndim - 2))


def _bn_infer(ctx, x, *rest):
    outs = [x]
    for t in rest[2:4][:max(ctx.num_outputs - 1, 0)]:
        outs.append(t)
    return tuple(outs) + tuple(TensorType(None, None) for _ in range(ctx.num_outputs - len(outs)))


@op("BatchNormalization", since=1, attrs={"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0, "spatial": 1},
    fusion=Fusion.BROADCAST, infer=_bn_infer)
def _batchnorm(ctx, x, scale, bias, mean, var):
    eps = float(ctx["epsilon"])
    acc = acc_dtype(x.dtype)
    xf = x.astype(acc, copy=False)
    training = bool(ctx["training_mode"]) or (ctx.opset < 14 and ctx.num_outputs > 1 and ctx.opset >= 9)
    if x.ndim < 2:
        raise ShapeError(f"BatchNormalization input must have rank >= 2, got {x.shape}")
    if not training:
        # fold scale / sqrt(var + eps) into one multiplier: one pass over x
        mul = scale.astype(acc) / np.sqrt(var.astype(acc) + eps)
        add = bias.astype(acc) - mean.astype(acc) * mul
        y = xf * _chan(mul, x.ndim, acc)
        y += _chan(add, x.ndim, acc)
        y = y.astype(x.dtype, copy=False)
        return (y,) + (mean, var)[:ctx.num_outputs - 1] if ctx.num_outputs > 1 else y
    axes = (0,) + tuple(range(2, x.ndim))
    bmean = xf.mean(axis=axes)
    bvar = xf.var(axis=axes)
    y = (xf - _chan(bmean, x.ndim, acc)) / np.sqrt(_chan(bvar, x.ndim, acc) + eps)
    y = y * _chan(scale, x.ndim, acc) + _chan(bias, x.ndim, acc)
    mom = float(ctx["momentum"])
    run_mean = (mean.astype(acc) * mom + bmean * (1 - mom)).astype(mean.dtype)
    run_var = (var.astype(acc) * mom + bvar * (1 - mom)).astype(var.dtype)
    outs = (y.astype(x.dtype), run_mean, run_var)
    if ctx.opset < 14:  # opset 9-13 training outputs also carry the saved batch mean and variance
        outs = outs + (bmean.astype(mean.dtype), bvar.astype(var.dtype))
    return outs[:ctx.num_outputs]


@op("InstanceNormalization", since=1, attrs={"epsilon": 1e-5}, fusion=Fusion.REDUCE, infer=same())
def _instancenorm(ctx, x, scale, bias):
    acc = acc_dtype(x.dtype)
    xf = x.astype(acc, copy=False)
    axes = tuple(range(2, x.ndim))
    mean = xf.mean(axis=axes, keepdims=True)
    d = xf - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    y = d / np.sqrt(var + float(ctx["epsilon"]))
    return (y * _chan(scale, x.ndim, acc) + _chan(bias, x.ndim, acc)).astype(x.dtype)


def _stash(ctx, x_dtype):
    """The stash type (float32 by default): precision of the statistics and dtype of Mean / InvStdDev."""
    return np_dtype(int(ctx.get("stash_type", 1)))


def _ln_infer(ctx, x, *rest):
    if x.shape is None:
        return (x,) + (TensorType(_stash(ctx, x.dtype), None),) * (ctx.num_outputs - 1)
    axis = norm_axis(ctx["axis"], len(x.shape))
    stat = TensorType(_stash(ctx, x.dtype), tuple(x.shape[:axis]) + (1,) * (len(x.shape) - axis))
    return ((x,) + (stat, stat))[:max(ctx.num_outputs, 1)]


@op("LayerNormalization", since=1, attrs={"axis": -1, "epsilon": 1e-5, "stash_type": 1},
    fusion=Fusion.REDUCE, infer=_ln_infer)
def _layernorm(ctx, x, scale, bias=None):
    st = _stash(ctx, x.dtype)
    axis = norm_axis(ctx["axis"], x.ndim)
    if st == np.float32 and (c := row_ckernels.layer_norm(x, scale, bias, axis, ctx["epsilon"],
                                                           ctx.num_outputs)) is not None:
        return c[0] if ctx.num_outputs == 1 else c[:ctx.num_outputs]
    axes = tuple(range(axis, x.ndim))
    xf = x.astype(np.promote_types(st, x.dtype) if x.dtype == np.float64 else st, copy=False)
    mean = xf.mean(axis=axes, keepdims=True)
    d = xf - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(var + np.asarray(ctx["epsilon"], st))
    normed = (d * inv).astype(x.dtype)
    y = normed * scale
    if bias is not None:
        y = y + bias
    y = y.astype(x.dtype, copy=False)
    if ctx.num_outputs == 1:
        return y
    return (y, mean.astype(st, copy=False), inv.astype(st, copy=False))[:ctx.num_outputs]


@op("RMSNormalization", since=1, attrs={"axis": -1, "epsilon": 1e-5, "stash_type": 1},
    fusion=Fusion.REDUCE, infer=same())
def _rmsnorm(ctx, x, scale):
    st = _stash(ctx, x.dtype)
    axis = norm_axis(ctx["axis"], x.ndim)
    xf = x.astype(st, copy=False)
    ms = (xf * xf).mean(axis=tuple(range(axis, x.ndim)), keepdims=True)
    normed = (xf / np.sqrt(ms + np.asarray(ctx["epsilon"], st))).astype(x.dtype)
    return (normed * scale).astype(x.dtype, copy=False)


def _groupnorm(ctx, x, scale, bias, per_channel):
    g = int(ctx["num_groups"])
    n, c = x.shape[:2]
    if c % g:
        raise ShapeError(f"GroupNormalization: {c} channels not divisible by num_groups {g}")
    st = _stash(ctx, x.dtype)
    xg = x.astype(st, copy=False).reshape(n, g, -1)
    mean = xg.mean(axis=2, keepdims=True)
    d = xg - mean
    var = (d * d).mean(axis=2, keepdims=True)
    normed = (d / np.sqrt(var + np.asarray(ctx["epsilon"], st))).astype(x.dtype).reshape(x.shape)
    if not per_channel:  # opset 18: scale and bias have one value per group
        scale, bias = np.repeat(scale, c // g), np.repeat(bias, c // g)
    return (normed * _chan(scale, x.ndim, x.dtype) + _chan(bias, x.ndim, x.dtype)).astype(x.dtype)


op("GroupNormalization", since=1, attrs={"epsilon": 1e-5, "num_groups": None, "stash_type": 1},
   fusion=Fusion.REDUCE, infer=same())(lambda ctx, x, s, b: _groupnorm(ctx, x, s, b, False))
op("GroupNormalization", since=21, attrs={"epsilon": 1e-5, "num_groups": None, "stash_type": 1},
   fusion=Fusion.REDUCE, infer=same())(lambda ctx, x, s, b: _groupnorm(ctx, x, s, b, True))


@op("LRN", since=1, attrs={"alpha": 1e-4, "beta": 0.75, "bias": 1.0, "size": None}, infer=same())
def _lrn(ctx, x):
    size = int(ctx["size"])
    acc = acc_dtype(x.dtype)
    sq = np.square(x.astype(acc, copy=False))
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    widths = [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2)
    sqp = np.pad(sq, widths)
    c = x.shape[1]
    total = sqp[:, 0:c].copy()
    for i in range(1, size):  # loop over the window offsets only
        total += sqp[:, i:i + c]
    denom = (float(ctx["bias"]) + float(ctx["alpha"]) / size * total) ** float(ctx["beta"])
    return (x.astype(acc, copy=False) / denom).astype(x.dtype)


@op("LpNormalization", since=1, attrs={"axis": -1, "p": 2}, infer=same())
def _lpnorm(ctx, x):
    axis = norm_axis(ctx["axis"], x.ndim)
    p = int(ctx["p"])
    acc = acc_dtype(x.dtype)
    xf = x.astype(acc, copy=False)
    if p == 1:
        nrm = np.abs(xf).sum(axis=axis, keepdims=True)
    elif p == 2:
        nrm = np.sqrt((xf * xf).sum(axis=axis, keepdims=True))
    else:
        raise ShapeError(f"LpNormalization supports p in (1, 2), got {p}")
    with np.errstate(all="ignore"):
        y = np.where(nrm == 0, 0, xf / np.where(nrm == 0, 1, nrm))
    return y.astype(x.dtype)


@op("MeanVarianceNormalization", since=1, attrs={"axes": (0, 2, 3)}, fusion=Fusion.REDUCE, infer=same())
def _mvn(ctx, x):
    axes = tuple(norm_axis(int(a), x.ndim) for a in ctx["axes"])
    acc = acc_dtype(x.dtype)
    xf = x.astype(acc, copy=False)
    mean = xf.mean(axis=axes, keepdims=True)
    std = np.sqrt(np.maximum((xf * xf).mean(axis=axes, keepdims=True) - mean * mean, 0))
    return ((xf - mean) / (std + 1e-9)).astype(x.dtype)
