"""Functional ops on Tensors with MindSpore-like names (`framework.ops.relu(x)`): thin wrappers that apply
registry ops, so the same call runs eagerly, records onto a grad tape, or traces into a jit graph."""

from __future__ import annotations

import math

import numpy as np

from ..dtypes import onnx_elem_type
from ..errors import ArgumentError, ShapeError
from ..tensor import Parameter, Tensor, apply, wrap

__all__ = [
    "abs",
    "add",
    "argmax",
    "assign",
    "avg_pool2d",
    "batch_norm",
    "cast",
    "concat",
    "conv2d",
    "cos",
    "cross_entropy",
    "dense",
    "div",
    "dropout",
    "equal",
    "erf",
    "exp",
    "expand_dims",
    "flatten",
    "gather",
    "gelu",
    "getitem",
    "greater",
    "layer_norm",
    "less",
    "log",
    "log_softmax",
    "matmul",
    "max_pool2d",
    "maximum",
    "minimum",
    "mse_loss",
    "mul",
    "neg",
    "one_hot",
    "ones",
    "ones_like",
    "pow",
    "reduce_max",
    "reduce_mean",
    "reduce_sum",
    "relu",
    "reshape",
    "sigmoid",
    "silu",
    "sin",
    "softmax",
    "sqrt",
    "squeeze",
    "sub",
    "tanh",
    "transpose",
    "where",
    "zeros",
    "zeros_like",
]


_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2}
_DEFAULT = {0: np.dtype(np.bool_), 1: np.dtype(np.int64), 2: np.dtype(np.float32)}  # of Python numbers


def _rank(x) -> int:
    if isinstance(x, Tensor):
        return _KIND_RANK.get(np.dtype(x.dtype).kind, 2)
    kind = np.asarray(x).dtype.kind
    return _KIND_RANK.get(kind, 2)


def _common_dtype(a, b, floating: bool = False) -> np.dtype:
    """The dtype two operands compute in, promoted as MindSpore and torch do: a float operand beats an int or
    bool one (int64 + float32 -> float32), within one kind the wider dtype wins (float16 + float32 ->
    float32), and a Python number does not widen a tensor of its kind (a float16 tensor + 1.0 stays float16;
    an int tensor * 0.5 is float32). `floating`: an integer result becomes float32 (true division)."""
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    ra, rb = _rank(a), _rank(b)
    if ta and tb:
        da, db = np.dtype(a.dtype), np.dtype(b.dtype)
        dtype = np.promote_types(da, db) if ra == rb else (da if ra > rb else db)
    elif ta or tb:
        t, rt, rn = (a, ra, rb) if ta else (b, rb, ra)
        dtype = np.dtype(t.dtype) if rt >= rn else _DEFAULT[rn]
    else:
        dtype = _DEFAULT[max(ra, rb)]
    return np.dtype(np.float32) if floating and dtype.kind in "biu" else dtype


def _as(x, dtype: np.dtype) -> Tensor:
    if isinstance(x, Tensor):
        return x if np.dtype(x.dtype) == dtype else cast(x, dtype)
    return Tensor(np.asarray(x, dtype))


def _pair(a, b, floating: bool = False):
    """Binary operands as Tensors of their common dtype (see _common_dtype); the casts are ops, so gradients
    flow through them."""
    dtype = _common_dtype(a, b, floating)
    return _as(a, dtype), _as(b, dtype)


def _ints(values) -> Tensor:
    return Tensor(np.array(list(values), np.int64).reshape(-1))


def _binary(op):
    def fn(x, y):
        return apply(op, *_pair(x, y))

    fn.__name__ = op.lower()
    return fn


def _unary(op):
    def fn(x):
        return apply(op, wrap(x))

    fn.__name__ = op.lower()
    return fn


add, sub, mul, pow = (_binary(o) for o in ("Add", "Sub", "Mul", "Pow"))


def div(x, y):
    """True division (as MindSpore's ops.div): integer operands divide as float32."""
    return apply("Div", *_pair(x, y, floating=True))


maximum, minimum, greater, less, equal = (_binary(o) for o in ("Max", "Min", "Greater", "Less", "Equal"))
matmul = _binary("MatMul")
neg, exp, log, sqrt, tanh, sigmoid, relu, erf, abs, sin, cos = (
    _unary(o) for o in ("Neg", "Exp", "Log", "Sqrt", "Tanh", "Sigmoid", "Relu", "Erf", "Abs", "Sin", "Cos")
)


def gelu(x, approximate: str = "none"):
    """x * Phi(x) from primitives (erf form), so it differentiates and fuses as an elementwise chain."""
    x = wrap(x)
    if approximate == "tanh":
        inner = (x + x * x * x * 0.044715) * math.sqrt(2.0 / math.pi)
        return x * (tanh(inner) + 1.0) * 0.5
    return x * (erf(x * (1.0 / math.sqrt(2.0))) + 1.0) * 0.5


def silu(x):
    x = wrap(x)
    return x * sigmoid(x)


def where(cond, x, y):
    x, y = _pair(x, y)
    return apply("Where", wrap(cond), x, y)


def cast(x, dtype):
    return apply("Cast", wrap(x), to=onnx_elem_type(np.dtype(dtype)))


def reshape(x, shape):
    return apply("Reshape", wrap(x), _ints(shape))


def transpose(x, perm=None):
    """Permute x's axes; no perm reverses them (as numpy and MindSpore's Tensor.transpose())."""
    x = wrap(x)
    perm = tuple(range(len(x.shape)))[::-1] if perm is None or len(perm) == 0 else perm
    return apply("Transpose", x, perm=tuple(int(p) for p in perm))


def flatten(x, start_dim: int = 1):
    x = wrap(x)
    return reshape(x, (0,) * start_dim + (-1,))


def expand_dims(x, axis: int):
    return apply("Unsqueeze", wrap(x), _ints([axis]))


def squeeze(x, axis=None):
    return apply("Squeeze", wrap(x), None if axis is None else _ints(np.atleast_1d(axis)))


def concat(tensors, axis: int = 0):
    return apply("Concat", *(wrap(t) for t in tensors), axis=axis)


def gather(x, indices, axis: int = 0):
    idx = indices if isinstance(indices, Tensor) else Tensor(np.asarray(indices, np.int64))
    return apply("Gather", wrap(x), idx, axis=axis)


def getitem(x, index):
    """Basic indexing: ints and step-1 slices (Slice, then Squeeze for the int axes)."""
    index = index if isinstance(index, tuple) else (index,)
    starts, ends, axes, drop = [], [], [], []
    for ax, ix in enumerate(index):
        if isinstance(ix, (int, np.integer)):
            starts.append(int(ix)), ends.append(int(ix) + 1 if ix != -1 else 2**62), axes.append(ax)
            drop.append(ax)
        elif isinstance(ix, slice) and ix.step in (None, 1):
            if ix.start is None and ix.stop is None:
                continue
            starts.append(ix.start or 0), ends.append(2**62 if ix.stop is None else ix.stop), axes.append(ax)
        else:
            raise ShapeError(f"unsupported index {ix!r}: use ints and slices with step 1")
    y = apply("Slice", wrap(x), _ints(starts), _ints(ends), _ints(axes)) if axes else wrap(x)
    return squeeze(y, drop) if drop else y


def _axes(x, axis):
    if axis is None:
        return None
    return _ints(np.atleast_1d(axis))


def reduce_sum(x, axis=None, keepdims=False):
    return apply("ReduceSum", wrap(x), _axes(x, axis), keepdims=int(keepdims))


def reduce_mean(x, axis=None, keepdims=False):
    return apply("ReduceMean", wrap(x), _axes(x, axis), keepdims=int(keepdims))


def reduce_max(x, axis=None, keepdims=False):
    return apply("ReduceMax", wrap(x), _axes(x, axis), keepdims=int(keepdims))


def argmax(x, axis: int = -1, keepdims: bool = False):
    return apply("ArgMax", wrap(x), axis=axis, keepdims=int(keepdims))


def softmax(x, axis: int = -1):
    return apply("Softmax", wrap(x), axis=axis)


def log_softmax(x, axis: int = -1):
    return apply("LogSoftmax", wrap(x), axis=axis)


def dense(x, weight, bias=None):
    """x @ weight.T + bias, weight [out, in] as in MindSpore's Dense."""
    y = (
        apply("Gemm", wrap(x), weight, bias, transB=1)
        if wrap(x).ndim == 2
        else matmul(x, transpose(weight, (1, 0)))
    )
    return y if bias is None or wrap(x).ndim == 2 else y + bias


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, group=1, pad_mode="pad"):
    """NCHW convolution; pad_mode "same" pads to ceil(H / stride) outputs, "valid" not at all, "pad" by
    `padding`: one value for every side, (h, w), or MindSpore's (top, bottom, left, right)."""
    s, d = _two(stride), _two(dilation)
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        top, bottom, left, right = (int(v) for v in padding)
        p = (top, left, bottom, right)  # ONNX's order: every axis's start, then every axis's end
    else:
        p = _two(padding) * 2
    pads = {"same": {"auto_pad": "SAME_UPPER"}, "valid": {"pads": (0, 0, 0, 0)}}.get(pad_mode, {"pads": p})
    return apply(
        "Conv",
        wrap(x),
        weight,
        bias,
        strides=s,
        dilations=d,
        group=group,
        kernel_shape=tuple(weight.shape[2:]),
        **pads,
    )


def _two(v):
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    k = _two(kernel_size)
    return apply(
        "MaxPool", wrap(x), kernel_shape=k, strides=_two(stride or kernel_size), pads=_two(padding) * 2
    )


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad: bool = True):
    """Windows averaged over kernel_size elements, the zero padding counted (MindSpore's and PyTorch's
    default), or over the elements inside the input with count_include_pad=False (ONNX's default)."""
    k = _two(kernel_size)
    return apply("AveragePool", wrap(x), kernel_shape=k, strides=_two(stride or kernel_size),
                 pads=_two(padding) * 2, count_include_pad=int(count_include_pad))


def layer_norm(x, gamma, beta, axis: int = -1, epsilon: float = 1e-5):
    return apply("LayerNormalization", wrap(x), gamma, beta, axis=axis, epsilon=epsilon)


def batch_norm(x, gamma, beta, mean, var, training: bool, momentum: float = 0.9, eps: float = 1e-5):
    """Batch statistics from primitives in training (and the running statistics updated in place)."""
    x = wrap(x)
    axes = [0] + list(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        mu = reduce_mean(x, axes, keepdims=True)
        centred = x - mu
        v = reduce_mean(centred * centred, axes, keepdims=True)
        assign(mean, mean * momentum + reshape(mu, (-1,)) * (1 - momentum))
        assign(var, var * momentum + reshape(v, (-1,)) * (1 - momentum))
    else:
        centred, v = x - reshape(mean, shape), reshape(var, shape)
    return centred / sqrt(v + eps) * reshape(gamma, shape) + reshape(beta, shape)


def dropout(x, p: float = 0.5, training: bool = True):
    if not training or p == 0:
        return wrap(x)
    x = wrap(x)
    keep = cast(greater(apply("RandomUniformLike", x), p), x.dtype)
    return x * keep * (1.0 / (1.0 - p))


def one_hot(indices, depth: int, dtype=np.float32):
    return apply("OneHot", wrap(indices), _ints([depth]), Tensor(np.array([0, 1], dtype)), axis=-1)


REDUCTIONS = ("mean", "sum", "none")


def check_reduction(loss: str, reduction) -> None:
    """A loss's reduction must be one of REDUCTIONS (ArgumentError naming them, not a bare KeyError)."""
    if reduction not in REDUCTIONS:
        raise ArgumentError(f"{loss}: unknown reduction {reduction!r}; valid values are {list(REDUCTIONS)}")


def _reduce_loss(per, loss: str, reduction: str):
    check_reduction(loss, reduction)
    return per if reduction == "none" else (reduce_mean if reduction == "mean" else reduce_sum)(per)


def cross_entropy(logits, labels, reduction: str = "mean", label_smoothing: float = 0.0):
    """Softmax cross entropy of logits [N, C] (or [..., C]) and int labels [N] (or [...])."""
    logits = wrap(logits)
    c = logits.shape[-1]
    # labels[..., None] == arange(C): elementwise, so the target fuses with the log-softmax product at O1
    labels = wrap(labels) if wrap(labels).dtype == np.int64 else cast(labels, np.int64)
    target = cast(equal(expand_dims(labels, -1), Tensor(np.arange(c, dtype=np.int64))), logits.dtype)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / c
    per = neg(reduce_sum(log_softmax(logits, -1) * target, -1))
    return _reduce_loss(per, "cross_entropy", reduction)


def mse_loss(pred, target, reduction: str = "mean"):
    d = sub(pred, target)
    per = d * d
    return _reduce_loss(per, "mse_loss", reduction)


def assign(param: Parameter, value) -> Parameter:
    return param.assign_value(wrap(value))


def zeros(shape, dtype=np.float32) -> Tensor:
    return Tensor(np.zeros(shape, dtype))


def ones(shape, dtype=np.float32) -> Tensor:
    return Tensor(np.ones(shape, dtype))


def zeros_like(x) -> Tensor:
    x = wrap(x)
    return apply("ConstantOfShape", apply("Shape", x), value=np.zeros(1, x.dtype))


def ones_like(x) -> Tensor:
    x = wrap(x)
    return apply("ConstantOfShape", apply("Shape", x), value=np.ones(1, x.dtype))
