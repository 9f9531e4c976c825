"""Reverse-mode autodiff on the IR: the backward graph is ordinary IR built from the registry's `grad` rules.

A rule is `grad(b: Builder, node, grad_outputs: list[Value | None]) -> list[Value | None]` (one per input),
written with the builder; it reduces broadcast gradients back to each input's shape with `b.sum_to`.
"""
from __future__ import annotations

from typing import Sequence

from . import ops
from .errors import UnsupportedOpError
from .graph_builder import Builder
from .ir import Graph, Node, TensorType, Value
from .passes import captured_values, subgraphs_of


def differentiable(v: Value | None) -> bool:
    """Float tensors carry gradients; ints, bools and strings do not."""
    t = None if v is None else v.type
    if not isinstance(t, TensorType) or t.dtype is None:
        return False
    return t.dtype.kind == "f" or (t.dtype.kind == "V" and "float" in t.dtype.name)


def _integral(v: Value) -> bool:
    """A tensor of a known dtype that carries no gradient (int, bool, string); sequences may carry one."""
    t = v.type
    return isinstance(t, TensorType) and t.dtype is not None and not differentiable(v)


def _reads(n: Node) -> list[Value]:
    """A node's inputs plus what its subgraphs capture."""
    captured = [v for g in subgraphs_of(n) for v in captured_values(g)]
    return [v for v in n.inputs if v is not None] + captured


def path_nodes(nodes: Sequence[Node], ys: Sequence[Value], xs: Sequence[Value]) -> tuple[list[Node], set]:
    """Nodes on a path from some x to some y (topological order) and the values they carry.

    xs are leaves: a node producing an x is not followed (x is independent, as ONNX's Gradient says).
    """
    leaves = set(xs)
    active = set(xs)
    forward = []
    for n in nodes:
        if not any(o in leaves for o in n.outputs) and any(v in active for v in _reads(n)):
            forward.append(n)
            # an integer or bool result (Shape, ArgMax, a comparison) carries no gradient: what depends on x
            # only through it (ones_like, OneHot of an argmax) is a constant here, not a rule to look up
            active.update(o for o in n.outputs if not _integral(o))
    needed, path = set(ys), []
    for n in reversed(forward):
        if any(o in needed for o in n.outputs):
            path.append(n)
            needed.update(v for v in _reads(n) if v in active)
    return path[::-1], active


def grad_graph(graph: Graph, ys: list[Value], xs: list[Value], seeds: list[Value | None] | None = None,
               builder: Builder | None = None) -> tuple[list[Node], dict, list[Value]]:
    """Gradients of sum(seed_i * y_i) w.r.t. each x: (new nodes, new constants, one gradient Value per x).

    A missing seed is ones of y's shape; an x no y depends on gets zeros.
    """
    b = builder or Builder(graph.constants, name="grad")
    path, active = path_nodes(graph.nodes, ys, xs)
    b.needed = {v for v in active if differentiable(v)}
    grads: dict[Value, Value] = {}

    def accumulate(v: Value, g: Value) -> None:
        grads[v] = b.op("Add", grads[v], g) if v in grads else g

    for y, seed in zip(ys, seeds or [None] * len(ys)):
        accumulate(y, seed if seed is not None else b.fill(y, 1))
    for n in reversed(path):
        gouts = [grads.get(o) for o in n.outputs]
        if all(g is None for g in gouts):
            continue
        opdef = ops.get(n.op, n.domain, n.opset, n.name)
        if opdef.grad is None or any(captured_values(g) & active for g in subgraphs_of(n)):
            raise UnsupportedOpError(n.op, n.domain, n.opset, n.name or n.op, "no gradient rule")
        for v, g in zip(n.inputs, opdef.grad(b, n, gouts)):
            if g is not None and v in active and differentiable(v):
                accumulate(v, g)
    out = [grads[x] if x in grads else b.fill(x, 0) for x in xs]
    return b.nodes, b.constants, out
