"""ONNX's `Gradient` op (ai.onnx.preview.training) expanded at import into ordinary IR by reverse-mode autodiff:
its outputs become dy/dx for the values named in "xs", evaluated at the node's inputs ("zs" held constant)."""
from __future__ import annotations

from .autodiff import grad_graph
from .errors import ModelError
from .graph_builder import Builder
from .ir import Graph, Node, Value, substitute
from .passes import captured_values, infer_shapes, subgraphs_of

DOMAIN = "ai.onnx.preview.training"


def is_gradient(n: Node) -> bool:
    return n.op == "Gradient" and n.domain == DOMAIN


def expand_gradient_ops(graph: Graph) -> Graph:
    """Replace every Gradient node of the top-level graph (innermost first for higher-order ones)."""
    while any(is_gradient(n) for n in graph.nodes):
        producers = graph.producers()
        for n in graph.nodes:
            if is_gradient(n) and not any(is_gradient(m) for m in _ancestors(graph, _named(graph, n, "y"),
                                                                             producers)):
                graph = _expand(graph, n)
                break
        else:
            raise ModelError("Gradient nodes depend on each other in a cycle")
    return graph


def _reads(n: Node) -> list[Value]:
    return [v for v in n.inputs if v is not None] + [v for g in subgraphs_of(n) for v in captured_values(g)]


def _by_name(graph: Graph) -> dict[str, Value]:
    return {v.name: v for v in (*graph.inputs, *graph.constants, *(o for m in graph.nodes for o in m.outputs))}


def _named(graph: Graph, node: Node, attr: str) -> Value:
    name, names = node.attrs.get(attr), _by_name(graph)
    if name not in names:
        raise ModelError(f"Gradient node {node.name!r}: {attr}={name!r} names no value of the graph")
    return names[name]


def _ancestors(graph: Graph, y: Value, producers: dict) -> list[Node]:
    """The nodes y depends on, in graph order."""
    seen, stack = set(), [y]
    while stack:
        p = producers.get(stack.pop())
        if p is not None and p not in seen:
            seen.add(p)
            stack.extend(_reads(p))
    return [n for n in graph.nodes if n in seen]


def _expand(graph: Graph, node: Node) -> Graph:
    xs_names, zs_names = list(node.attrs.get("xs", ())), list(node.attrs.get("zs", ()))
    if len(node.inputs) != len(xs_names) + len(zs_names) or len(node.outputs) > len(xs_names):
        raise ModelError(f"Gradient node {node.name!r}: expects {len(xs_names) + len(zs_names)} inputs (xs then "
                         f"zs) and at most {len(xs_names)} outputs")
    index = next(i for i, n in enumerate(graph.nodes) if n is node)
    graph = _typed(graph, _ancestors(graph, _named(graph, node, "y"), graph.producers()))
    node, by_name = graph.nodes[index], _by_name(graph)
    y = _named(graph, node, "y")
    for name in xs_names + zs_names:
        if name not in by_name:
            raise ModelError(f"Gradient node {node.name!r}: {name!r} names no value of the graph")
    # the differentiated function is fixed by the names; it is evaluated at the node's inputs
    at = {by_name[name]: v for name, v in zip(xs_names + zs_names, node.inputs) if by_name[name] is not v}
    forward = _ancestors(graph, y, graph.producers())
    copies, y = _clone(forward, at, y)
    xs = [at.get(by_name[name], by_name[name]) for name in xs_names]
    b = Builder(graph.constants, name=node.name or "Gradient")
    _, constants, grads = grad_graph(Graph(graph.inputs, (y,), tuple(forward + copies), graph.constants), [y], xs,
                                     builder=b)
    outs = [Node("Identity", (g,), (o,), {}, "", b.opset, f"{b.name}/out{i}")
            for i, (g, o) in enumerate(zip(grads, node.outputs)) if o.name]
    new_nodes = list(graph.nodes[:index]) + copies + b.nodes + outs + list(graph.nodes[index + 1:])
    return graph.replace(nodes=tuple(_toposort(new_nodes)), constants={**graph.constants, **constants})


def _typed(graph: Graph, forward: list[Node]) -> Graph:
    """Run our shape inference over the forward nodes, so the gradient rules see ranks and dims."""
    typed = infer_shapes(Graph(graph.inputs, (), tuple(forward), graph.constants))
    mapping = {o: t for old, new in zip(forward, typed.nodes) for o, t in zip(old.outputs, new.outputs) if o is not t}
    return substitute(graph, mapping) if mapping else graph


def _clone(forward: list[Node], at: dict, y: Value) -> tuple[list[Node], Value]:
    """Copies, with fresh outputs, of the forward nodes that read a value given at another point; (copies, y)."""
    mapping, copies = dict(at), []
    for n in forward:
        if not any(o in at for o in n.outputs) and any(v in mapping for v in n.inputs if v is not None):
            outs = tuple(Value(o.type, f"{o.name}@grad") for o in n.outputs)
            mapping.update(zip(n.outputs, outs))
            copies.append(Node(n.op, tuple(None if v is None else mapping.get(v, v) for v in n.inputs), outs,
                               n.attrs, n.domain, n.opset, n.name))
    return copies, mapping.get(y, y)


def _toposort(nodes: list[Node]) -> list[Node]:
    """A stable topological order: each node after the producers of what it reads."""
    producers = {v: n for n in nodes for v in n.outputs}
    done, order = set(), []
    for root in nodes:
        stack = [(root, False)]
        while stack:
            n, expanded = stack.pop()
            if n in done:
                continue
            if expanded:
                done.add(n)
                order.append(n)
                continue
            stack.append((n, True))
            stack.extend((producers[v], False) for v in reversed(_reads(n)) if v in producers
                         and producers[v] not in done)
    return order
