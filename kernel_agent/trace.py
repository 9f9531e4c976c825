"""Tracing a numpy reference into msgx IR: `Traced` arrays record ufuncs (`__array_ufunc__`), functions
(`__array_function__`), methods and operators while computing the concrete result, so every recorded value
has an exact shape and dtype. Anything else raises TraceError naming the call."""
from __future__ import annotations

import itertools
import math

import numpy as np
from onnx import helper

from framework.errors import MsgxError
from framework.ir import Graph, Node, TensorType, Value

OPSET = 18
UNARY = {np.exp: "Exp", np.log: "Log", np.tanh: "Tanh", np.sqrt: "Sqrt", np.abs: "Abs", np.negative: "Neg",
         np.reciprocal: "Reciprocal", np.sin: "Sin", np.cos: "Cos", np.floor: "Floor", np.ceil: "Ceil",
         np.isnan: "IsNaN", np.logical_not: "Not", np.sign: "Sign"}
BINARY = {np.add: "Add", np.subtract: "Sub", np.multiply: "Mul", np.divide: "Div", np.true_divide: "Div",
          np.power: "Pow", np.maximum: "Max", np.minimum: "Min", np.equal: "Equal", np.less: "Less",
          np.greater: "Greater", np.less_equal: "LessOrEqual", np.greater_equal: "GreaterOrEqual",
          np.logical_and: "And", np.logical_or: "Or", np.matmul: "MatMul"}
REDUCE = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "amax": "ReduceMax",
          "min": "ReduceMin", "amin": "ReduceMin"}


class TraceError(MsgxError):
    """The reference does something the tracer cannot record (names the numpy call or construct)."""


class Tracer:
    """Collects nodes and constants while a reference runs on Traced arrays."""

    def __init__(self):
        self.nodes: list[Node] = []
        self.constants: dict[Value, np.ndarray] = {}
        self.ids = itertools.count()

    def value(self, arr: np.ndarray, name: str = "") -> Value:
        return Value(TensorType(arr.dtype, arr.shape), name or f"t{next(self.ids)}")

    def const(self, arr) -> Value:
        arr = np.asarray(arr)
        v = self.value(arr, f"c{next(self.ids)}")
        self.constants[v] = arr
        return v

    def emit(self, op: str, inputs: list, result: np.ndarray, **attrs) -> "Traced":
        result = np.asarray(result)
        out = self.value(result)
        self.nodes.append(Node(op, tuple(inputs), (out,), attrs, "", OPSET, f"{op}_{len(self.nodes)}"))
        return Traced(result, out, self)

    def operand(self, x, dtype) -> Value:
        """IR value of an operand; Python scalars take the result's dtype (numpy 2's weak scalars)."""
        if isinstance(x, Traced):
            v = x.v
            if x.value.dtype != dtype:
                return self.emit("Cast", [v], x.value.astype(dtype), to=helper.np_dtype_to_tensor_dtype(
                    np.dtype(dtype))).v
            return v
        if isinstance(x, (bool, int, float, np.number, np.bool_)):
            return self.const(np.asarray(x, dtype))
        if isinstance(x, np.ndarray):
            return self.const(x.astype(dtype, copy=False) if x.dtype != dtype and dtype.kind == "f" else x)
        raise TraceError(f"operand of type {type(x).__name__} cannot be traced")


def _raw(x):
    return x.value if isinstance(x, Traced) else x


class Traced(np.lib.mixins.NDArrayOperatorsMixin):
    """An array in a trace: the concrete value plus its IR value."""

    __array_priority__ = 1000

    def __init__(self, value: np.ndarray, v: Value, tracer: Tracer):
        self.value, self.v, self.tracer = value, v, tracer

    shape = property(lambda self: self.value.shape)
    ndim = property(lambda self: self.value.ndim)
    dtype = property(lambda self: self.value.dtype)
    size = property(lambda self: self.value.size)
    T = property(lambda self: self.transpose())

    def __len__(self):
        return len(self.value)

    def __bool__(self):
        raise TraceError("data-dependent control flow (bool() of a traced array)")

    def __float__(self):
        raise TraceError("float() of a traced array (data leaves the trace)")

    def __array__(self, dtype=None, copy=None):
        raise TraceError("conversion of a traced array to a plain ndarray (untraceable numpy call)")

    def item(self):
        raise TraceError(".item() of a traced array (data leaves the trace)")

    # numpy protocol -------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *args, **kw):
        t = self.tracer
        if kw.get("out") is not None:
            raise TraceError(f"{ufunc.__name__} with out= (in-place update)")
        if method == "reduce" and ufunc in (np.add, np.maximum, np.minimum):
            name = {np.add: "sum", np.maximum: "max", np.minimum: "min"}[ufunc]
            return _reduce(args[0], name, kw.get("axis", 0), kw.get("keepdims", False))
        if method != "__call__" or kw:
            raise TraceError(f"numpy ufunc {ufunc.__name__}.{method} with {sorted(kw)} is not traceable")
        result = np.asarray(ufunc(*[_raw(a) for a in args]))
        if ufunc in UNARY:
            return t.emit(UNARY[ufunc], [t.operand(args[0], result.dtype)], result)
        if ufunc is np.square:
            x = t.operand(args[0], result.dtype)
            return t.emit("Mul", [x, x], result)
        if ufunc in BINARY:
            op = BINARY[ufunc]
            dt = np.result_type(*[_raw(a) for a in args]) if result.dtype == bool else result.dtype
            return t.emit(op, [t.operand(a, dt) for a in args], result)
        raise TraceError(f"numpy ufunc {ufunc.__name__} is not traceable")

    def __array_function__(self, func, types, args, kwargs):
        name = func.__name__
        handler = FUNCTIONS.get(name)
        if handler is None:
            raise TraceError(f"numpy function np.{name} is not traceable")
        return handler(*args, **kwargs)

    # methods ---------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False, dtype=None):
        return _reduce(self, "sum", axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return _reduce(self, "mean", axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return _reduce(self, "max", axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return _reduce(self, "min", axis, keepdims)

    def var(self, axis=None, keepdims=False):
        return _var(self, axis, keepdims=keepdims)

    def argmax(self, axis=None, keepdims=False):
        return _argmax(self, axis, keepdims=keepdims)

    def cumsum(self, axis=None):
        return _cumsum(self, axis)

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return _transpose(self, axes or None)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _reshape(self, shape)

    def astype(self, dtype):
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        return self.tracer.emit("Cast", [self.v], self.value.astype(dtype),
                                to=helper.np_dtype_to_tensor_dtype(dtype))

    def __getitem__(self, key):
        return _getitem(self, key)


def _axes(x: Traced, axis) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.ndim))
    axis = axis if isinstance(axis, (tuple, list)) else (axis,)
    return tuple(sorted(int(a) % x.ndim for a in axis))


def _reduce(x, name, axis=None, keepdims=False, **kw):
    if not isinstance(x, Traced):
        raise TraceError(f"np.{name} of a non-traced operand")
    extra = sorted(k for k, v in kw.items() if v is not None)
    if extra:
        raise TraceError(f"np.{name} with {', '.join(extra)}")
    axes = _axes(x, axis)
    fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "amax": np.max, "min": np.min, "amin": np.min}[name]
    result = fn(x.value, axis=axes, keepdims=keepdims)
    t = x.tracer
    return t.emit(REDUCE[name], [x.v, t.const(np.array(axes, np.int64))], result, keepdims=int(keepdims))


def _var(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kw):
    mu = _reduce(x, "mean", axis, True)
    d = x - mu
    v = _reduce(d * d, "mean", axis, keepdims)
    if not ddof:
        return v
    n = math.prod(x.shape[a] for a in _axes(x, axis))
    return v * v.value.dtype.type(n / (n - ddof))


def _argmax(x, axis=None, out=None, keepdims=False):
    if axis is None:
        raise TraceError("np.argmax without axis (flat index)")
    axis = int(axis) % x.ndim
    return x.tracer.emit("ArgMax", [x.v], np.argmax(x.value, axis=axis, keepdims=keepdims), axis=axis,
                         keepdims=int(keepdims), select_last_index=0)


def _cumsum(x, axis=None, dtype=None, out=None):
    if axis is None:
        raise TraceError("np.cumsum without axis (flattens)")
    t = x.tracer
    axis = int(axis) % x.ndim
    return t.emit("CumSum", [x.v, t.const(np.array(axis, np.int64))], np.cumsum(x.value, axis=axis),
                  exclusive=0, reverse=0)


def _transpose(x, axes=None):
    perm = tuple(range(x.ndim))[::-1] if axes is None else tuple(int(a) % x.ndim for a in axes)
    return x.tracer.emit("Transpose", [x.v], np.transpose(x.value, perm), perm=perm)


def _reshape(x, shape, order="C", **kw):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    result = x.value.reshape(shape)
    return x.tracer.emit("Reshape", [x.v, x.tracer.const(np.array(result.shape, np.int64))], result)


def _where(cond, a, b):
    vals = [_raw(c) for c in (cond, a, b)]
    result = np.where(*vals)
    t = next(v for v in (cond, a, b) if isinstance(v, Traced)).tracer
    return t.emit("Where", [t.operand(cond, np.dtype(bool)), t.operand(a, result.dtype),
                            t.operand(b, result.dtype)], result)


def _clip(x, lo, hi, **kw):
    y = x
    if lo is not None:
        y = np.maximum(y, lo)
    if hi is not None:
        y = np.minimum(y, hi)
    return y


def _take_along_axis(arr, indices, axis):
    t = arr.tracer
    axis = int(axis) % arr.ndim
    result = np.take_along_axis(arr.value, _raw(indices), axis)
    return t.emit("GatherElements", [arr.v, t.operand(indices, _raw(indices).dtype)], result, axis=axis)


def _getitem(x: Traced, key):
    """Views (None / Ellipsis / full slices) become Reshape; x[np.arange(n), idx] becomes GatherElements."""
    key = key if isinstance(key, tuple) else (key,)
    if len(key) == 2 and x.ndim == 2 and isinstance(key[0], np.ndarray) and \
            np.array_equal(key[0], np.arange(x.shape[0])):
        idx = key[1]
        picked = _take_along_axis(x, _reshape(idx, (-1, 1)) if isinstance(idx, Traced) else
                                  np.asarray(idx).reshape(-1, 1), 1)
        return _reshape(picked, (x.shape[0],))
    def plain(k):
        return k is None or k is Ellipsis or (isinstance(k, slice) and k == slice(None)) or \
            (isinstance(k, (int, np.integer)) and k in (0, -1))
    if all(plain(k) for k in key) and x.value[key].size == x.size:  # a view of the same elements
        result = x.value[key]
        return _reshape(x, result.shape)
    raise TraceError(f"indexing with {key!r} is not traceable")


def _fn_reduce(name):
    def handler(a, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return _reduce(a, name, axis, keepdims, dtype=dtype, out=out, **kw)
    return handler


FUNCTIONS = {
    **{name: _fn_reduce(name) for name in ("sum", "mean", "max", "amax", "min", "amin")},
    "var": _var, "argmax": _argmax, "cumsum": _cumsum, "transpose": _transpose, "reshape": _reshape,
    "where": _where, "clip": _clip, "take_along_axis": _take_along_axis,
    "dot": lambda a, b, out=None: np.matmul(a, b),
    "swapaxes": lambda a, i, j: _transpose(a, [j if k == i else i if k == j else k for k in range(a.ndim)]),
}


def trace(fn, inputs: list, names: list[str] | None = None) -> Graph:
    """Run `fn(*inputs)` on Traced arrays and return the recorded Graph; raises TraceError if untraceable."""
    t = Tracer()
    args = []
    for i, a in enumerate(inputs):
        a = np.asarray(a)
        args.append(Traced(a, t.value(a, names[i] if names else f"in{i}"), t))
    try:
        out = fn(*args)
    except TraceError:
        raise
    except Exception as e:  # noqa: BLE001 - the reference failed on traced arrays: report what numpy said
        raise TraceError(f"tracing failed: {type(e).__name__}: {e}") from e
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if not all(isinstance(o, Traced) for o in outs):
        raise TraceError("an output does not depend on the inputs (or is not an array)")
    return Graph(tuple(a.v for a in args), tuple(o.v for o in outs), tuple(t.nodes), dict(t.constants),
                 getattr(fn, "__name__", "traced"))
