"""The one IR: frozen dataclasses for types, values, nodes and graphs, a text printer and a verifier.

Values and nodes compare by identity, so the same name may appear twice without aliasing, and
graphs built by passes share unchanged values with their inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import sympy

from .dtypes import short_name
from .errors import ModelError

Dim = int | sympy.Expr


def symbol(name: str) -> sympy.Symbol:
    """A dynamic dimension: a positive integer symbol."""
    return sympy.Symbol(name, integer=True, positive=True)


def as_dim(d) -> Dim:
    """Normalise a dim: plain ints stay ints, integer-valued sympy expressions become ints."""
    if isinstance(d, (int, np.integer)):
        return int(d)
    d = sympy.sympify(d)
    return int(d) if d.is_Integer else d


@dataclass(frozen=True, slots=True)
class TensorType:
    """dtype (numpy dtype, None when unknown) and shape (tuple of dims, None when the rank is unknown)."""

    dtype: np.dtype | None
    shape: tuple[Dim, ...] | None

    def __post_init__(self):
        if self.dtype is not None:
            object.__setattr__(self, "dtype", np.dtype(self.dtype))
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(as_dim(d) for d in self.shape))

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    def __str__(self) -> str:
        if self.shape is None:
            return f"{short_name(self.dtype)}[*]"
        return f"{short_name(self.dtype)}[{','.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True, slots=True)
class SequenceType:
    """An ONNX sequence of tensors of one element type."""

    elem: TensorType

    def __str__(self) -> str:
        return f"seq<{self.elem}>"


@dataclass(frozen=True, slots=True)
class OptionalType:
    """An ONNX optional of a tensor or sequence type."""

    elem: Any

    def __str__(self) -> str:
        return f"opt<{self.elem}>"


UNKNOWN = TensorType(None, None)


@dataclass(frozen=True, slots=True, eq=False)
class Value:
    """An SSA value. Compared by identity."""

    type: Any
    name: str = ""

    def with_type(self, type_) -> "Value":
        return Value(type_, self.name)


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One op application. `inputs` may hold None for omitted optional inputs; `opset` is its domain's."""

    op: str
    inputs: tuple[Value | None, ...]
    outputs: tuple[Value, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    domain: str = ""
    opset: int = 1
    name: str = ""

    def describe(self) -> str:
        return f"{self.domain + '::' if self.domain else ''}{self.op}" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True, slots=True, eq=False)
class Graph:
    """Inputs, outputs, nodes in topological order, and constants (initializers) keyed by Value."""

    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    nodes: tuple[Node, ...]
    constants: Mapping[Value, np.ndarray] = field(default_factory=dict)
    name: str = "graph"

    def replace(self, **changes) -> "Graph":
        fields = {f: getattr(self, f) for f in ("inputs", "outputs", "nodes", "constants", "name")}
        fields.update(changes)
        return Graph(**fields)

    def producers(self) -> dict[Value, Node]:
        return {v: n for n in self.nodes for v in n.outputs}

    def consumers(self) -> dict[Value, list[Node]]:
        users: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                if v is not None:
                    users.setdefault(v, []).append(n)
        return users


def substitute(graph: Graph, mapping: Mapping[Value, Value], nodes: Iterable[Node] | None = None) -> Graph:
    """Rebuild `graph` with values renamed through `mapping` (values not in it are kept)."""
    def m(v):
        return None if v is None else mapping.get(v, v)

    new_nodes = tuple(
        Node(n.op, tuple(m(v) for v in n.inputs), tuple(m(v) for v in n.outputs), n.attrs, n.domain, n.opset, n.name)
        for n in (graph.nodes if nodes is None else nodes)
    )
    return graph.replace(
        inputs=tuple(m(v) for v in graph.inputs),
        outputs=tuple(m(v) for v in graph.outputs),
        nodes=new_nodes,
        constants={m(v): a for v, a in graph.constants.items()},
    )


# ---------------------------------------------------------------- printer

def _attr_text(value) -> str:
    if isinstance(value, Graph):
        return f"<graph {value.name}>"
    if isinstance(value, np.ndarray):
        if value.size <= 8:
            return f"{short_name(value.dtype)}{list(value.reshape(-1).tolist())}"
        return f"<{short_name(value.dtype)}{list(value.shape)}>"
    if isinstance(value, float):
        return repr(value)
    return repr(value)


def print_graph(graph: Graph, indent: str = "") -> str:
    """Stable text form, one line per value: `%3: f32[B,128] = Add(%1, %2)`."""
    ids: dict[Value, int] = {}

    def ref(v: Value | None) -> str:
        if v is None:
            return "_"
        if v not in ids:
            ids[v] = len(ids)
        return f"%{ids[v]}"

    lines = [f"{indent}graph {graph.name}("]
    for v in graph.inputs:
        lines.append(f"{indent}  {ref(v)}: {v.type}  # {v.name}")
    lines.append(f"{indent}) {{")
    for v, arr in graph.constants.items():
        lines.append(f"{indent}  {ref(v)}: {v.type} = const {_attr_text(arr)}")
    for n in graph.nodes:
        outs = ", ".join(f"{ref(v)}: {v.type}" for v in n.outputs)
        attrs = ", ".join(f"{k}={_attr_text(a)}" for k, a in sorted(n.attrs.items()))
        args = ", ".join(ref(v) for v in n.inputs)
        op = f"{n.domain}::{n.op}" if n.domain else n.op
        lines.append(f"{indent}  {outs} = {op}({args}){' {' + attrs + '}' if attrs else ''}")
        for a in n.attrs.values():
            if isinstance(a, Graph):
                lines.append(print_graph(a, indent + "    "))
    lines.append(f"{indent}  return {', '.join(ref(v) for v in graph.outputs)}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


# ---------------------------------------------------------------- verifier

def verify(graph: Graph, outer: frozenset = frozenset()) -> None:
    """Check SSA form and topological order; raise ModelError naming the first problem.

    `outer` holds values visible from enclosing graphs (subgraphs may capture them).
    """
    defined = set(outer) | set(graph.inputs) | set(graph.constants)
    if len(defined) != len(outer) + len(set(graph.inputs) | set(graph.constants)):
        raise ModelError(f"graph {graph.name!r}: an input is also a constant")
    for n in graph.nodes:
        for v in n.inputs:
            if v is not None and v not in defined:
                raise ModelError(f"graph {graph.name!r}: node {n.describe()} uses {v.name!r} before it is defined "
                                 "(dangling input or cycle)")
        for a in n.attrs.values():
            if isinstance(a, Graph):
                verify(a, frozenset(defined))
        for v in n.outputs:
            if v in defined:
                raise ModelError(f"graph {graph.name!r}: value {v.name!r} is defined twice")
            defined.add(v)
    for v in graph.outputs:
        if v not in defined:
            raise ModelError(f"graph {graph.name!r}: output {v.name!r} is never produced")
