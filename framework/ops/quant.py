"""Quantization ops: (De)QuantizeLinear in per-tensor, per-axis and blocked forms over int/float8/int4 types,
DynamicQuantizeLinear, and the integer kernels QLinearMatMul, MatMulInteger, QLinearConv, ConvInteger."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from ..dtypes import np_dtype
from ..errors import KernelError, ShapeError
from ..ir import TensorType
from .infer import norm_axis
from .math import matmul_shape
from .registry import Fusion, op

_INT_RANGES = {np.dtype(t): (int(ml_dtypes.iinfo(t).min), int(ml_dtypes.iinfo(t).max))
               for t in (np.uint8, np.int8, np.uint16, np.int16, ml_dtypes.uint4, ml_dtypes.int4)}
for _t in ("int2", "uint2"):
    if hasattr(ml_dtypes, _t):
        _INT_RANGES[np.dtype(getattr(ml_dtypes, _t))] = (int(ml_dtypes.iinfo(getattr(ml_dtypes, _t)).min),
                                                         int(ml_dtypes.iinfo(getattr(ml_dtypes, _t)).max))


def _expand(value, shape, axis, block_size):
    """Scale/zero point broadcastable to `shape`: scalar, per-axis (1-D along axis) or blocked."""
    if value.ndim == 0 or value.size == 1 and not block_size:
        return value.reshape(())
    axis = norm_axis(axis, len(shape))
    if not block_size:
        if value.ndim != 1 or value.shape[0] != shape[axis]:
            raise KernelError(f"per-axis scale of shape {value.shape} does not match axis {axis} of {shape}")
        return value.reshape([-1 if i == axis else 1 for i in range(len(shape))])
    if block_size < 0 or value.ndim != len(shape):
        raise KernelError(f"blocked scale of shape {value.shape} does not match input shape {shape}")
    value = np.repeat(value, block_size, axis=axis)
    value = value.take(np.arange(shape[axis]), axis=axis) if value.shape[axis] >= shape[axis] else None
    if value is None or value.shape != tuple(shape):
        raise KernelError(f"blocked scale does not cover input shape {shape} with block size {block_size}")
    return value


def _quant_dtype(ctx, zero_point):
    if zero_point is not None:
        return zero_point.dtype
    out = ctx.get("output_dtype", 0)
    return np_dtype(out) if out else np.dtype(np.uint8)


def _saturate_float(x, dtype, saturate):
    if saturate:
        finfo = ml_dtypes.finfo(dtype)
        x = np.clip(x, -float(finfo.max), float(finfo.max))  # inf -> max, NaN stays NaN
    return x.astype(dtype)


def quantize(x, scale, zero_point, dtype, axis=1, block_size=0, saturate=1, precision=0):
    """y = saturate(round_half_even(x / scale) + zero_point) in `dtype`."""
    scale = _expand(scale, x.shape, axis, block_size)
    if precision:
        p = np_dtype(precision)
        y = x.astype(p) / scale.astype(p)
    else:
        y = x / scale
    dtype = np.dtype(dtype)
    if dtype in _INT_RANGES:
        lo, hi = _INT_RANGES[dtype]
        y = np.rint(y.astype(np.float64))
        if zero_point is not None:
            y = y + _expand(zero_point, x.shape, axis, block_size).astype(np.float64)
        return np.clip(y, lo, hi).astype(np.int32).astype(dtype)
    y = y.astype(np.float32)
    if zero_point is not None:
        y = y + _expand(zero_point, x.shape, axis, block_size).astype(np.float32)
    return _saturate_float(y, dtype, saturate)


def _infer_quantize(ctx, x, scale, zero_point=None):
    dtype = zero_point.dtype if zero_point is not None else _quant_dtype(ctx, None)
    return TensorType(dtype, x.shape)


@op("QuantizeLinear", since=10, attrs={"axis": 1, "saturate": 1, "block_size": 0, "output_dtype": 0,
                                       "precision": 0}, infer=_infer_quantize)
def _quantize_linear(ctx, x, scale, zero_point=None):
    dtype = _quant_dtype(ctx, zero_point)
    return quantize(x, scale, zero_point, dtype, ctx["axis"], ctx["block_size"], ctx["saturate"],
                    ctx["precision"])


def dequantize(x, scale, zero_point, out_dtype, axis=1, block_size=0):
    """y = (x - zero_point) * scale, computed in float32 and cast to `out_dtype`."""
    dx = x.astype(np.float32)
    if zero_point is not None and (x.dtype.kind in "iu" or x.dtype in _INT_RANGES):  # float8 zp is 0
        dx = dx - _expand(zero_point, x.shape, axis, block_size).astype(np.float32)
    y = dx * _expand(scale, x.shape, axis, block_size).astype(np.float32)
    return y.astype(out_dtype)


def _dq_dtype(ctx, scale_dtype):
    out = ctx.get("output_dtype", 0)
    return np_dtype(out) if out else scale_dtype


@op("DequantizeLinear", since=10, attrs={"axis": 1, "block_size": 0, "output_dtype": 0},
    infer=lambda ctx, x, scale, zp=None: TensorType(_dq_dtype(ctx, scale.dtype), x.shape))
def _dequantize_linear(ctx, x, scale, zero_point=None):
    return dequantize(x, scale, zero_point, _dq_dtype(ctx, scale.dtype), ctx["axis"], ctx["block_size"])


@op("DynamicQuantizeLinear", since=11, infer=lambda ctx, x: (
    TensorType(np.uint8, x.shape), TensorType(np.float32, ()), TensorType(np.uint8, ())))
def _dynamic_quantize(ctx, x):
    hi = np.float32(max(0.0, float(np.max(x)) if x.size else 0.0))
    lo = np.float32(min(0.0, float(np.min(x)) if x.size else 0.0))
    scale = np.float32(1.0 if hi == lo else hi - lo) / np.float32(255)
    zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
    y = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
    return y, np.array(scale, dtype=x.dtype), np.array(zp, dtype=np.uint8)


def _shifted(x, zp, row_axis=False):
    """x - zero_point as float64: exact for 8/16-bit data, and float64 matmul runs on BLAS."""
    out = x.astype(np.float64)
    if zp is not None:
        zp = zp.astype(np.float64)
        if row_axis and zp.ndim == 1 and zp.size > 1:
            zp = zp.reshape(-1, 1)  # a per-row zero point of A
        out -= zp
    return out


def _infer_mm(dtype):
    def rule(ctx, a, *rest):
        b = rest[2] if dtype is None else rest[0]
        yzp = rest[6] if dtype is None and len(rest) > 6 else None
        out = dtype if dtype is not None else (yzp.dtype if yzp is not None else a.dtype)
        return TensorType(out, matmul_shape(a.shape, b.shape))
    return rule


@op("MatMulInteger", since=10, fusion=Fusion.OUT_FUSABLE, infer=_infer_mm(np.int32))
def _matmul_integer(ctx, a, b, a_zero_point=None, b_zero_point=None):
    acc = np.matmul(_shifted(a, a_zero_point, True), _shifted(b, b_zero_point))
    return np.rint(acc).astype(np.int32)


def _requantize(acc, multiplier, y_zero_point, dtype):
    y = np.rint(acc * multiplier)
    if y_zero_point is not None:
        y = y + y_zero_point.astype(np.float64)
    lo, hi = _INT_RANGES[np.dtype(dtype)]
    return np.clip(y, lo, hi).astype(dtype)


@op("QLinearMatMul", since=10, fusion=Fusion.OUT_FUSABLE, infer=_infer_mm(None))
def _qlinear_matmul(ctx, a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp=None):
    acc = np.matmul(_shifted(a, a_zp, True), _shifted(b, b_zp))
    # the multiplier is formed in the scales' own precision, as the spec's reference does
    multiplier = (a_scale * b_scale / y_scale)
    if a_scale.ndim == 1 and a_scale.size > 1:
        multiplier = multiplier.reshape(-1, 1)
    dtype = y_zp.dtype if y_zp is not None else a.dtype
    return _requantize(acc, multiplier.astype(np.float64), y_zp, dtype)


def _conv_pads(ctx, spatial, kernel, strides, dilations):
    nd = len(kernel)
    auto = ctx.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(nd):
            out = math.ceil(spatial[i] / strides[i])
            total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i], 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin + end
    if auto == "VALID":
        return [0] * (2 * nd)
    return list(ctx.get("pads") or [0] * (2 * nd))


def conv_nd(x, w, ctx):
    """Plain N-D convolution of float64 arrays by im2col windows and tensordot (one BLAS call per group)."""
    nd = w.ndim - 2
    kernel = tuple(w.shape[2:])
    strides = tuple(ctx.get("strides") or (1,) * nd)
    dil = tuple(ctx.get("dilations") or (1,) * nd)
    pads = _conv_pads(ctx, x.shape[2:], kernel, strides, dil)
    x = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
    span = [(kernel[i] - 1) * dil[i] + 1 for i in range(nd)]
    win = np.lib.stride_tricks.sliding_window_view(x, span, axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None),) * 2 + tuple(slice(None, None, s) for s in strides)
              + tuple(slice(None, None, d) for d in dil)]
    group = ctx.get("group", 1) or 1
    cg, mg = x.shape[1] // group, w.shape[0] // group
    if cg != w.shape[1]:
        raise ShapeError(f"conv: input channels {x.shape[1]} / group {group} != weight channels {w.shape[1]}")
    outs = []
    for g in range(group):
        xs = win[:, g * cg:(g + 1) * cg]
        ws = w[g * mg:(g + 1) * mg]
        r = np.tensordot(xs, ws, axes=([1] + list(range(2 + nd, 2 + 2 * nd)), [1] + list(range(2, 2 + nd))))
        outs.append(np.moveaxis(r, -1, 1))
    return outs[0] if group == 1 else np.concatenate(outs, axis=1)


def _w_shifted(w, zp):
    out = w.astype(np.float64)
    if zp is not None:
        zp = zp.astype(np.float64)
        if zp.ndim == 1 and zp.size > 1:
            zp = zp.reshape((-1,) + (1,) * (w.ndim - 1))  # per output channel
        out -= zp
    return out


CONV_ATTRS = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None, "pads": None,
              "strides": None}


def _infer_conv(out_dtype):
    def rule(ctx, x, *rest):
        w = rest[0] if out_dtype is not None else rest[2]
        yzp = rest[6] if out_dtype is None and len(rest) > 6 else None
        dtype = out_dtype if out_dtype is not None else (yzp.dtype if yzp is not None else x.dtype)
        if x.shape is None or w.shape is None or not all(
                isinstance(d, int) for d in x.shape[2:] + w.shape[2:]):
            return TensorType(dtype, None)
        nd = len(w.shape) - 2
        strides = tuple(ctx.get("strides") or (1,) * nd)
        dil = tuple(ctx.get("dilations") or (1,) * nd)
        pads = _conv_pads(ctx, x.shape[2:], w.shape[2:], strides, dil)
        spatial = [(x.shape[2 + i] + pads[i] + pads[i + nd] - (w.shape[2 + i] - 1) * dil[i] - 1)
                   // strides[i] + 1 for i in range(nd)]
        return TensorType(dtype, (x.shape[0], w.shape[0], *spatial))
    return rule


@op("ConvInteger", since=10, fusion=Fusion.OUT_FUSABLE, attrs=CONV_ATTRS, infer=_infer_conv(np.int32))
def _conv_integer(ctx, x, w, x_zero_point=None, w_zero_point=None):
    acc = conv_nd(_shifted(x, x_zero_point), _w_shifted(w, w_zero_point), ctx)
    return np.rint(acc).astype(np.int32)


@op("QLinearConv", since=10, fusion=Fusion.OUT_FUSABLE, attrs=CONV_ATTRS, infer=_infer_conv(None))
def _qlinear_conv(ctx, x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp=None, bias=None):
    acc = conv_nd(_shifted(x, x_zp), _w_shifted(w, w_zp), ctx)
    if bias is not None:
        acc += bias.astype(np.float64).reshape((-1,) + (1,) * (acc.ndim - 2))
    multiplier = np.asarray(x_scale * w_scale / y_scale)
    if multiplier.ndim == 1 and multiplier.size > 1:
        multiplier = multiplier.reshape((-1,) + (1,) * (acc.ndim - 2))
    dtype = y_zp.dtype if y_zp is not None else x.dtype
    return _requantize(acc, multiplier.astype(np.float64), y_zp, dtype)
