"""Designer: turns a traced (or fused) IR graph into a plan. Ops a C loop nest cannot express here (MatMul on
BLAS, Transpose, reductions over other axes...) become host steps run by the op's own numpy kernel; the rest
form C stages, each a loop over rows of one iteration space S whose values are full rows or per-row
scalars."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from framework.ir import Graph, Node, TensorType, Value

ELEMWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Neg", "Abs", "Exp", "Log", "Tanh", "Sqrt",
            "Reciprocal", "Sin", "Cos", "Floor", "Ceil", "Sign", "Erf", "Sigmoid", "Relu", "IsNaN", "Not",
            "And", "Or", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Where", "Cast",
            "Identity"}
ROW_REDUCE = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"}
SPECIAL = {"CumSum", "ArgMax", "GatherElements"}
ALIAS = {"Reshape", "Squeeze", "Unsqueeze", "Flatten"}
C_DTYPES = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.int32),
            np.dtype(np.bool_)}
INT_OK = {"Add", "Sub", "Mul", "Max", "Min", "Neg", "Equal", "Less", "Greater", "LessOrEqual",
          "GreaterOrEqual", "Where", "Cast", "Identity", "Not", "And", "Or", "ReduceSum", "ReduceMax",
          "ReduceMin", "CumSum", "ArgMax", "GatherElements"} | ALIAS


@dataclass(frozen=True)
class Variant:
    """Tunable knobs of the C template: worker threads, `omp simd` loops, our vectorizable exp or libm's."""

    threads: int = 1
    simd: bool = True
    fast_exp: bool = True

    def label(self) -> str:
        return f"t{self.threads}{'-simd' if self.simd else ''}{'-pexp' if self.fast_exp else '-libm'}"

    @classmethod
    def from_label(cls, label: str) -> "Variant":
        """The variant that `label()` printed (registry entries and generated kernels keep only the label)."""
        m = re.fullmatch(r"t(\d+)(-simd)?-(pexp|libm)", label)
        if m is None:
            raise ValueError(f"not an offline variant label: {label!r}")
        return cls(int(m[1]), bool(m[2]), m[3] == "pexp")


@dataclass
class Stage:
    """One C function: nodes, the iteration space S, and the padded S-space shape P of every value."""

    nodes: list[Node]
    kind: str = "rows"  # or "columns": one reduction over leading/middle axes, loops interchanged
    S: tuple[int, ...] = ()
    P: dict = field(default_factory=dict)
    inputs: list[Value] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)


@dataclass
class Plan:
    """Steps in order: ("host", node) or ("c", Stage). `strategy` names what the coder will emit."""

    graph: Graph
    steps: list
    strategy: str


def const_of(graph: Graph, v: Value | None):
    return None if v is None else graph.constants.get(v)


def reduce_axes(graph: Graph, n: Node) -> tuple[int, ...] | None:
    """Normalised axes of a Reduce*/ArgMax/CumSum/GatherElements node (None: every axis)."""
    rank = len(n.inputs[0].type.shape)
    if n.op in ("ArgMax", "GatherElements"):
        return (int(n.attrs.get("axis", 0)) % max(rank, 1),)
    if n.op == "CumSum":
        a = const_of(graph, n.inputs[1])
        return None if a is None else (int(np.asarray(a).reshape(-1)[0]) % rank,)
    axes = n.attrs.get("axes")
    if axes is None and len(n.inputs) > 1 and n.inputs[1] is not None:
        a = const_of(graph, n.inputs[1])
        if a is None:
            return "dynamic"
        axes = list(np.asarray(a).reshape(-1))
    if not axes:
        return None if not n.attrs.get("noop_with_empty_axes", 0) else ()
    return tuple(sorted(int(x) % rank for x in axes))


def c_able(graph: Graph, n: Node) -> bool:
    """Local check: could this node live in a C stage (op, dtypes, axes)?"""
    if n.domain not in ("", "ai.onnx") or any(o.type.shape is None for o in n.outputs):
        return False
    aux = _aux_inputs(n)
    vals = [v for v in n.inputs if v is not None and v not in aux] + list(n.outputs)
    if any(getattr(v.type, "dtype", None) not in C_DTYPES or not getattr(v.type, "is_static", False)
           for v in vals):
        return False
    data = vals[:1] + vals[2:] if n.op == "GatherElements" else vals
    ints = [v for v in data if v.type.dtype.kind in "iu" and (v not in n.outputs or n.op != "ArgMax")]
    if n.op not in INT_OK and ints:
        return False
    if n.op in ELEMWISE or n.op in ALIAS:
        return True
    if n.op in ROW_REDUCE or n.op in SPECIAL:
        rank = len(n.inputs[0].type.shape)
        if rank == 0 or reduce_axes(graph, n) != (rank - 1,):
            return False
        if n.op == "CumSum" and (n.attrs.get("exclusive") or n.attrs.get("reverse")):
            return False
        if n.op == "ArgMax" and n.attrs.get("select_last_index"):
            return False
        return True
    return False


def _aux_inputs(n: Node) -> list:
    """Inputs that are compile-time operands (axes, shapes), not data."""
    if n.op in ROW_REDUCE or n.op in ("CumSum",) or n.op in ALIAS:
        return list(n.inputs[1:])
    return []


def column_reduce(graph: Graph, n: Node) -> tuple[int, int, int] | None:
    """(A, K, B) when `n` reduces a contiguous run of axes that excludes the last:
    out[a, b] = R_k x[a, k, b]."""
    if n.op not in ROW_REDUCE or n.domain not in ("", "ai.onnx") or not _static([n.inputs[0], n.outputs[0]]):
        return None
    if n.inputs[0].type.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        return None
    shape = tuple(n.inputs[0].type.shape)
    axes = reduce_axes(graph, n)
    if not shape or axes in (None, "dynamic") or not axes or (len(shape) - 1) in axes:
        return None
    if list(axes) != list(range(axes[0], axes[-1] + 1)):
        return None
    lo, hi = axes[0], axes[-1] + 1
    return math.prod(shape[:lo]), math.prod(shape[lo:hi]), math.prod(shape[hi:])


def _static(vals) -> bool:
    return all(getattr(v.type, "is_static", False) and v.type.dtype in C_DTYPES for v in vals)


def sink_transposes(graph: Graph) -> Graph:
    """Reduce(Transpose(x, perm), last axis) -> Reduce(x, perm[-1]) (+ a view) when the kept axes stay in
    order: the reduction then reads x contiguously instead of through a strided view."""
    prods = graph.producers()
    users = graph.consumers()
    swap: dict = {}
    for n in graph.nodes:
        t = prods.get(n.inputs[0]) if n.inputs and n.inputs[0] is not None else None
        if n.op not in ROW_REDUCE or t is None or t.op != "Transpose" \
                or len(users.get(t.outputs[0], [])) != 1:
            continue
        rank = len(t.inputs[0].type.shape)
        perm = list(t.attrs.get("perm") or range(rank)[::-1])
        if reduce_axes(graph, n) != (rank - 1,) or perm[:-1] != sorted(perm[:-1]):
            continue
        axes = Value(TensorType(np.int64, (1,)), f"{n.name}_axes")
        keep = int(n.attrs.get("keepdims", 1))
        red_shape = tuple(d for i, d in enumerate(t.inputs[0].type.shape) if i != perm[-1])
        red = Value(TensorType(n.outputs[0].type.dtype, red_shape), f"{n.name}_sunk")
        new = [Node(n.op, (t.inputs[0], axes), (red,), {"keepdims": 0}, "", n.opset, n.name)]
        if keep:
            shape = Value(TensorType(np.int64, (len(n.outputs[0].type.shape),)), f"{n.name}_shape")
            new.append(Node("Reshape", (red, shape), n.outputs, {}, "", n.opset, f"{n.name}_view"))
            swap[n] = (new, {axes: np.array([perm[-1]], np.int64),
                             shape: np.array(n.outputs[0].type.shape, np.int64)})
        else:
            new[0] = Node(n.op, (t.inputs[0], axes), n.outputs, {"keepdims": 0}, "", n.opset, n.name)
            swap[n] = (new, {axes: np.array([perm[-1]], np.int64)})
        swap[t] = ([], {})
    if not swap:
        return graph
    nodes, consts = [], dict(graph.constants)
    for n in graph.nodes:
        if n in swap:
            nodes.extend(swap[n][0])
            consts.update(swap[n][1])
        else:
            nodes.append(n)
    return graph.replace(nodes=tuple(nodes), constants=consts)


def type_stage(graph: Graph, st: Stage) -> int:
    """Pick S (the largest value's shape) and give each value its S-space shape P. Returns -1, or the index
    of the first node that does not fit the iteration space."""
    data = [v for n in st.nodes for v in n.inputs if v is not None and v not in _aux_inputs(n)]
    data += [o for n in st.nodes for o in n.outputs]
    big = max(data, key=lambda v: math.prod(v.type.shape))
    S = tuple(big.type.shape) or (1,)
    r, N = len(S), S[-1]
    P: dict = {}
    produced = {o for n in st.nodes for o in n.outputs}

    def pad(v):
        sh = tuple(v.type.shape)
        if len(sh) > r:
            return None
        p = (1,) * (r - len(sh)) + sh
        return p if all(a in (1, s) for a, s in zip(p, S)) else None

    for k, n in enumerate(st.nodes):
        ins = [v for v in n.inputs if v is not None and v not in _aux_inputs(n)]
        for v in ins:
            if v not in produced and v not in P:
                P[v] = pad(v)
                if P[v] is None:
                    return k
        if n.op in ELEMWISE:
            p = tuple(max(d) for d in zip(*[P[v] for v in ins]))
        elif n.op in ROW_REDUCE or n.op == "ArgMax":
            x = P[ins[0]]
            if x[-1] != N or n.inputs[0].type.shape[-1] != N or N == 1:
                return k
            p = x[:-1] + (1,)
        elif n.op == "CumSum":
            p = P[ins[0]]
            if p[-1] != N or n.inputs[0].type.shape[-1] != N:
                return k
        elif n.op == "GatherElements":
            x, i = P[ins[0]], P[ins[1]]
            if x[-1] != N or n.inputs[0].type.shape[-1] != N or i[-1] != 1 or n.inputs[1].type.shape[-1] != 1:
                return k
            p = i
        else:  # alias: same elements, same layout
            p = P[ins[0]]
            if p not in (S, S[:-1] + (1,)):
                return k
        if math.prod(p) != math.prod(n.outputs[0].type.shape) or len(n.outputs) != 1:
            return k
        P[n.outputs[0]] = p
    if all(n.op in ELEMWISE for n in st.nodes) and all(p == S or math.prod(p) == 1 for p in P.values()):
        flat = (math.prod(S),)  # a plain elementwise chain: one long vector loop, no row structure
        P = {v: flat if p == S else (1,) for v, p in P.items()}
        S = flat
    st.S, st.P = S, P
    return -1


def plan(graph: Graph) -> Plan:
    """Split the graph into host steps and C stages (see the module docstring)."""
    steps: list = []
    current: list[Node] = []
    cur_out: set = set()

    def close():
        nonlocal current, cur_out
        if current:
            steps.append(("stage", current))
        current, cur_out = [], set()

    graph = sink_transposes(graph)
    for n in graph.nodes:
        if column_reduce(graph, n) is not None:
            if any(v in cur_out for v in n.inputs if v is not None):
                close()
            steps.append(("columns", n))
            continue
        if c_able(graph, n) and not (n.op in ALIAS and n.inputs[0] not in cur_out):  # views of outside values
            current.append(n)
            cur_out.update(n.outputs)
        else:
            if any(v in cur_out for v in n.inputs if v is not None):
                close()
            steps.append(("host", n))
    close()
    final: list = []
    for kind, item in steps:
        if kind == "host":
            final.append(("host", item))
            continue
        if kind == "columns":
            final.append(("c", Stage([item], "columns", S=column_reduce(graph, item))))
            continue
        final.extend(_split(graph, list(item)))
    _order(graph, final)
    n_c = sum(1 for k, _ in final if k == "c")
    return Plan(graph, final, "c-rows" if n_c else "host-only")


def _split(graph: Graph, nodes: list) -> list:
    """C stages for a run of c-able nodes, cut (recursively) where a node does not fit an iteration space."""
    if not nodes:
        return []
    if all(n.op in ALIAS for n in nodes):
        return [("host", n) for n in nodes]
    st = Stage(nodes)
    k = type_stage(graph, st)
    if k < 0:
        return [("c", st)]
    return _split(graph, nodes[:k]) + [("host", nodes[k])] + _split(graph, nodes[k + 1:])


def _order(graph: Graph, steps: list) -> None:
    """Topologically sort steps (a stage's host-step producers must run first); fill stage inputs/outputs."""
    prod: dict = {}
    for i, (k, item) in enumerate(steps):
        for n in ([item] if k == "host" else item.nodes):
            for o in n.outputs:
                prod[o] = i
    deps = []
    for i, (k, item) in enumerate(steps):
        nodes = [item] if k == "host" else item.nodes
        deps.append({prod[v] for n in nodes for v in n.inputs
                     if v is not None and v in prod and prod[v] != i})
    order, done = [], set()

    def visit(i):
        if i in done:
            return
        done.add(i)
        for d in sorted(deps[i]):
            visit(d)
        order.append(steps[i])
    for i in range(len(steps)):
        visit(i)
    steps[:] = order
    used_later: dict = {}
    for idx, (k, item) in enumerate(steps):
        for n in ([item] if k == "host" else item.nodes):
            for v in n.inputs:
                if v is not None:
                    used_later.setdefault(v, []).append(idx)
    outs = set(graph.outputs)
    for idx, (k, st) in enumerate(steps):
        if k != "c":
            continue
        mine = {o for n in st.nodes for o in n.outputs}
        aux = {v for n in st.nodes for v in _aux_inputs(n)}
        st.inputs = list(dict.fromkeys(v for n in st.nodes for v in n.inputs
                                       if v is not None and v not in mine and v not in aux))
        st.outputs = [o for n in st.nodes for o in n.outputs
                      if o in outs or any(j != idx for j in used_later.get(o, []))]
