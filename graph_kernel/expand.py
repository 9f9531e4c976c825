"""Expander: rewrite composite ops into fusable primitives with the registry kernels' exact semantics.

Each expansion is one small function in EXPANDERS keyed by op name (MindSpore's "expander" idea). It emits
primitives through a Builder and writes the original node's outputs, so consumers need no remapping.
Emitted nodes are expanded again, so LayerNormalization's ReduceMean becomes ReduceSum + Div when ReduceMean
is expanded too. Decisions: Sigmoid, Relu and LeakyRelu stay primitives unless enabled (the partition fuses
them as ELEMWISE already and one opcode beats three); PyTorch's Erf/Tanh GELU chains are left as they are,
since they are exactly what the Gelu expansion would produce.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from framework import ops
from framework.dtypes import np_dtype, onnx_elem_type
from framework.errors import ContextError
from framework.ir import Graph, Node, TensorType, Value

from .builder import Builder

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
FLOATS = (F16, F32, F64)
MIN_OPSET = 18  # emitted nodes use at least this opset: Reduce* take axes as an input
MAX_DEPTH = 4  # expansions of expansions (Mish -> Softplus -> primitives); guards against a cycle


class Skip(Exception):
    """An expansion does not apply to this node (the reason is reported)."""


@dataclass(frozen=True)
class Expansion:
    fn: Callable[[Builder, Node, dict], None]
    default: bool  # expanded unless disabled; otherwise only when enabled


EXPANDERS: dict[str, Expansion] = {}


def expander(*names: str, default: bool = True):
    """Register `fn(b, node, attrs)` as the expansion of each op in `names` (one table row per op)."""
    def wrap(fn):
        for name in names:
            EXPANDERS[name] = Expansion(fn, default)
        return fn
    return wrap


def default_ops() -> frozenset[str]:
    return frozenset(n for n, e in EXPANDERS.items() if e.default)


def active_ops(enabled: Iterable[str] | None = None, disabled: Iterable[str] = ()) -> frozenset[str]:
    """MindSpore's rule: the default list, plus `enabled`, minus `disabled`; unknown names are an error."""
    enabled, disabled = set(enabled or ()), set(disabled or ())
    unknown = (enabled | disabled) - set(EXPANDERS)
    if unknown:
        raise ContextError(f"no expander for {', '.join(sorted(unknown))}; expandable ops: "
                           f"{', '.join(sorted(EXPANDERS))}")
    return frozenset((default_ops() | enabled) - disabled)


def expand_composites(graph: Graph, enabled: set[str] | None = None, disabled: Iterable[str] = (),
                      report: list | None = None) -> Graph:
    """Rewrite composite ops of `graph` into primitives; `report` (if given) receives (node, reason) for
    each node an active expander left alone. Subgraphs (If/Loop bodies) are not entered."""
    active = active_ops(enabled, disabled)
    used = _used_values(graph)
    root = Builder(known=graph.constants)
    nodes: list[Node] = []

    def emit(n: Node, depth: int) -> None:
        if ops.DOMAIN_ALIASES.get(n.domain, n.domain) or n.op not in active or depth > MAX_DEPTH:
            nodes.append(n)
            return
        b = root.fork(opset=max(n.opset, MIN_OPSET), name=n.name or n.op)
        try:
            _check(n, used)
            EXPANDERS[n.op].fn(b, n, {**ops.get(n.op, n.domain, n.opset).attrs, **n.attrs})
        except Skip as e:
            if report is not None:
                report.append((n, str(e)))
            nodes.append(n)
            return
        for m in b.nodes:
            emit(m, depth + 1)

    for n in graph.nodes:
        emit(n, 0)
    if len(nodes) == len(graph.nodes) and all(a is b for a, b in zip(nodes, graph.nodes)):
        return graph
    needed = {v for n in nodes for v in n.inputs}
    new_consts = {v: a for v, a in root.constants.items() if v in needed}
    return graph.replace(nodes=tuple(nodes), constants={**graph.constants, **new_consts})


def expand_pass(flags) -> Callable[[Graph], Graph]:
    """The expander as a Graph -> Graph pass configured by GraphKernelFlags (names checked now)."""
    active_ops(flags.enable_expand_ops, flags.disable_expand_ops)
    return lambda g: expand_composites(g, set(flags.enable_expand_ops), flags.disable_expand_ops)


def _used_values(graph: Graph) -> set[Value]:
    """Values read by a node, a subgraph (captures) or the graph's outputs."""
    used = set(graph.outputs)
    for n in graph.nodes:
        used.update(v for v in n.inputs if v is not None)
        for a in n.attrs.values():
            for g in (a if isinstance(a, tuple) else (a,)):
                if isinstance(g, Graph):
                    used |= _used_values(g)
    return used


def _check(n: Node, used: set[Value]) -> None:
    for v in n.inputs:
        t = None if v is None else v.type
        if t is not None and (not isinstance(t, TensorType) or t.shape is None or t.dtype is None):
            raise Skip(f"input {v.name!r} has unknown rank or dtype")
    if any(v in used for v in n.outputs[1:]):
        raise Skip("an optional output is in use")


def _x(n: Node, dtypes=FLOATS) -> tuple[Value, np.dtype, int]:
    """The first input, its dtype (one of `dtypes`) and rank."""
    x = n.inputs[0]
    if x.type.dtype not in dtypes:
        raise Skip(f"dtype {x.type.dtype} is not expanded")
    return x, x.type.dtype, len(x.type.shape)


def _axes(b: Builder, n: Node, attrs: dict, rank: int) -> list[int]:
    """The normalised axes of a Reduce* node (attribute before opset 18, input after)."""
    if n.opset < (13 if n.op == "ReduceSum" else 18):
        axes = attrs.get("axes")
    else:
        if len(n.inputs) > 1 and n.inputs[1] is not None:
            value = b.value_of(n.inputs[1])
            if value is None:
                raise Skip("axes are not a constant")
            axes = [int(a) for a in np.ravel(value)]
        else:
            axes = None
        if not axes and attrs.get("noop_with_empty_axes"):
            raise Skip("a no-op reduction")
    if rank == 0:
        raise Skip("a rank-0 reduction")
    if not axes:
        return list(range(rank))
    if any(not -rank <= a < rank for a in axes):
        raise Skip(f"axes {axes} out of range for rank {rank}")
    return sorted({a % rank for a in axes})


def _trailing(axis: int, rank: int) -> list[int]:
    if not -rank <= axis < rank:
        raise Skip(f"axis {axis} out of range for rank {rank}")
    return list(range(axis % rank, rank))


def _wide(dtype: np.dtype) -> np.dtype:
    """Where a registry kernel runs one numpy call (logaddexp, expm1) on float16, numpy computes it in
    float32 and rounds once: the expansion does the same."""
    return F32 if dtype == F16 else dtype


# ---------------------------------------------------------------- activations


@expander("Gelu")
def _gelu(b: Builder, n: Node, a: dict) -> None:
    x, dt, _ = _x(n)
    c = lambda v: b.scalar(v, dt)  # noqa: E731
    half = b.op("Mul", x, c(0.5))
    if a["approximate"] == "tanh":  # 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))
        inner = b.op("Add", x, b.op("Mul", b.op("Pow", x, c(3)), c(0.044715)))
        t = b.op("Tanh", b.op("Mul", inner, c(math.sqrt(2 / math.pi))))
    elif a["approximate"] == "none":  # 0.5 * x * (1 + erf(x / sqrt(2)))
        t = b.op("Erf", b.op("Div", x, c(math.sqrt(2))))
    else:
        raise Skip(f"approximate={a['approximate']!r}")
    b.op("Mul", half, b.op("Add", t, c(1)), out=n.outputs[0])


@expander("HardSwish")
def _hardswish(b, n, a):
    x, dt, _ = _x(n)
    s = b.op("Add", b.op("Div", x, b.scalar(6, dt)), b.scalar(0.5, dt))
    clipped = b.op("Min", b.op("Max", s, b.scalar(0, dt)), b.scalar(1, dt))
    b.op("Mul", x, clipped, out=n.outputs[0])


@expander("HardSigmoid")
def _hardsigmoid(b, n, a):
    x, dt, _ = _x(n)
    s = b.op("Add", b.op("Mul", x, b.scalar(a["alpha"], dt)), b.scalar(a["beta"], dt))
    b.op("Min", b.op("Max", s, b.scalar(0, dt)), b.scalar(1, dt), out=n.outputs[0])


@expander("Swish")
def _swish(b, n, a):
    """x / (1 + exp(-alpha * x)), the kernel's form: x * Sigmoid(alpha * x) would round once more."""
    x, dt, _ = _x(n)
    e = b.op("Exp", b.op("Mul", x, b.scalar(-float(a["alpha"]), dt)))
    b.op("Div", x, b.op("Add", e, b.scalar(1, dt)), out=n.outputs[0])


@expander("Sum", "Mean", "Max", "Min")
def _variadic(b, n, a):
    """A left fold of binary ops in input order, as the kernels fold (Sum and Mean add, Mean then divides by
    the count); the DVM and the polyhedral backend take binary ops only."""
    x, dt, _ = _x(n)
    xs, out = n.inputs, n.outputs[0]
    if n.op in ("Max", "Min") and len(xs) == 2:
        raise Skip("two inputs: a primitive already")
    if len(xs) == 1:
        b.op("Identity", x, out=out)
        return
    op = "Add" if n.op in ("Sum", "Mean") else n.op
    acc = x
    for v in xs[1:-1]:
        acc = b.op(op, acc, v)
    if n.op == "Mean":
        b.op("Div", b.op("Add", acc, xs[-1]), b.scalar(len(xs), dt), out=out)
    else:
        b.op(op, acc, xs[-1], out=out)


@expander("CastLike")
def _cast_like(b, n, a):
    """Cast to the second input's dtype (the same conversion); exporters emit CastLike around constants."""
    x, like = n.inputs
    extra = {k: a[k] for k, default in (("saturate", 1), ("round_mode", "up")) if a.get(k, default) != default}
    b.op("Cast", x, to=onnx_elem_type(like.type.dtype), out=n.outputs[0], **extra)


@expander("Sigmoid", default=False)
def _sigmoid(b, n, a):
    x, dt, _ = _x(n)
    b.op("Reciprocal", b.op("Add", b.op("Exp", b.op("Neg", x)), b.scalar(1, dt)), out=n.outputs[0])


@expander("Relu", default=False)
def _relu(b, n, a):
    x, dt, _ = _x(n, FLOATS + tuple(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64)))
    b.op("Max", x, b.scalar(0, dt), out=n.outputs[0])


@expander("LeakyRelu", default=False)
def _leaky_relu(b, n, a):
    x, dt, _ = _x(n)
    neg = b.op("Mul", x, b.scalar(a["alpha"], dt))
    b.op("Where", b.op("GreaterOrEqual", x, b.scalar(0, dt)), x, neg, out=n.outputs[0])


def _log1p(b: Builder, u: Value, dt) -> Value:
    """log1p(u) for u >= 0 without a Log1p primitive: log(w) + (u - (w - 1)) / w with w = 1 + u; the
    second term restores what rounding 1 + u lost (w - 1 is exact), so tiny u gives u, not 0."""
    w = b.op("Add", u, b.scalar(1, dt))
    lost = b.op("Sub", u, b.op("Sub", w, b.scalar(1, dt)))
    return b.op("Add", b.op("Log", w), b.op("Div", lost, w))


def _expm1_neg(b: Builder, y: Value, dt) -> Value:
    """expm1(y) for y <= 0 without an Expm1 primitive: 2t / (1 - t) with t = tanh(y / 2), accurate to a few
    ulps near 0 (where exp(y) - 1 would cancel) and -1 at -inf."""
    t = b.op("Tanh", b.op("Mul", y, b.scalar(0.5, dt)))
    return b.op("Div", b.op("Add", t, t), b.op("Sub", b.scalar(1, dt), t))


@expander("Softplus")
def _softplus(b, n, a):
    x, dt, _ = _x(n)  # log(1 + e^x) = max(x, 0) + log1p(e^-|x|), as numpy's logaddexp(0, x)
    w = _wide(dt)
    xw = b.cast(x, w)
    tail = _log1p(b, b.op("Exp", b.op("Neg", b.op("Abs", xw))), w)
    y = b.op("Add", b.op("Max", xw, b.scalar(0, w)), tail, out=None if w != dt else n.outputs[0])
    if w != dt:
        b.cast(y, dt, out=n.outputs[0])


@expander("Mish")
def _mish(b, n, a):
    x, dt, _ = _x(n)  # x * tanh(softplus(x)); Softplus is expanded in turn
    b.op("Mul", x, b.op("Tanh", b.op("Softplus", x)), out=n.outputs[0])


def _elu_tail(b: Builder, x: Value, dt, alpha: float) -> Value:
    """alpha * expm1(min(x, 0)) in x's dtype (the expm1 itself in _wide(dt))."""
    w = _wide(dt)
    m = b.op("Min", x, b.scalar(0, dt))
    e = b.cast(_expm1_neg(b, b.cast(m, w), w), dt)
    return b.op("Mul", e, b.scalar(alpha, dt))


@expander("Elu")
def _elu(b, n, a):
    x, dt, _ = _x(n)
    neg = _elu_tail(b, x, dt, a["alpha"])
    b.op("Where", b.op("Greater", x, b.scalar(0, dt)), x, neg, out=n.outputs[0])


@expander("Selu")
def _selu(b, n, a):
    x, dt, _ = _x(n)
    y = b.op("Where", b.op("Greater", x, b.scalar(0, dt)), x, _elu_tail(b, x, dt, a["alpha"]))
    b.op("Mul", y, b.scalar(a["gamma"], dt), out=n.outputs[0])


@expander("Softsign")
def _softsign(b, n, a):
    x, dt, _ = _x(n)
    b.op("Div", x, b.op("Add", b.op("Abs", x), b.scalar(1, dt)), out=n.outputs[0])


@expander("Clip")
def _clip(b, n, a):
    ints = tuple(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                                       np.uint64))
    x, dt, _ = _x(n, FLOATS + ints)
    if n.opset < 11:
        lo, hi = b.scalar(a["min"], dt), b.scalar(a["max"], dt)
    else:
        lo, hi = (n.inputs[i] if len(n.inputs) > i else None for i in (1, 2))
        if lo is None and hi is None:
            raise Skip("no bounds")
    y = x if lo is None else b.op("Max", x, lo, out=n.outputs[0] if hi is None else None)
    if hi is not None:
        b.op("Min", y, hi, out=n.outputs[0])


# ---------------------------------------------------------------- softmax family


def _softmax_axes(n: Node, a: dict, rank: int) -> list[int]:
    """Opset 13+: one axis. Before: the trailing axes from `axis` (what the 2-D coercion reduces)."""
    if rank == 0:
        raise Skip("rank-0 input")
    axes = _trailing(a["axis"], rank)
    return axes if n.opset < 13 else axes[:1]


@expander("Softmax")
def _softmax(b, n, a):
    x, dt, rank = _x(n)  # exp(x - max) * (1 / sum), each step in x's dtype
    axes = _softmax_axes(n, a, rank)
    e = b.op("Exp", b.op("Sub", x, b.reduce("ReduceMax", x, axes, True)))
    # one reciprocal per row and a multiply per element, as onnxruntime's kernel does: a divide per element
    # costs several multiplies, and the results differ by at most an ulp or so
    b.op("Mul", e, b.op("Reciprocal", b.reduce("ReduceSum", e, axes, True)), out=n.outputs[0])


@expander("LogSoftmax")
def _log_softmax(b, n, a):
    x, dt, rank = _x(n)
    axes = _softmax_axes(n, a, rank)
    s = b.op("Sub", x, b.reduce("ReduceMax", x, axes, True))
    b.op("Sub", s, b.op("Log", b.reduce("ReduceSum", b.op("Exp", s), axes, True)), out=n.outputs[0])


# ---------------------------------------------------------------- normalizations


def _stash(a: dict) -> np.dtype:
    return np_dtype(int(a.get("stash_type", 1)))


def _same_dtype(n: Node, dt, *idx: int) -> None:
    for i in idx:
        if len(n.inputs) > i and n.inputs[i] is not None and n.inputs[i].type.dtype != dt:
            raise Skip(f"input {i} is {n.inputs[i].type.dtype}, the data {dt}")


@expander("LayerNormalization")
def _layer_norm(b, n, a):
    x, dt, rank = _x(n)
    _same_dtype(n, dt, 1, 2)
    st = _stash(a)
    cd = F64 if dt == F64 else st  # the kernel keeps float64 data in float64 whatever the stash type
    axes = _trailing(a["axis"], rank)
    xf = b.cast(x, cd)
    d = b.op("Sub", xf, b.reduce("ReduceMean", xf, axes, True))
    var = b.reduce("ReduceMean", b.op("Mul", d, d), axes, True)
    inv = b.op("Reciprocal", b.op("Sqrt", b.op("Add", var, b.scalar(a["epsilon"], st))))
    normed = b.cast(b.op("Mul", d, inv), dt)
    bias = n.inputs[2] if len(n.inputs) > 2 else None
    y = b.op("Mul", normed, n.inputs[1], out=n.outputs[0] if bias is None else None)
    if bias is not None:
        b.op("Add", y, bias, out=n.outputs[0])


@expander("RMSNormalization")
def _rms_norm(b, n, a):
    x, dt, rank = _x(n)
    _same_dtype(n, dt, 1)
    st = _stash(a)
    axes = _trailing(a["axis"], rank)
    xf = b.cast(x, st)
    ms = b.reduce("ReduceMean", b.op("Mul", xf, xf), axes, True)
    normed = b.cast(b.op("Div", xf, b.op("Sqrt", b.op("Add", ms, b.scalar(a["epsilon"], st)))), dt)
    b.op("Mul", normed, n.inputs[1], out=n.outputs[0])


@expander("BatchNormalization")
def _batch_norm(b, n, a):
    """Inference form only: y = x * (scale / sqrt(var + eps)) + (bias - mean * that), per channel; with
    constant parameters the builder folds both vectors, leaving one Mul and one Add."""
    x, dt, rank = _x(n)
    training = bool(a.get("training_mode")) or (9 <= n.opset < 14 and len(n.outputs) > 1)
    if training or len(n.outputs) > 1:
        raise Skip("training mode or statistics outputs")
    if rank < 2:
        raise Skip("rank < 2")
    acc = F64 if dt == F64 else F32
    scale, bias, mean, var = (b.cast(v, acc) for v in n.inputs[1:5])
    mul = b.op("Div", scale, b.op("Sqrt", b.op("Add", var, b.scalar(a["epsilon"], acc))))
    add = b.op("Sub", bias, b.op("Mul", mean, mul))
    if rank > 2:  # [C] -> [C, 1, ..., 1] to broadcast against [N, C, *spatial]
        trail = b.const(np.arange(1, rank - 1, dtype=np.int64))
        mul, add = b.op("Unsqueeze", mul, trail), b.op("Unsqueeze", add, trail)
    y = b.op("Add", b.op("Mul", b.cast(x, acc), mul), add, out=n.outputs[0] if acc == dt else None)
    if acc != dt:
        b.cast(y, dt, out=n.outputs[0])


# ---------------------------------------------------------------- reductions


@expander("ReduceMean")
def _reduce_mean(b, n, a):
    """Sum / count, when the count is static (over symbolic dims ReduceMean stays: it fuses as a reduce)."""
    x, dt, rank = _x(n)
    axes = _axes(b, n, a, rank)
    dims = [x.type.shape[i] for i in axes]
    if not all(isinstance(d, int) for d in dims):
        raise Skip("reduced dims are symbolic")
    w = _wide(dt)  # numpy's mean sums float16 in float32 and rounds the quotient once
    if math.prod(dims) > 2 ** 24 and w != F64:  # numpy divides by the exact count in float64
        raise Skip("count not exact in float32")
    s = b.reduce("ReduceSum", b.cast(x, w), axes, a["keepdims"])
    y = b.op("Div", s, b.scalar(math.prod(dims), w), out=n.outputs[0] if w == dt else None)
    if w != dt:
        b.cast(y, dt, out=n.outputs[0])


@expander("ReduceSumSquare")
def _reduce_sum_square(b, n, a):
    x, dt, rank = _x(n)
    b.reduce("ReduceSum", b.op("Mul", x, x), _axes(b, n, a, rank), a["keepdims"], out=n.outputs[0])


@expander("ReduceL2")
def _reduce_l2(b, n, a):
    x, dt, rank = _x(n)
    s = b.reduce("ReduceSum", b.op("Mul", x, x), _axes(b, n, a, rank), a["keepdims"])
    b.op("Sqrt", s, out=n.outputs[0])


@expander("ReduceLogSumExp")
def _reduce_log_sum_exp(b, n, a):
    """m = max (0 where not finite); log(sum(exp(x - m))) + m, as the kernel stabilises it."""
    x, dt, rank = _x(n)
    axes = _axes(b, n, a, rank)
    m = b.reduce("ReduceMax", x, axes, True)
    finite = b.op("Less", b.op("Abs", m), b.scalar(np.inf, dt))
    m = b.op("Where", finite, m, b.scalar(0, dt))
    s = b.reduce("ReduceSum", b.op("Exp", b.op("Sub", x, m)), axes, True)
    keep = bool(a["keepdims"])
    y = b.op("Add", b.op("Log", s), m, out=n.outputs[0] if keep else None)
    if not keep:
        b.op("Squeeze", y, b.const(np.array(axes, np.int64)), out=n.outputs[0])
