"""Random ONNX graphs for differential fuzzing: a recipe of ops over a pool of typed values.

The builder draws through a small chooser, so hypothesis (shrinking) and a seeded numpy generator (long runs)
produce graphs from the same code. Dims are ints or symbol names ("N", "M"); each case carries feeds for one
or two bindings of its symbols, so one session also sees a shape change.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper, printer

OPSET = 18
DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "int64": TensorProto.INT64}
SYMBOLS = ("N", "M")
WIDE = (7, 16, 17, 31, 64, 129, 1000)
STEPS = (
    "unary",
    "binary",
    "bias",
    "reduce",
    "reshape",
    "transpose",
    "slice",
    "matmul",
    "concat",
    "where",
    "sym_reshape",
    "sym_slice",
    "sym_concat",
    "batched_matmul",
)  # sym_*: on symbolic dims
FLOAT_UNARY = ("Neg", "Abs", "Relu", "Tanh", "Sigmoid", "Sin", "Sqrt")
INT_UNARY = ("Neg", "Abs", "Relu", "Sign")
FLOAT_BINARY = ("Add", "Sub", "Mul", "Max", "Min", "Div")
INT_BINARY = ("Add", "Sub", "Mul", "Max", "Min")
FLOAT_REDUCE = ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean")
INT_REDUCE = ("ReduceSum", "ReduceMax", "ReduceMin")


class RandomChooser:
    """Draws from a seeded numpy generator (no shrinking; fast, for long runs and the report)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def integer(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, seq):
        return seq[self.integer(0, len(seq) - 1)]


class HypothesisChooser:
    """Draws through hypothesis, so failures shrink to small recipes."""

    def __init__(self, draw):
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def choice(self, seq):
        return self.draw(st.sampled_from(list(seq)))


@dataclass
class Val:
    name: str
    shape: tuple  # ints and symbol names
    exact: bool = False  # a graph input: comparisons on it cannot flip between implementations


@dataclass
class Case:
    model: object  # onnx.ModelProto
    feeds: list  # one dict per symbol binding
    dtype: str
    recipe: list = field(default_factory=list)
    symbolic: bool = False
    seed: int = 0  # of the feeds
    bindings: list = field(default_factory=lambda: [{}])

    def describe(self) -> str:
        return f"{self.dtype} {'symbolic' if self.symbolic else 'static'}: " + ", ".join(self.recipe)


def broadcast(a: tuple, b: tuple) -> tuple | None:
    """numpy broadcasting over ints and symbols (a symbol matches only itself or 1); None if not provable."""
    out = []
    for x, y in itertools.zip_longest(reversed(a), reversed(b), fillvalue=1):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(reversed(out))


def _slice_len(d: int, start: int, end: int, step: int) -> int:
    return len(range(d)[slice(start, end, step)])


class Builder:
    def __init__(self, ch, dtype: str):
        self.ch, self.dtype = ch, dtype
        self.elem = DTYPES[dtype]
        self.np = np.dtype(dtype)
        self.nodes, self.inits, self.pool, self.recipe = [], [], [], []
        self.count = itertools.count()

    def fresh(self, base: str) -> str:
        return f"{base}{next(self.count)}"

    def const(self, arr: np.ndarray) -> str:
        name = self.fresh("c")
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op: str, ins: list, shape: tuple, **attrs) -> Val:
        out = self.fresh("v")
        self.nodes.append(helper.make_node(op, ins, [out], name=f"n_{out}", **attrs))
        v = Val(out, shape)
        self.pool.append(v)
        return v

    def is_float(self) -> bool:
        return self.dtype != "int64"

    def pick(self, vals=None) -> Val:
        vals = self.pool if vals is None else vals
        return vals[self.ch.integer(0, len(vals) - 1)]

    def step(self, kind: str) -> None:
        a = self.pick()
        r = len(a.shape)
        static = [i for i, d in enumerate(a.shape) if isinstance(d, int)]
        ch, dt, before = self.ch, self.np, len(self.nodes)
        if kind == "unary":
            op = ch.choice(FLOAT_UNARY if self.is_float() else INT_UNARY)
            if op == "Sqrt":  # defined everywhere: sqrt(|a|)
                a = self.node("Abs", [a.name], a.shape)
            self.node(op, [a.name], a.shape)
        elif kind == "binary":
            op = ch.choice(FLOAT_BINARY if self.is_float() else INT_BINARY)
            fits = [v for v in self.pool if broadcast(a.shape, v.shape) is not None]
            b = self.pick(fits)
            if ch.integer(0, 1):
                a, b = b, a
            if op == "Div":  # keep the divisor away from zero: a / (|b| + 1)
                one = self.const(np.ones((), dt))
                b = self.node("Add", [self.node("Abs", [b.name], b.shape).name, one], b.shape)
            self.node(op, [a.name, b.name], broadcast(a.shape, b.shape))
        elif kind == "bias" and r >= 1:
            shape = tuple(d if isinstance(d, int) else 1 for d in a.shape[r - ch.integer(1, r) :])
            c = self.const((np.arange(int(np.prod(shape))) % 5 - 2).reshape(shape).astype(dt))
            self.node(ch.choice(("Add", "Mul", "Sub")), [a.name, c], a.shape)
        elif kind == "reduce" and r >= 1:
            op = ch.choice(FLOAT_REDUCE if self.is_float() else INT_REDUCE)
            axes = sorted({ch.integer(0, r - 1) for _ in range(ch.integer(1, r))})
            if ch.integer(0, 1):
                axes = [x - r for x in axes]  # negative axes too
            keep = ch.integer(0, 1)
            norm = {x % r for x in axes}
            shape = tuple(1 if i in norm else d for i, d in enumerate(a.shape) if keep or i not in norm)
            self.node(op, [a.name, self.const(np.array(axes, np.int64))], shape, keepdims=keep)
        elif kind == "reshape" and r >= 1:
            self.reshape(a)
        elif kind == "transpose" and r >= 2:
            perm = list(range(r))
            for i in range(r - 1, 0, -1):
                j = ch.integer(0, i)
                perm[i], perm[j] = perm[j], perm[i]
            self.node("Transpose", [a.name], tuple(a.shape[p] for p in perm), perm=perm)
        elif kind == "slice" and any(a.shape[i] >= 2 for i in static):
            axis = ch.choice([i for i in static if a.shape[i] >= 2])
            d = a.shape[axis]
            step = ch.choice((1, 1, 2, -1, -2))
            start, end = ch.integer(-d, d - 1), ch.choice((-d - 1, -1, 0, 1, d, 2**62, -(2**62)))
            n = _slice_len(d, start, end, step)
            if n == 0:
                return
            args = [np.array([v], np.int64) for v in (start, end, axis - r * ch.integer(0, 1), step)]
            shape = tuple(n if i == axis else x for i, x in enumerate(a.shape))
            self.node("Slice", [a.name, *(self.const(x) for x in args)], shape)
        elif kind == "matmul" and r >= 1 and isinstance(a.shape[-1], int):
            k, m = a.shape[-1], ch.integer(1, 4)
            vec = ch.integer(0, 3) == 0
            w = np.arange(k * (1 if vec else m)).reshape((k,) if vec else (k, m)) % 3 - 1
            shape = a.shape[:-1] if vec else a.shape[:-1] + (m,)
            self.node("MatMul", [a.name, self.const(w.astype(self.np))], shape)
        elif kind == "concat" and static:
            axis = ch.choice(static)
            same = [v for v in self.pool if v.shape == a.shape]
            b = self.pick(same)
            shape = tuple(2 * d if i == axis else d for i, d in enumerate(a.shape))
            self.node("Concat", [a.name, b.name], shape, axis=axis - r * ch.integer(0, 1))
        elif kind == "where":
            exact = [v for v in self.pool if v.exact]
            x, y = self.pick(exact), self.pick(exact)
            cond = broadcast(x.shape, y.shape)
            base = None if cond is None else broadcast(cond, a.shape)
            if base is None:
                return
            b = self.pick([v for v in self.pool if broadcast(base, v.shape) is not None])
            c = self.fresh("cond")  # a comparison of graph inputs: it cannot flip between implementations
            self.nodes.append(
                helper.make_node(
                    ch.choice(("Greater", "Less", "Equal")), [x.name, y.name], [c], name=f"n_{c}"
                )
            )
            self.node("Where", [c, a.name, b.name], broadcast(base, b.shape))
        elif kind.startswith("sym_") or kind == "batched_matmul":
            self.symbolic_step(kind, a)
        if len(self.nodes) > before:
            self.recipe.append(f"{kind}({self.nodes[-1].op_type})")

    def symbolic_step(self, kind: str, a: Val) -> None:
        """Steps whose result dims are expressions of symbols (kept as strings such as "(N*4)")."""
        r, ch = len(a.shape), self.ch
        syms = [i for i, d in enumerate(a.shape) if isinstance(d, str)]
        if kind == "sym_reshape" and syms:
            p = ch.integer(0, syms[-1])  # merge a tail holding a symbol into one dim with -1
            tail = a.shape[p:]
            target = np.array([0] * p + [-1], np.int64)
            self.node(
                "Reshape", [a.name, self.const(target)], a.shape[:p] + ("(" + "*".join(map(str, tail)) + ")",)
            )
        elif kind == "sym_slice" and syms:
            axis = ch.choice(syms)
            start, end, step = ch.choice(((0, 2**62, 1), (-1, -(2**62), -1), (0, -(2**62) - 5, -1)))
            if step == -1 and end != -(2**62):
                return  # (0, very negative, -1) keeps one element: not a symbolic length
            args = [np.array([v], np.int64) for v in (start, end, axis, step)]
            self.node("Slice", [a.name, *(self.const(x) for x in args)], a.shape)
        elif kind == "sym_concat" and syms:
            axis = ch.choice(syms)
            b = self.pick([v for v in self.pool if v.shape == a.shape])
            d = a.shape[axis]
            self.node(
                "Concat",
                [a.name, b.name],
                a.shape[:axis] + (f"({d}+{d})",) + a.shape[axis + 1 :],
                axis=axis - r * ch.integer(0, 1),
            )
        elif kind == "batched_matmul" and r >= 2:
            fits = [
                v
                for v in self.pool
                if len(v.shape) >= 2
                and v.shape[-2] == a.shape[-1]
                and broadcast(a.shape[:-2], v.shape[:-2]) is not None
            ]
            if fits:
                b = self.pick(fits)
                shape = broadcast(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
                self.node("MatMul", [a.name, b.name], shape)

    def reshape(self, a: Val) -> None:
        r, ch = len(a.shape), self.ch
        p = ch.integer(0, r - 1)
        head, tail = a.shape[:p], a.shape[p:]
        if not all(isinstance(d, int) for d in tail):
            return
        size = int(np.prod(tail, dtype=np.int64))
        if ch.integer(0, 1) or size < 2 or size % 2:
            new_tail, spec = (size,), [-1 if ch.integer(0, 1) else size]  # merge the tail
        else:
            new_tail = (2, size // 2)
            spec = [2, -1] if ch.integer(0, 1) else [2, size // 2]
        target = [0] * len(head) + spec  # 0 copies the (possibly symbolic) leading dims
        self.node("Reshape", [a.name, self.const(np.array(target, np.int64))], head + new_tail)


def _input_shape(ch, base: tuple | None, symbolic: bool) -> tuple:
    if base is not None and ch.integer(0, 2):
        # a broadcast partner of the first input: some leading dims dropped, some dims set to 1
        drop = ch.integer(0, len(base))
        return tuple(1 if ch.integer(0, 3) == 0 else d for d in base[drop:])
    rank = ch.integer(1, 4)
    dims = [
        ch.choice(SYMBOLS) if symbolic and ch.integer(0, 2) == 0 else ch.integer(1, 4) for _ in range(rank)
    ]
    if isinstance(dims[-1], int) and ch.integer(0, 3) == 0:  # a long row: tiles, vector tails, threads
        dims[-1] = ch.choice(WIDE)
    return tuple(dims)


def build_case(ch, max_steps: int = 12) -> Case:
    """One random graph and its feeds."""
    dtype = ch.choice(tuple(DTYPES))
    symbolic = bool(ch.integer(0, 1))
    b = Builder(ch, dtype)
    inputs = []
    first = None
    for i in range(ch.integer(1, 3)):
        shape = _input_shape(ch, first, symbolic)
        first = first or shape
        v = Val(f"x{i}", shape, exact=True)
        inputs.append(v)
        b.pool.append(v)
    for _ in range(ch.integer(1, max_steps)):
        b.step(ch.choice(STEPS))
    made = [v for v in b.pool if v not in inputs]
    if not made:
        b.node("Neg", [inputs[0].name], inputs[0].shape)
        b.recipe.append("unary(Neg)")
        made = [b.pool[-1]]
    outs = [made[-1]] + ([made[ch.integer(0, len(made) - 1)]] if len(made) > 1 and ch.integer(0, 1) else [])
    outs = list({v.name: v for v in outs}.values())
    g = helper.make_graph(
        b.nodes,
        "fuzz",
        [helper.make_tensor_value_info(v.name, b.elem, list(v.shape)) for v in inputs],
        [helper.make_tensor_value_info(v.name, b.elem, None) for v in outs],
        b.inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    seed = ch.integer(0, 2**31 - 1)
    used = {d for v in inputs for d in v.shape if isinstance(d, str)}
    bindings = [{"N": 2, "M": 3}, {"N": 1, "M": 4}] if used else [{}]
    return Case(model, feeds_for(model, bindings, dtype, seed), dtype, b.recipe, bool(used), seed, bindings)


def feeds_for(model, bindings: list, dtype: str, seed: int) -> list:
    """One feed per symbol binding, for the model's declared inputs."""
    inputs = [
        Val(i.name, tuple(d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim))
        for i in model.graph.input
    ]
    return [make_feed(inputs, bind, dtype, seed + k) for k, bind in enumerate(bindings)]


def save_regression(case: Case, folder: Path, name: str | None = None) -> Path:
    """Write a (shrunk) failing case as JSON: the model as text (to read) and bytes (to load), its feeds."""
    data = case.model.SerializeToString()
    path = Path(folder) / f"{name or hashlib.sha256(data).hexdigest()[:16]}.json"
    path.write_text(
        json.dumps(
            {
                "describe": case.describe(),
                "dtype": case.dtype,
                "seed": case.seed,
                "bindings": case.bindings,
                "recipe": case.recipe,
                "symbolic": case.symbolic,
                "model_text": printer.to_text(case.model.graph),
                "model": base64.b64encode(data).decode(),
            },
            indent=1,
        )
    )
    return path


def load_regression(path: Path) -> Case:
    d = json.loads(Path(path).read_text())
    model = onnx.ModelProto()
    model.ParseFromString(base64.b64decode(d["model"]))
    return Case(
        model,
        feeds_for(model, d["bindings"], d["dtype"], d["seed"]),
        d["dtype"],
        d["recipe"],
        d["symbolic"],
        d["seed"],
        d["bindings"],
    )


def make_feed(inputs, bind: dict, dtype: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    feed = {}
    for v in inputs:
        shape = tuple(bind[d] if isinstance(d, str) else d for d in v.shape)
        if dtype == "int64":
            feed[v.name] = np.asarray(rng.integers(-4, 5, shape), np.int64)
        else:  # quarter steps: exactly representable in float16, and ties in comparisons happen
            feed[v.name] = np.asarray(rng.integers(-8, 9, shape) / 4, dtype)
    return feed


@st.composite
def cases(draw, max_steps: int = 12) -> Case:
    """Hypothesis strategy: a random graph with its feeds."""
    return build_case(HypothesisChooser(draw), max_steps)
