"""Stacking (DVM's "Parallel" stacking): independent fused kernels that could run in one launch are merged
into one msgx::Fused node of kind "stack" whose body holds each member's body side by side.

Two kernels stack when neither depends on the other. The merged node sits at the first member's position,
so every later member must read only values defined before that position; this keeps the graph acyclic and
topologically ordered without moving anything else.
"""
from __future__ import annotations

from framework.ir import Graph, Node, substitute

MAX_MEMBERS = 8  # a launch of more independent kernels gains nothing and grows live buffers


def _is_fused(n: Node) -> bool:
    return n.op == "Fused" and n.domain == "msgx"


def stack_independent(graph: Graph) -> Graph:
    """Greedily stack each fused kernel with later independent ones whose inputs already exist."""
    defined_at: dict = {v: -1 for v in graph.inputs}
    defined_at.update({v: -1 for v in graph.constants})
    for i, n in enumerate(graph.nodes):
        for v in n.outputs:
            defined_at[v] = i
    taken: set[int] = set()
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(graph.nodes):
        if i in taken or not _is_fused(n):
            continue
        members = [i]
        for j in range(i + 1, len(graph.nodes)):
            if len(members) == MAX_MEMBERS:
                break
            m = graph.nodes[j]
            if j in taken or not _is_fused(m) or m.attrs.get("kind") == "stack":
                continue
            if all(v is None or defined_at.get(v, -1) < i for v in m.inputs):
                members.append(j)
        if len(members) > 1:
            taken.update(members)
            groups[i] = members
    if not groups:
        return graph
    nodes = []
    for i, n in enumerate(graph.nodes):
        if i in groups:
            nodes.append(_merge([graph.nodes[j] for j in groups[i]]))
        elif i not in taken:
            nodes.append(n)
    return graph.replace(nodes=tuple(nodes))


def _merge(members: list[Node]) -> Node:
    """One Fused node computing all members; an outer value read by several members is passed once."""
    outer_inputs, body_inputs, body_nodes, body_outputs, constants, kinds = [], [], [], [], {}, []
    first_body_input: dict = {}
    for m in members:
        body = m.attrs["body"]
        mapping = {}
        for outer, inner in zip(m.inputs, body.inputs):
            if outer in first_body_input:
                mapping[inner] = first_body_input[outer]
                continue
            first_body_input[outer] = inner
            outer_inputs.append(outer)
            body_inputs.append(inner)
        body = substitute(body, mapping) if mapping else body
        body_nodes.extend(body.nodes)
        body_outputs.extend(body.outputs)
        constants.update(body.constants)
        kinds.append(m.attrs.get("kind", "elemwise"))
    body = Graph(tuple(body_inputs), tuple(body_outputs), tuple(body_nodes), constants, "stack")
    outputs = tuple(v for m in members for v in m.outputs)
    name = "+".join(m.name for m in members if m.name)
    return Node("Fused", tuple(outer_inputs), outputs, {"body": body, "kind": "stack", "members": tuple(kinds)},
                "msgx", 1, name)
