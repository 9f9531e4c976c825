"""NN activations and losses: Softmax family, NLL / softmax cross-entropy losses, Dropout, SwiGLU."""
from __future__ import annotations

import numpy as np

from ..errors import KernelError, ShapeError
from ..ir import TensorType
from .infer import norm_axis, same
from . import row_ckernels
from .registry import Fusion, op


def acc_dtype(dtype) -> np.dtype:
    """Accumulation dtype: float64 stays float64, every other float type computes in float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _flat2d(x, axis):
    """Opset < 13 semantics: coerce to 2D [prod(shape[:axis]), prod(shape[axis:])]."""
    axis = norm_axis(axis, max(x.ndim, 1)) if x.ndim else 0
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(lead, -1), 1


def _softmax_family(fn):
    """Kernel factory: `fn(x, axis)` in x's own float type (each numpy step rounds to it, as the ONNX
    reference does, which the fp16/bf16 attention cases rely on); older opsets flatten to 2D around `axis`."""
    def old(ctx, x):
        if x.size == 0:
            return x.copy()
        x2, axis = _flat2d(x, ctx["axis"])
        return fn(x2, axis).astype(x.dtype, copy=False).reshape(x.shape)

    def new(ctx, x):
        if x.size == 0:
            return x.copy()
        return fn(x, norm_axis(ctx["axis"], x.ndim)).astype(x.dtype, copy=False)
    return old, new


def softmax(x, axis):
    if axis == x.ndim - 1 and (y := row_ckernels.softmax(x, log=False)) is not None:
        return y
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def log_softmax(x, axis):
    if axis == x.ndim - 1 and (y := row_ckernels.softmax(x, log=True)) is not None:
        return y
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _hardmax(x, axis):
    idx = np.expand_dims(np.argmax(x, axis=axis), axis)
    out = np.zeros_like(x)
    np.put_along_axis(out, idx, 1, axis=axis)
    return out


def _softmax_grad(log: bool, flat: bool):
    """Softmax: y (g - sum(g y)); LogSoftmax: g - exp(y) sum(g); before opset 13 over all axes from `axis`."""
    def rule(b, n, gouts):
        y, g = n.outputs[0], gouts[0]
        rank = y.type.rank
        axis = norm_axis(b.attrs(n)["axis"], max(rank, 1)) if rank else 0
        axes = list(range(axis, rank)) if flat else [axis]
        if rank == 0:
            return [b.op("Mul", g, b.scalar(0, g.type.dtype))]
        if log:
            return [b.op("Sub", g, b.op("Mul", b.op("Exp", y), b.reduce("ReduceSum", g, axes, True)))]
        gy = b.op("Mul", g, y)
        return [b.op("Sub", gy, b.op("Mul", y, b.reduce("ReduceSum", gy, axes, True)))]
    return rule


for _name, _fn in (("Softmax", softmax), ("LogSoftmax", log_softmax), ("Hardmax", _hardmax)):
    _old, _new = _softmax_family(_fn)
    _diff, _log = _name != "Hardmax", _name == "LogSoftmax"
    _g1, _g13 = (_softmax_grad(_log, True), _softmax_grad(_log, False)) if _diff else (None, None)
    op(_name, since=1, attrs={"axis": 1}, infer=same(), grad=_g1)(_old)
    op(_name, since=13, attrs={"axis": -1}, infer=same(), grad=_g13)(_new)


# ---------------------------------------------------------------- losses

def _nll(logp, target, weight, reduction, ignore_index, dtype):
    """Negative log-likelihood of log-probabilities logp [N, C, ...] at integer targets [N, ...]."""
    if target.shape != (logp.shape[0],) + logp.shape[2:]:
        raise ShapeError(f"target shape {target.shape} does not match input shape {logp.shape}")
    c = logp.shape[1]
    t = target.astype(np.int64)
    valid = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    if np.any(valid & ((t < 0) | (t >= c))):
        raise KernelError(f"target values must lie in [0, {c}) (ignore_index {ignore_index})")
    tc = np.where(valid, t, 0)
    picked = -np.take_along_axis(logp, tc[:, None], axis=1)[:, 0]
    w = valid.astype(logp.dtype) if weight is None else np.where(valid, weight.astype(logp.dtype)[tc], 0)
    loss = picked * w
    if reduction == "none":
        return loss.astype(dtype)
    if reduction == "sum":
        return np.asarray(loss.sum(), dtype=dtype)
    if reduction != "mean":
        raise KernelError(f"unknown reduction {reduction!r}")
    if weight is None and ignore_index is None:
        return np.asarray(loss.mean(), dtype=dtype)
    return np.asarray(loss.sum() / w.sum(), dtype=dtype)


def _loss_infer(ctx, x, target, weight=None):
    if ctx["reduction"] != "none":
        return TensorType(x.dtype, ())
    shape = None if target is None else target.shape
    return TensorType(x.dtype, shape)


def _sce_infer(ctx, x, target, weight=None):
    return (_loss_infer(ctx, x, target), x)[:max(ctx.num_outputs, 1)]


LOSS_ATTRS = {"reduction": "mean", "ignore_index": None}


@op("NegativeLogLikelihoodLoss", since=1, attrs=LOSS_ATTRS, infer=_loss_infer)
def _nll_loss(ctx, x, target, weight=None):
    acc = acc_dtype(x.dtype)
    return _nll(x.astype(acc, copy=False), target, weight, ctx["reduction"], ctx["ignore_index"], x.dtype)


@op("SoftmaxCrossEntropyLoss", since=1, attrs=LOSS_ATTRS, infer=_sce_infer)
def _sce_loss(ctx, x, target, weight=None):
    logp = log_softmax(x.astype(acc_dtype(x.dtype), copy=False), 1)
    loss = _nll(logp, target, weight, ctx["reduction"], ctx["ignore_index"], x.dtype)
    return (loss, logp.astype(x.dtype)) if ctx.num_outputs > 1 else loss


# ---------------------------------------------------------------- Dropout, SwiGLU

def _dropout_infer(ctx, x, *rest):
    return (x, TensorType(np.bool_, x.shape))[:max(ctx.num_outputs, 1)]


@op("Dropout", since=1, attrs={"ratio": 0.5}, infer=_dropout_infer)
def _dropout_old(ctx, x):
    """Before opset 12 Dropout had no training input: inference is the identity with an all-true mask."""
    return (x, np.ones(x.shape, np.bool_)) if ctx.num_outputs > 1 else x


@op("Dropout", since=12, attrs={"seed": None}, infer=_dropout_infer, deterministic=False)
def _dropout(ctx, x, ratio=None, training_mode=None):
    ratio = 0.5 if ratio is None else float(np.asarray(ratio))
    training = training_mode is not None and bool(np.asarray(training_mode))
    if not training or ratio == 0:
        return (x, np.ones(x.shape, np.bool_)) if ctx.num_outputs > 1 else x
    if not 0 <= ratio < 1:
        raise KernelError(f"Dropout ratio must be in [0, 1), got {ratio}")
    seed = ctx["seed"]
    rng = np.random.RandomState(int(seed)) if seed is not None else np.random.RandomState()
    mask = rng.uniform(0, 1.0, x.shape) >= ratio
    y = (x * mask / (1 - ratio)).astype(x.dtype)
    return (y, mask) if ctx.num_outputs > 1 else y


def _swiglu_infer(ctx, a, b):
    if a.shape is not None and b.shape is not None and len(a.shape) != len(b.shape):
        raise ShapeError(f"SwiGLU inputs must have the same shape, got {a.shape} and {b.shape}")
    return a


@op("SwiGLU", since=1, attrs={"alpha": 1.0}, fusion=Fusion.ELEMWISE, infer=_swiglu_infer)
def _swiglu(ctx, a, b):
    if a.shape != b.shape:
        raise ShapeError(f"SwiGLU inputs must have the same shape, got {a.shape} and {b.shape}")
    acc = acc_dtype(a.dtype)
    af = a.astype(acc, copy=False)
    y = af / (1 + np.exp(-np.asarray(ctx["alpha"], acc) * af)) * b.astype(acc, copy=False)
    return y.astype(a.dtype, copy=False)


from . import nn_pool, nn_sample  # noqa: E402,F401  (more op families of this module's owner)
