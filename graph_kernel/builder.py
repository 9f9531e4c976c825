"""A tiny graph builder for rewrites: `b.op("Mul", x, c)` emits a node whose output type comes from the op
registry's inference rule; constant-only nodes are folded on the spot with the op's own reference kernel."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from framework import ops
from framework.dtypes import onnx_elem_type
from framework.errors import ShapeError
from framework.ir import Node, TensorType, Value

FOLD_LIMIT = 1 << 16  # elements; folding is for small parameter math (BatchNorm's scale/shift), not data


class Builder:
    """Collects `nodes` and new `constants` (Value -> array) for one rewrite.

    `known` maps values with compile-time contents (the graph's constants) so inference rules and folding
    can read them; `fork()` gives a builder with a fresh node list sharing constants and the constant cache.
    """

    def __init__(self, opset: int = 18, known: Mapping[Value, np.ndarray] | None = None, name: str = "",
                 fold: bool = True):
        self.opset, self.name, self.fold = opset, name, fold
        self.nodes: list[Node] = []
        self.constants: dict[Value, np.ndarray] = {}
        self._known = known if known is not None else {}
        self._cache: dict[tuple, Value] = {}

    def fork(self, opset: int | None = None, name: str | None = None) -> "Builder":
        child = Builder(self.opset if opset is None else opset, self._known,
                        self.name if name is None else name, self.fold)
        child.constants, child._cache = self.constants, self._cache
        return child

    # ------------------------------------------------------------ values

    def value_of(self, v: Value | None) -> np.ndarray | None:
        """Compile-time contents of v, or None."""
        if v is None:
            return None
        if v in self.constants:
            return self.constants[v]
        return self._known.get(v)

    def const(self, array, dtype=None) -> Value:
        """A constant Value (deduplicated by dtype, shape and bytes within this builder family)."""
        arr = np.asarray(array, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        v = self._cache.get(key)
        if v is None:
            name = f"{self.name}/const{len(self._cache)}"
            v = self._cache[key] = Value(TensorType(arr.dtype, arr.shape), name)
            self.constants[v] = arr
        return v

    def scalar(self, value, dtype) -> Value:
        """A 0-d constant of `dtype`; out-of-range floats become +-inf, as numpy's casts make them."""
        with np.errstate(over="ignore"):
            return self.const(np.array(value, dtype=np.float64 if np.dtype(dtype).kind == "f" else None)
                              .astype(dtype))

    # ------------------------------------------------------------ nodes

    def op(self, op: str, *inputs: Value | None, out: Value | tuple[Value, ...] | None = None,
           outputs: int = 1, domain: str = "", **attrs):
        """Emit `op(*inputs)`; returns its output Value (a tuple when outputs > 1).

        `out` names existing Values the node must write (an expansion's last node writes the original
        node's outputs, so consumers need no remapping); their types are kept, their dtypes checked.
        """
        outs_given = (out,) if isinstance(out, Value) else out
        n_out = len(outs_given) if outs_given is not None else outputs
        opdef = ops.get(op, domain, self.opset)
        full = {**opdef.attrs, **attrs}
        consts = tuple(self.value_of(v) for v in inputs)
        if outs_given is None and self.fold and inputs and all(c is not None for c in consts) \
                and opdef.deterministic and all(c.size <= FOLD_LIMIT for c in consts):
            return self._folded(opdef, full, n_out, consts)
        types = self._infer(op, opdef, full, n_out, inputs, consts)
        if outs_given is None:
            outs = tuple(Value(t, f"{self.name}/{op}") for t in types)
        else:
            for v, t in zip(outs_given, types):
                if isinstance(v.type, TensorType) and v.type.dtype is not None and t.dtype is not None \
                        and v.type.dtype != t.dtype:
                    raise ShapeError(f"rewrite of {self.name}: {op} gives {t.dtype}, the original output "
                                     f"{v.name!r} is {v.type.dtype}")
            outs = tuple(outs_given)
        self.nodes.append(Node(op, tuple(inputs), outs, attrs, domain, self.opset, f"{self.name}/{op}"))
        return outs[0] if n_out == 1 else outs

    def _infer(self, op, opdef, attrs, n_out, inputs, consts) -> tuple:
        if opdef.infer is None:
            raise ShapeError(f"{op} has no inference rule; the builder cannot type its outputs")
        ctx = ops.Ctx(attrs, n_out, self.opset, self.name, consts)
        t = opdef.infer(ctx, *(None if v is None else v.type for v in inputs))
        return tuple(t) if isinstance(t, (tuple, list)) else (t,)

    def _folded(self, opdef, attrs, n_out, consts):
        ctx = ops.Ctx(attrs, n_out, self.opset, self.name)
        with np.errstate(all="ignore"):
            out = opdef.ref(ctx, *consts)
        outs = tuple(self.const(np.asarray(o)) for o in (out if isinstance(out, (tuple, list)) else (out,)))
        return outs[0] if n_out == 1 else outs

    # ------------------------------------------------------------ helpers used by most rewrites

    def cast(self, x: Value, dtype, out: Value | None = None) -> Value:
        """Cast x to dtype; x itself when it already has that dtype (and no `out` is asked for)."""
        dtype = np.dtype(dtype)
        if x.type.dtype == dtype and out is None:
            return x
        return self.op("Cast", x, to=onnx_elem_type(dtype), out=out)

    def reduce(self, op: str, x: Value, axes, keepdims: bool, out: Value | None = None) -> Value:
        """A Reduce* in the axes-as-input form (ReduceSum since 13, the others since 18)."""
        return self.op(op, x, self.const(np.array(sorted(axes), np.int64)), keepdims=int(keepdims), out=out)
