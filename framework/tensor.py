"""Tensor and Parameter: numpy-backed values that record the registry ops applied to them.

Outside any trace an op runs its kernel at once (PyNative). Inside a trace (a `value_and_grad` tape in
PyNative, or a `jit` graph trace) each op is also emitted as an IR node with the graph builder, so the
backward pass is built from the registry's `grad` rules in both modes.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

from .errors import GradError, KernelError, MsgxError, ShapeError
from .graph_builder import OPSET, Builder
from .ir import Node, TensorType, Value, symbol
from .passes import attr_key

_LOCAL = threading.local()
_names = itertools.count()


def current_trace() -> "Trace | None":
    stack = getattr(_LOCAL, "stack", None)
    return stack[-1] if stack else None


class Trace:
    """An op recorder: `eager` tapes also run every kernel; graph traces only build IR."""

    def __init__(self, eager: bool, name: str = "trace"):
        self.eager = eager
        self.b = Builder(name=name)
        self.env: dict[Value, np.ndarray] = {}  # eager: every recorded value's array
        self.leaves: dict[int, tuple[Value, "Tensor"]] = {}  # id(outside tensor) -> (its Value, the tensor)
        self.inputs: list[tuple[Value, "Tensor"]] = []  # graph mode: leaves fed at run time (args, params)
        self.updates: dict[int, tuple["Parameter", Value]] = {}  # graph mode: parameter assignments

    def __enter__(self):
        stack = _LOCAL.__dict__.setdefault("stack", [])
        stack.append(self)
        return self

    def __exit__(self, *exc):
        _LOCAL.stack.pop()

    def leaf(self, t: "Tensor", as_input: bool = False) -> Value:
        """The Value standing for an outside tensor: an input (args, parameters), else a constant."""
        hit = self.leaves.get(id(t))
        if hit is not None:
            return hit[0]
        if t._data is None:
            raise GradError(f"tensor {t!r} has no data outside the trace that made it")
        arr = t._data
        if self.eager or as_input or isinstance(t, Parameter):
            v = Value(TensorType(arr.dtype, arr.shape), getattr(t, "name", None) or f"leaf{next(_names)}")
            if self.eager:
                self.env[v] = arr
                if arr.dtype.kind != "f":  # integer leaves are shape data: inference needs their contents
                    self.b.known[v] = arr
            else:
                self.inputs.append((v, t))
        else:
            v = self.b.const(arr)
        self.leaves[id(t)] = (v, t)
        return v

    def value_of(self, t: "Tensor") -> Value:
        return t._value if t._trace is self else self.leaf(t)


_KERNELS: dict = {}


def kernel_for(op: str, domain: str, opset: int, attrs: dict, n_out: int):
    """A cached reference kernel for one op signature (PyNative caches single-op kernels the same way)."""
    key = (op, domain, opset, attr_key(tuple(sorted(attrs.items()))), n_out)
    k = _KERNELS.get(key)
    if k is None:
        from .backends import NUMPY  # lazy: backends imports ops, which re-exports this module's users

        node = Node(op, (), tuple(Value(None, f"o{i}") for i in range(n_out)), attrs, domain, opset, op)
        k = _KERNELS[key] = NUMPY.compile(node)
    return k


def apply(op: str, *inputs: "Tensor | None", outputs: int = 1, domain: str = "", opset: int = OPSET, **attrs):
    """Apply a registry op to tensors (None = omitted input); a Tensor, or a tuple when outputs > 1."""
    tr = current_trace()
    if tr is None:
        arrays = [None if t is None else t._data for t in inputs]
        results = _run_eager(op, domain, opset, attrs, outputs, arrays)
        outs = tuple(Tensor(r) for r in results)
    else:
        vals = [None if t is None else tr.value_of(t) for t in inputs]
        tr.b.opset = opset
        got = tr.b.op(op, *vals, outputs=outputs, domain=domain, **attrs)
        got = got if isinstance(got, tuple) else (got,)
        if tr.eager:
            arrays = [None if v is None else tr.env[v] for v in vals]
            results = _run_eager(op, domain, opset, attrs, outputs, arrays)
            for v, r in zip(got, results):
                tr.env[v] = r
                if r.dtype.kind != "f":
                    tr.b.known.setdefault(v, r)
            outs = tuple(Tensor(r, _value=v, _trace=tr) for v, r in zip(got, results))
        else:
            outs = tuple(Tensor(None, _value=v, _trace=tr) for v in got)
    return outs[0] if outputs == 1 else outs


def _run_eager(op, domain, opset, attrs, outputs, arrays):
    """The op's kernel on arrays. PyNative runs no shape inference first: numpy's own complaint about the
    operands (a broadcast, a matmul's inner dims) becomes a KernelError, typed as graph mode's checks are."""
    try:
        return kernel_for(op, domain, opset, attrs, outputs)(*arrays)
    except MsgxError:
        raise
    except (ValueError, IndexError, TypeError) as e:
        shapes = [None if a is None else tuple(np.shape(a)) for a in arrays]
        raise KernelError(f"{op} of inputs shaped {shapes}: {e}") from None


def _dims(shape):
    """Placeholder dims: None becomes a fresh positive symbol (a dynamic dim, as in `Cell.set_inputs`)."""
    return tuple(symbol(f"d{next(_names)}") if d is None else d for d in shape)


class Tensor:
    """A numpy-interoperable tensor. `Tensor(array)`; `Tensor(shape=(None, 64), dtype=np.float32)` is a
    placeholder for `Cell.set_inputs` (None dims are dynamic)."""

    __array_priority__ = 100  # numpy defers `ndarray op Tensor` to our reflected operators

    def __init__(self, input_data=None, dtype=None, shape=None, *, _value=None, _trace=None):
        if isinstance(input_data, Tensor):
            input_data = input_data.asnumpy()
        self._value, self._trace, self._spec = _value, _trace, None
        if input_data is None:
            self._data = None
            if _value is None:
                if shape is None or dtype is None:
                    raise ShapeError("a Tensor without data needs both shape and dtype")
                self._spec = TensorType(np.dtype(dtype), _dims(shape))
        else:
            arr = np.asarray(input_data, dtype=dtype)
            if dtype is None and arr.dtype == np.float64 and not isinstance(input_data, np.ndarray):
                arr = arr.astype(np.float32)  # Python floats default to float32, as in MindSpore
            self._data = arr

    # ------------------------------------------------------------------ properties
    @property
    def _type(self) -> TensorType:
        if self._data is not None and (self._trace is None or self._trace.eager):
            return TensorType(self._data.dtype, self._data.shape)
        return self._value.type if self._value is not None else self._spec

    @property
    def shape(self) -> tuple:
        return tuple(self._type.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._type.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def asnumpy(self) -> np.ndarray:
        if self._data is None:
            raise GradError("a traced tensor has no value yet (graph mode): return it from the jit function")
        return self._data

    def __array__(self, dtype=None, copy=None):
        a = self.asnumpy()
        return a if dtype is None else a.astype(dtype)

    def item(self):
        return self.asnumpy().item()

    def __float__(self):
        return float(self.asnumpy())

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d Tensor")
        return self.shape[0]

    def __bool__(self):
        """The truth of a one-element tensor's value, as numpy: more elements are ambiguous (ValueError), and a
        traced tensor has no value yet (GradError, as asnumpy)."""
        if int(np.prod(self.shape)) != 1:
            raise ValueError(f"the truth value of a Tensor of shape {list(self.shape)} is ambiguous: use .any() or "
                            ".all() on its numpy value")
        return bool(self.asnumpy().reshape(-1)[0])

    def __repr__(self):
        if self._data is None:
            return f"Tensor(shape={list(self.shape)}, dtype={self.dtype}, traced)"
        return f"Tensor({np.array2string(self._data, threshold=20)}, dtype={self.dtype})"

    # ------------------------------------------------------------------ operators (functional ops)
    def _f(self):
        from .ops import functional

        return functional

    def __add__(self, o):
        return self._f().add(self, o)

    def __radd__(self, o):
        return self._f().add(o, self)

    def __sub__(self, o):
        return self._f().sub(self, o)

    def __rsub__(self, o):
        return self._f().sub(o, self)

    def __mul__(self, o):
        return self._f().mul(self, o)

    def __rmul__(self, o):
        return self._f().mul(o, self)

    def __truediv__(self, o):
        return self._f().div(self, o)

    def __rtruediv__(self, o):
        return self._f().div(o, self)

    def __pow__(self, o):
        return self._f().pow(self, o)

    def __rpow__(self, o):
        return self._f().pow(o, self)

    def __matmul__(self, o):
        return self._f().matmul(self, o)

    def __rmatmul__(self, o):
        return self._f().matmul(o, self)

    def __neg__(self):
        return self._f().neg(self)

    def __abs__(self):
        return self._f().abs(self)

    def __gt__(self, o):
        return self._f().greater(self, o)

    def __lt__(self, o):
        return self._f().less(self, o)

    def __eq__(self, o):
        return self._f().equal(self, o)

    __hash__ = object.__hash__

    def __getitem__(self, index):
        return self._f().getitem(self, index)

    def reshape(self, *shape):
        return self._f().reshape(
            self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        )

    def transpose(self, *perm):
        """transpose() reverses the axes; transpose(1, 0) or transpose((1, 0)) permutes them."""
        return self._f().transpose(
            self, perm[0] if len(perm) == 1 and isinstance(perm[0], (tuple, list)) else perm
        )

    def astype(self, dtype):
        return self._f().cast(self, dtype)

    def sum(self, axis=None, keepdims=False):
        return self._f().reduce_sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return self._f().reduce_mean(self, axis, keepdims)

    def argmax(self, axis=-1):
        return self._f().argmax(self, axis)

    @property
    def T(self):
        return self._f().transpose(self, tuple(range(self.ndim))[::-1])


class Parameter(Tensor):
    """A trainable (or state) tensor owned by a Cell or an optimizer; updated in place by `assign_value`."""

    def __init__(self, default_input, name: str | None = None, requires_grad: bool = True):
        super().__init__(default_input)
        if self._data.dtype == np.float64:
            self._data = self._data.astype(np.float32)
        self.name = name or f"param{next(_names)}"
        self.requires_grad = requires_grad

    def __repr__(self):
        return f"Parameter(name={self.name!r}, shape={list(self.shape)}, dtype={self.dtype})"

    def set_data(self, data) -> "Parameter":
        """Replace the value outside any trace (loading weights)."""
        arr = np.asarray(data.asnumpy() if isinstance(data, Tensor) else data)
        if arr.shape != self._data.shape:
            raise ShapeError(
                f"parameter {self.name!r}: new value has shape {arr.shape}, expected " f"{self._data.shape}"
            )
        self._data = arr.astype(self._data.dtype, copy=False)
        return self

    def set_dtype(self, dtype) -> "Parameter":
        """Change the parameter's dtype (e.g. float64 for exact checks), as MindSpore's set_dtype."""
        self._data = self._data.astype(np.dtype(dtype))
        return self

    def assign_value(self, value: Tensor) -> "Parameter":
        """self = value: at once in PyNative; a graph output written back after each run in graph mode."""
        tr = current_trace()
        if not isinstance(value, Tensor):
            value = Tensor(np.asarray(value, self.dtype))
        if tuple(value.shape) != tuple(self.shape):
            raise ShapeError(
                f"parameter {self.name!r}: assigned shape {tuple(value.shape)}, expected "
                f"{tuple(self.shape)}"
            )
        if tr is not None:
            v = tr.value_of(value)
            tr.leaves[id(self)] = (v, self)  # later reads in this trace see the new value
            if not tr.eager:
                tr.updates[id(self)] = (self, v)
                return self
        self._data = value.asnumpy()
        return self


def wrap(x) -> Tensor:
    """A Tensor for x (Tensor, array or Python number)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, MsgxError):
        raise x
    return Tensor(x)
