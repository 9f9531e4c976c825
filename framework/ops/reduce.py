"""Reductions (Reduce* with attribute axes, later input axes) and ArgMax/ArgMin. numpy's axis reductions are
called directly with keepdims; reductions over empty axes yield the spec's identity (0, 1, -inf, +inf)."""
from __future__ import annotations

import ml_dtypes
import numpy as np

from ..errors import ShapeError
from ..ir import TensorType
from .infer import norm_axis, reduce_shape
from .registry import Fusion, op

R = Fusion.REDUCE


def _is_float(dtype):
    return dtype.kind == "f" or (dtype.kind == "V" and "float" in dtype.name)  # ml_dtypes bfloat16, float8


def _lowest(dtype):
    if _is_float(dtype):
        return -np.inf
    if dtype.kind == "b":
        return False
    return ml_dtypes.iinfo(dtype).min


def _highest(dtype):
    if _is_float(dtype):
        return np.inf
    if dtype.kind == "b":
        return True
    return ml_dtypes.iinfo(dtype).max


def _sum(x, axis, keep):
    return np.sum(x, axis=axis, keepdims=keep, dtype=x.dtype if x.dtype.kind != "b" else None)


def _logsumexp(x, axis, keep):
    if x.size == 0 or x.dtype.kind != "f":
        with np.errstate(divide="ignore"):
            return np.log(np.sum(np.exp(x), axis=axis, keepdims=keep))
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return s if keep else np.squeeze(s, axis=axis)


KERNELS = {
    "ReduceSum": _sum,
    "ReduceMean": lambda x, axis, keep: np.mean(x, axis=axis, keepdims=keep),
    "ReduceMax": lambda x, axis, keep: np.max(x, axis=axis, keepdims=keep, initial=_lowest(x.dtype)),
    "ReduceMin": lambda x, axis, keep: np.min(x, axis=axis, keepdims=keep, initial=_highest(x.dtype)),
    "ReduceProd": lambda x, axis, keep: np.prod(x, axis=axis, keepdims=keep, dtype=x.dtype),
    "ReduceL1": lambda x, axis, keep: _sum(np.abs(x), axis, keep),
    "ReduceL2": lambda x, axis, keep: np.sqrt(_sum(x * x, axis, keep)),
    "ReduceSumSquare": lambda x, axis, keep: _sum(x * x, axis, keep),
    "ReduceLogSum": lambda x, axis, keep: np.log(_sum(x, axis, keep)),
    "ReduceLogSumExp": _logsumexp,
}
# opset where `axes` moved from an attribute to an input
INPUT_AXES_SINCE = {name: 18 for name in KERNELS} | {"ReduceSum": 13}


def _run(fn, x, axes, keep):
    if x.ndim == 0:
        axes = None
    elif axes is not None:
        axes = tuple(sorted({norm_axis(int(a), x.ndim) for a in axes}))
    with np.errstate(all="ignore"):
        out = fn(x, axes, bool(keep))
    return np.asarray(out).astype(x.dtype, copy=False)


def _attr_kernel(fn):
    def kernel(ctx, x):
        axes = ctx.get("axes")
        return _run(fn, x, tuple(axes) if axes else None, ctx["keepdims"])
    return kernel


def _input_kernel(fn, noop_is_identity: bool):
    def kernel(ctx, x, axes=None):
        if axes is None or np.size(axes) == 0:
            if not ctx["noop_with_empty_axes"]:
                return _run(fn, x, None, ctx["keepdims"])
            # a no-op reduction is one over no axes, which keeps its elementwise part (ReduceL1 gives |x|,
            # ReduceSumSquare x*x), as onnx.reference and onnxruntime compute it
            return x if noop_is_identity else _run(fn, x, (), ctx["keepdims"])
        return _run(fn, x, tuple(int(a) for a in np.ravel(axes)), ctx["keepdims"])
    return kernel


def _infer_attr(ctx, x):
    axes = ctx.get("axes") or None
    if x.shape is not None and len(x.shape) == 0:
        return x
    return TensorType(x.dtype, reduce_shape(x.shape, axes, bool(ctx["keepdims"])))


def _infer_input(ctx, x, axes=None):
    if axes is None:
        if ctx["noop_with_empty_axes"]:
            return x
        return TensorType(x.dtype, reduce_shape(x.shape, None, bool(ctx["keepdims"])))
    value = ctx.const(1)
    if value is None:  # axes known only at run time: so is the output shape
        return TensorType(x.dtype, None)
    value = [int(a) for a in np.ravel(value)]
    if not value:
        if ctx["noop_with_empty_axes"]:
            return x
        value = None
    if x.shape is not None and len(x.shape) == 0:
        return x
    return TensorType(x.dtype, reduce_shape(x.shape, value, bool(ctx["keepdims"])))


def _reduced_axes(b, n):
    """The axes a ReduceSum/ReduceMean node reduces (sorted), or None when it is a no-op."""
    at, rank = b.attrs(n), n.inputs[0].type.rank
    if "noop_with_empty_axes" not in at:  # axes as an attribute
        axes = at.get("axes") or ()
    elif len(n.inputs) < 2 or n.inputs[1] is None:
        axes = ()
    else:
        axes = b.known.get(n.inputs[1])
        if axes is None:
            raise ShapeError(f"{n.describe()}: gradient needs axes known at compile time")
        axes = np.ravel(axes)
    if not len(axes) and at.get("noop_with_empty_axes"):
        return None
    return sorted({norm_axis(int(a), rank) for a in axes}) if len(axes) else list(range(rank))


def _reduce_grad(mean: bool):
    """g broadcast back over the reduced axes (divided by their size for the mean)."""
    def rule(b, n, gouts):
        x, g = n.inputs[0], gouts[0]
        axes = _reduced_axes(b, n)
        extra = [None] * (len(n.inputs) - 1)
        if axes is None or not axes:
            return [g] + extra
        if not b.attrs(n)["keepdims"]:
            g = b.op("Unsqueeze", g, b.ints(axes))
        g = b.op("Expand", g, b.shape(x))
        if mean:
            dims = [x.type.shape[a] for a in axes]
            if all(isinstance(d, int) for d in dims):
                count = b.scalar(int(np.prod(dims)), g.type.dtype)
            else:
                size = b.op("ReduceProd", b.op("Gather", b.op("Shape", x), b.ints(axes)), keepdims=0)
                count = b.cast(size, g.type.dtype)
            g = b.op("Div", g, count)
        return [g] + extra
    return rule


_GRADS = {"ReduceSum": _reduce_grad(False), "ReduceMean": _reduce_grad(True)}
# Sum/Prod also run on symbolic (object) shape tensors: ReduceProd(Shape(x)) feeding a Reshape stays symbolic
_SHAPE_OPS = {"ReduceSum", "ReduceProd"}
# reductions whose elementwise part is x itself: a no-op one returns its input
_NOOP_IS_X = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceLogSumExp"}
for _name, _fn in KERNELS.items():
    op(_name, fusion=R, attrs={"keepdims": 1}, infer=_infer_attr, shape_op=_name in _SHAPE_OPS,
       grad=_GRADS.get(_name))(_attr_kernel(_fn))
    op(_name, since=INPUT_AXES_SINCE[_name], fusion=R, attrs={"keepdims": 1, "noop_with_empty_axes": 0},
       infer=_infer_input, shape_op=_name in _SHAPE_OPS,
       grad=_GRADS.get(_name))(_input_kernel(_fn, _name in _NOOP_IS_X))


def _arg(fn):
    def kernel(ctx, x):
        axis = norm_axis(ctx["axis"], x.ndim)
        if ctx["select_last_index"]:
            flipped = np.flip(x, axis)
            idx = x.shape[axis] - 1 - fn(flipped, axis=axis, keepdims=True)
        else:
            idx = fn(x, axis=axis, keepdims=True)
        if not ctx["keepdims"]:
            idx = np.squeeze(idx, axis=axis)
        return np.asarray(idx, dtype=np.int64)
    return kernel


def _infer_arg(ctx, x):
    if x.shape is None:
        return TensorType(np.int64, None)
    axis = norm_axis(ctx["axis"], len(x.shape))
    return TensorType(np.int64, reduce_shape(x.shape, [axis], bool(ctx["keepdims"])))


for _name, _fn in (("ArgMax", np.argmax), ("ArgMin", np.argmin)):
    op(_name, fusion=R, attrs={"axis": 0, "keepdims": 1, "select_last_index": 0}, infer=_infer_arg)(_arg(_fn))
