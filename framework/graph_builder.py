"""A small graph builder for rewrites in the framework core: `b.op("Mul", x, c)` emits a node typed by the
op registry's inference rule. Shape computations on known values are tracked (symbolically), never folded."""
from __future__ import annotations

import itertools
from typing import Mapping

import numpy as np

from . import ops
from .dtypes import onnx_elem_type
from .errors import ShapeError
from .ir import Node, TensorType, Value
from .passes import propagate_value

OPSET = 18  # the default-domain opset of emitted nodes (axes as inputs for every Reduce*)
_ids = itertools.count()  # value and node names stay unique across builders


class Builder:
    """Collects `nodes` and new `constants`; `known` maps values with compile-time contents (the graph's
    constants) for inference rules. Shape values derived from them are tracked in `self.known`."""

    def __init__(self, known: Mapping[Value, np.ndarray] | None = None, name: str = "", opset: int = OPSET):
        self.name, self.opset = name, opset
        self.nodes: list[Node] = []
        self.constants: dict[Value, np.ndarray] = {}
        self.known: dict[Value, np.ndarray] = dict(known or {})
        self._cache: dict[tuple, Value] = {}
        self.needed: set | None = None  # values whose gradients are wanted (None: all); set by autodiff

    def const(self, array, dtype=None) -> Value:
        """A constant Value, deduplicated by dtype, shape and bytes within this builder."""
        arr = np.asarray(array, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._cache:
            v = self._cache[key] = Value(TensorType(arr.dtype, arr.shape), f"{self.name}/const{next(_ids)}")
            self.constants[v] = self.known[v] = arr
        return self._cache[key]

    def scalar(self, value, dtype) -> Value:
        return self.const(np.array(value).astype(dtype))

    def ints(self, values) -> Value:
        return self.const(np.array(list(values), dtype=np.int64).reshape(-1))

    def op(self, op: str, *inputs: Value | None, outputs: int = 1, domain: str = "", **attrs):
        """Emit `op(*inputs)`; returns its output Value (a tuple when outputs > 1)."""
        opdef = ops.get(op, domain, self.opset)
        full = {**opdef.attrs, **attrs}
        consts = tuple(None if v is None else self.known.get(v) for v in inputs)
        if opdef.infer is None:
            raise ShapeError(f"{op} has no inference rule; the builder cannot type its outputs")
        t = opdef.infer(ops.Ctx(full, outputs, self.opset, self.name, consts),
                        *(None if v is None else v.type for v in inputs))
        types = tuple(t) if isinstance(t, (tuple, list)) else (t,)
        name = f"{self.name}/{op}{next(_ids)}"
        outs = tuple(Value(t, f"{name}:{i}" if outputs > 1 else name) for i, t in enumerate(types[:outputs]))
        node = Node(op, tuple(inputs), outs, attrs, domain, self.opset, name)
        self.nodes.append(node)
        propagate_value(node, opdef, full, self.known)
        return outs[0] if outputs == 1 else outs

    # ------------------------------------------------------------ helpers used by most rules

    def needs(self, v: Value | None) -> bool:
        """Whether a gradient rule should compute the gradient of input v (skips constants' gradients)."""
        return v is not None and (self.needed is None or v in self.needed)

    @staticmethod
    def attrs(node: Node) -> dict:
        """node's attributes with the op's defaults filled in."""
        return {**ops.get(node.op, node.domain, node.opset).attrs, **node.attrs}

    def shape(self, x: Value) -> Value:
        """x's shape as an int64 tensor: a constant when static, else a Shape node."""
        t = x.type
        if isinstance(t, TensorType) and t.is_static:
            return self.ints(t.shape)
        return self.op("Shape", x)

    def dim(self, x: Value, axis: int) -> Value:
        """x's dim `axis` as a 1-element int64 tensor."""
        d = x.type.shape[axis]
        return self.ints([d]) if isinstance(d, int) else self.op("Shape", x, start=axis, end=axis + 1)

    def cast(self, x: Value, dtype) -> Value:
        dtype = np.dtype(dtype)
        return x if x.type.dtype == dtype else self.op("Cast", x, to=onnx_elem_type(dtype))

    def fill(self, like: Value, value, dtype=None) -> Value:
        """A tensor of like's shape filled with `value` (like's dtype unless given)."""
        dtype = np.dtype(dtype or like.type.dtype)
        return self.op("ConstantOfShape", self.shape(like), value=np.array([value]).astype(dtype))

    def reduce(self, op: str, x: Value, axes, keepdims: bool) -> Value:
        return self.op(op, x, self.ints(sorted(axes)), keepdims=int(keepdims))

    def sum_to(self, g: Value, like: Value) -> Value:
        """Reduce a broadcast gradient g back to like's shape (exact also for symbolic dims)."""
        gs, xs = g.type.shape, like.type.shape
        if gs is None or xs is None:
            raise ShapeError(f"cannot reduce a gradient of unknown rank to {like.name!r}")
        lead = len(gs) - len(xs)
        if lead == 0 and all(a == b for a, b in zip(gs, xs)):
            return g
        axes = list(range(lead))
        for i, (dx, dg) in enumerate(zip(xs, gs[lead:]), start=lead):
            if dx == dg:
                continue
            if dx == 1:
                axes.append(i)
            else:  # a symbol that may be 1 at run time: reduce, broadcast back, keep the first dx rows
                total = self.op("ReduceSum", g, self.ints([i]), keepdims=1)
                is_one = self.op("Equal", self.dim(like, i - lead), self.ints([1]))
                g = self.op("Where", is_one, total, g)
                g = self.op("Slice", g, self.ints([0]), self.dim(like, i - lead), self.ints([i]))
        if axes:
            g = self.reduce("ReduceSum", g, axes, keepdims=len(axes) > lead)
        if len(axes) > lead:
            g = self.op("Reshape", g, self.shape(like))
        return g
