"""A fused cluster's body (static shapes, float32) -> a Scop. Elementwise, broadcast and transposes are
inlined into the expression of the statement that consumes them; reductions are materialised (an init
statement and an update statement over the full iteration space). A MatMul of two whole arrays (inputs,
constants or earlier products) runs on BLAS before the C function, which reads the product as an input: the
DVM does the same, and a BLAS sgemm is 2-3x faster than the loop nest we generate for it. A MatMul of
computed values is an init and an update statement like a reduction."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from framework.dtypes import f32_reciprocal
from framework.ir import Graph

from .stmt import Array, Scop, ScopError, Statement

UNARY = {"Exp": "msgx_expf({})", "Log": "logf({})", "Sqrt": "sqrtf({})", "Tanh": "msgx_tanhf({})",
         "Erf": "msgx_erff({})",
         "Abs": "fabsf({})", "Neg": "(-({}))", "Reciprocal": "(1.0f / ({}))", "Floor": "floorf({})",
         "Ceil": "ceilf({})", "Round": "rintf({})", "Relu": "msgx_relu({})",
         "Sigmoid": "(1.0f / (1.0f + msgx_expf(-({}))))"}
BINARY = {"Add": "({} + {})", "Sub": "({} - {})", "Mul": "({} * {})", "Div": "({} / {})",
          "Pow": "powf({}, {})",
          "Max": "msgx_max({}, {})", "Min": "msgx_min({}, {})"}
REDUCE = {"ReduceSum": ("0.0f", "{acc} + {x}"), "ReduceMax": ("-INFINITY", "msgx_max({acc}, {x})"),
          "ReduceMin": ("INFINITY", "msgx_min({acc}, {x})"), "ReduceMean": ("0.0f", "{acc} + {x}")}
RESHAPES = ("Reshape", "Squeeze", "Unsqueeze", "Flatten")
MAX_EXPR = 1500  # characters; a longer inlined expression is materialised into a temporary
# calls worth computing once: a value with one of them and several consumers (softmax's exp, read by the
# sum and by the division) is materialised instead of inlined into each consumer
EXPENSIVE = ("msgx_expf(", "msgx_expf_nonpos(", "msgx_erff(", "msgx_tanhf(", "logf(", "powf(", "sqrtf(")


@dataclass
class _Val:
    shape: tuple[int, ...]
    read: Callable[[list[str]], str]  # C expression at an index (one C index expression per dim)
    array: int | None = None  # index of the input array that holds exactly this value, if any


@dataclass
class Lowered:
    """A scop and, per scop array, where the caller gets it: a body input's position (int), a constant
    (ndarray), ("matmul", a, b) for the BLAS product of two earlier arrays (indices), or None (the C code
    writes it: outputs and scratch)."""

    scop: Scop
    feeds: list


def _ref(name: str, shape) -> Callable[[list[str]], str]:
    return lambda idx: name + ("".join(f"[{x}]" for x in idx) if shape else "[0]")


def _literal(x: float) -> str:
    if math.isnan(x):
        return "NAN"
    if math.isinf(x):
        return "INFINITY" if x > 0 else "(-INFINITY)"
    return f"{float(np.float32(x))!r}f"


def _broadcast(v: _Val, out_shape, idx: list[str]) -> str:
    r = len(out_shape)
    tail = idx[r - len(v.shape):] if v.shape else []
    return v.read([("0" if d == 1 else x) for d, x in zip(v.shape, tail)])


class _Lower:
    def __init__(self, body: Graph, name: str):
        self.body, self.name = body, name
        self.vals: dict = {}
        self.arrays: list[Array] = []
        self.stmts: list[Statement] = []
        self.feeds: list = []  # aligned with self.arrays (see Lowered)

    def fail(self, why: str):
        raise ScopError(f"cluster {self.name!r}: {why}")

    def array(self, prefix: str, shape, role: str, feed=None) -> str:
        name = f"{prefix}{len(self.arrays)}"
        self.arrays.append(Array(name, tuple(shape) if shape else (1,), role))
        self.feeds.append(feed)
        return name

    def stmt(self, shape, body_fn: Callable[[list[str]], str], extra: tuple = ()) -> None:
        """A statement over `shape` (plus `extra` (name, extent) reduction iterators, innermost)."""
        iters = [f"i{k}" for k in range(len(shape))] + [n for n, _ in extra]
        ext = list(shape) + [e for _, e in extra]
        if not iters:  # a 0-d value: a one-iteration loop keeps the statement format uniform
            iters, ext = ["i0"], [1]
        dom = " and ".join(f"0 <= {i} < {e}" for i, e in zip(iters, ext))
        sched = [len(self.stmts)]
        for i in iters:
            sched += [i, 0]
        self.stmts.append(Statement(f"S{len(self.stmts)}", tuple(iters), dom,
                                    body_fn([f"i{k}" for k in range(len(shape))]), tuple(sched)))

    def materialise(self, v: _Val, role="temp", name: str | None = None) -> _Val:
        name = name or self.array("t", v.shape, role)
        self.stmt(v.shape, lambda idx: f"{_ref(name, v.shape)(idx)} = {v.read(idx)}")
        return _Val(v.shape, _ref(name, v.shape))

    def reciprocal(self, n) -> str | None:
        """1 / c as a C literal for a Div by a float32 scalar constant c (dtypes.f32_reciprocal), else None."""
        arr = self.body.constants.get(n.inputs[1])
        if arr is None or np.asarray(arr).size != 1 or np.asarray(arr).dtype != np.float32:
            return None
        r = f32_reciprocal(float(np.asarray(arr).reshape(-1)[0]))
        return None if r is None else _literal(r)

    def value(self, x) -> _Val:
        if x in self.vals:
            return self.vals[x]
        if x in self.body.constants:
            arr = np.asarray(self.body.constants[x])
            if arr.size == 1 and arr.dtype == np.float32:
                lit = _literal(float(arr.reshape(-1)[0]))
                v = _Val(tuple(arr.shape), lambda idx, lit=lit: lit)
            elif arr.dtype == np.float32:
                # not c<k>: isl names loop iterators so
                name = self.array("w", arr.shape, "in", np.ascontiguousarray(arr))
                v = _Val(tuple(arr.shape), _ref(name, arr.shape), len(self.arrays) - 1)
            else:
                self.fail(f"constant of dtype {arr.dtype} used as data")
            self.vals[x] = v
            return v
        self.fail(f"value {x.name!r} has no definition")

    def run(self) -> Scop:
        for j, v in enumerate(self.body.inputs):
            self._check(v)
            name = self.array("in", v.type.shape, "in", j)
            self.vals[v] = _Val(tuple(v.type.shape), _ref(name, v.type.shape), len(self.arrays) - 1)
        self.producer = {o: n for n in self.body.nodes for o in n.outputs}
        self.consumers: dict = {}
        for n in self.body.nodes:
            for i in n.inputs:
                self.consumers.setdefault(i, []).append(n)
        uses: dict = {}
        for x in [i for n in self.body.nodes for i in n.inputs] + list(self.body.outputs):
            uses[x] = uses.get(x, 0) + 1
        for n in self.body.nodes:
            for o in n.outputs:
                self._check(o)
            v = self.vals[n.outputs[0]] = self.node(n)
            text = v.read(["0"] * len(n.outputs[0].type.shape))
            if len(text) > MAX_EXPR or (uses.get(n.outputs[0], 0) > 1 and any(f in text for f in EXPENSIVE)):
                self.vals[n.outputs[0]] = self.materialise(v)
        for o in self.body.outputs:
            self._check(o)
            v = self.value(o)
            self.materialise(v, "out", self.array("out", o.type.shape, "out"))
        if not self.stmts:
            self.fail("nothing to compute")
        return Scop(self.name, (), tuple(self.arrays), tuple(self.stmts), (), "float")

    def _minus_its_max(self, x) -> bool:
        """x = a - ReduceMax(a, keepdims=1) (softmax's): every element is <= 0 or NaN, as the max it is
        taken from covers it (keepdims puts the max's axes where a's are)."""
        sub = self.producer.get(x)
        top = sub and sub.op == "Sub" and self.producer.get(sub.inputs[1])
        return bool(top) and top.op == "ReduceMax" and top.inputs[0] is sub.inputs[0] and \
            bool(top.attrs.get("keepdims", 1)) and tuple(x.type.shape) == tuple(sub.inputs[0].type.shape)

    def _softmax_max(self, n) -> bool:
        """n = ReduceMax(a) is a softmax's row max (graph_kernel's expansion: e = exp(a - max) and
        y = e * (1 / sum(e)) over the same axes, none of max, a - max, e, the sum or its reciprocal an
        output): a row holding a NaN then gives NaN in every y of the row through the sum, whether or not
        the max passes the NaN on, so the max may pass over NaN (msgx_max_any: one vector max per step, not
        three instructions)."""
        def only(v, op):
            users = self.consumers.get(v, [])
            return users[0] if len(users) == 1 and users[0].op == op and v not in self.body.outputs else None
        m = n.outputs[0]
        d = only(m, "Sub")
        e = d and tuple(d.inputs) == (n.inputs[0], m) and only(d.outputs[0], "Exp")
        users = self.consumers.get(e.outputs[0], []) if e and e.outputs[0] not in self.body.outputs else []
        s = next((u for u in users if u.op == "ReduceSum"), None)
        r = s and only(s.outputs[0], "Reciprocal")
        y = r and only(r.outputs[0], "Mul")
        return bool(y) and len(users) == 2 and y in users and \
            self._axes(s, len(s.inputs[0].type.shape)) == self._axes(n, len(n.inputs[0].type.shape)) and \
            bool(s.attrs.get("keepdims", 1))

    def _check(self, v):
        t = v.type
        if getattr(t, "dtype", None) != np.float32 or getattr(t, "shape", None) is None or \
                not all(isinstance(d, int) for d in t.shape):
            self.fail(f"value {v.name!r} is not a static-shape float32 tensor ({t})")

    def node(self, n) -> _Val:
        out = tuple(n.outputs[0].type.shape)
        if n.domain not in ("", "ai.onnx") or len(n.outputs) != 1:
            self.fail(f"op {n.domain}::{n.op} is not lowered")
        if n.op in UNARY or (n.op == "Cast" and n.attrs.get("to") in (1, np.float32)):
            a = self.value(n.inputs[0])
            fmt = "msgx_expf_nonpos({})" if n.op == "Exp" and self._minus_its_max(n.inputs[0]) else \
                UNARY.get(n.op, "{}")
            return _Val(out, lambda idx: fmt.format(_broadcast(a, out, idx)))
        if n.op in BINARY:
            a, b = self.value(n.inputs[0]), self.value(n.inputs[1])
            fmt = BINARY[n.op]
            r = self.reciprocal(n) if n.op == "Div" else None
            if r is not None:
                return _Val(out, lambda idx: f"({_broadcast(a, out, idx)} * {r})")
            return _Val(out, lambda idx: fmt.format(_broadcast(a, out, idx), _broadcast(b, out, idx)))
        if n.op == "Transpose":
            a = self.value(n.inputs[0])
            perm = n.attrs.get("perm") or tuple(reversed(range(len(a.shape))))
            inv = [list(perm).index(k) for k in range(len(perm))]
            return _Val(out, lambda idx: a.read([idx[inv[k]] for k in range(len(perm))]))
        if n.op in RESHAPES:
            a = self.value(n.inputs[0])
            src = [k for k, d in enumerate(a.shape) if d != 1]
            dst = [k for k, d in enumerate(out) if d != 1]
            if [a.shape[k] for k in src] != [out[k] for k in dst]:
                self.fail(f"{n.op} {a.shape} -> {out} moves data (only size-1 dims may change)")
            return _Val(out, lambda idx: a.read([idx[dst[src.index(k)]] if k in src else "0"
                                                  for k in range(len(a.shape))]))
        if n.op in REDUCE:
            return self.reduce(n, out)
        if n.op == "MatMul":
            return self.matmul(n, out)
        self.fail(f"op {n.op} is not lowered")

    def _axes(self, n, rank: int) -> list[int]:
        """The axes a reduction node reduces, sorted and non-negative."""
        if len(n.inputs) > 1 and n.inputs[1] is not None:
            if n.inputs[1] not in self.body.constants:
                self.fail(f"{n.op} axes are not a constant")
            axes = [int(x) for x in np.asarray(self.body.constants[n.inputs[1]]).reshape(-1)]
        else:
            axes = list(n.attrs.get("axes") or [])
        if not axes:
            axes = [] if n.attrs.get("noop_with_empty_axes") else list(range(rank))
        return sorted(x % rank for x in axes) if rank else []

    def reduce(self, n, out) -> _Val:
        a = self.value(n.inputs[0])
        rank = len(a.shape)
        axes = self._axes(n, rank)
        keep = bool(n.attrs.get("keepdims", 1))
        acc_shape = tuple(1 if k in axes else d for k, d in enumerate(a.shape)) if keep else \
            tuple(d for k, d in enumerate(a.shape) if k not in axes)
        name = self.array("t", acc_shape, "temp")
        init, upd = REDUCE[n.op]
        if n.op == "ReduceMax" and self._softmax_max(n):
            upd = "msgx_max_any({acc}, {x})"
        acc = _ref(name, acc_shape)
        self.stmt(acc_shape, lambda idx: f"{acc(idx)} = {init}")
        red = [(f"r{k}", a.shape[k]) for k in axes]

        def update(idx):
            full, it = [], iter(idx)
            for k in range(rank):
                if k in axes:
                    full.append(f"r{k}")
                    if keep:
                        next(it)
                else:
                    full.append(next(it))
            return f"{acc(idx)} = {upd.format(acc=acc(idx), x=a.read(full))}"
        self.stmt(acc_shape, update, tuple(red))
        if n.op == "ReduceMean":
            count = _literal(float(np.prod([a.shape[k] for k in axes])))
            return _Val(acc_shape, lambda idx: f"({acc(idx)} / {count})")
        return _Val(acc_shape, acc)

    def matmul(self, n, out) -> _Val:
        a, b = self.value(n.inputs[0]), self.value(n.inputs[1])
        if len(a.shape) < 2 or len(b.shape) < 2:
            self.fail("MatMul with a 1-D operand is not lowered")
        if a.array is not None and b.array is not None:
            name = self.array("mm", out, "in", ("matmul", a.array, b.array))
            return _Val(out, _ref(name, out), len(self.arrays) - 1)
        k_ext = a.shape[-1]
        name = self.array("t", out, "temp")
        acc = _ref(name, out)
        self.stmt(out, lambda idx: f"{acc(idx)} = 0.0f")

        def update(idx):
            batch = idx[:-2]
            ra = self._batched(a, out, batch, [idx[-2], "kk"])
            rb = self._batched(b, out, batch, ["kk", idx[-1]])
            return f"{acc(idx)} += {ra} * {rb}"
        self.stmt(out, update, (("kk", k_ext),))
        return _Val(out, acc)

    @staticmethod
    def _batched(v: _Val, out, batch, last2) -> str:
        nb = len(v.shape) - 2
        lead = batch[len(batch) - nb:] if nb else []
        lead = [("0" if d == 1 else x) for d, x in zip(v.shape[:nb], lead)]
        return v.read(lead + last2)


def lower(body: Graph, name: str = "cluster") -> Lowered:
    """The scop of a cluster body and where each of its arrays comes from; ScopError when not expressible."""
    lw = _Lower(body, name)
    scop = lw.run()
    return Lowered(scop, lw.feeds)
