"""Outline: each cluster becomes one msgx::Fused node whose attrs["body"] is an ordinary Graph."""
from __future__ import annotations

import heapq

from framework.ir import Graph, Node, Value
from framework.passes import captured_values, subgraphs_of

from .partition import Cluster

SMALL_CONST = 64  # elements: smaller constants are copied into the body, larger ones stay node inputs


def _uses(graph: Graph) -> dict[Value, list[Node]]:
    """Users of each value, counting subgraph captures (an If body reading a value uses it too)."""
    users: dict[Value, list[Node]] = {}
    for n in graph.nodes:
        used = [v for v in n.inputs if v is not None]
        for sub in subgraphs_of(n):
            used += list(captured_values(sub))
        for v in dict.fromkeys(used):
            users.setdefault(v, []).append(n)
    return users


def fuse_cluster(cluster: Cluster, graph: Graph, users, name: str) -> Node | None:
    """The Fused node for one cluster (None when nothing it computes is used outside)."""
    members = set(cluster.nodes)
    produced = {v for n in cluster.nodes for v in n.outputs}
    outer_outputs = set(graph.outputs)
    ext = list(dict.fromkeys(v for n in cluster.nodes for v in n.inputs
                             if v is not None and v not in produced))
    outs = [v for n in cluster.nodes for v in n.outputs
            if v in outer_outputs or any(u not in members for u in users.get(v, ()))]
    if not outs:
        return None
    fresh: dict[Value, Value] = {}
    body_inputs, body_consts, node_inputs = [], {}, []
    for v in ext:
        fresh[v] = Value(v.type, v.name)
        arr = graph.constants.get(v)
        if arr is not None and arr.size <= SMALL_CONST:
            body_consts[fresh[v]] = arr
        else:
            body_inputs.append(fresh[v])
            node_inputs.append(v)
    body_nodes = []
    for n in cluster.nodes:
        for v in n.outputs:
            fresh[v] = Value(v.type, v.name)
        body_nodes.append(Node(n.op, tuple(None if v is None else fresh[v] for v in n.inputs),
                               tuple(fresh[v] for v in n.outputs), n.attrs, n.domain, n.opset, n.name))
    body = Graph(tuple(body_inputs), tuple(fresh[v] for v in outs), tuple(body_nodes), body_consts, name)
    attrs = {"body": body, "kind": cluster.kind}
    return Node("Fused", tuple(node_inputs), tuple(outs), attrs, "msgx", 1, name)


def outline(graph: Graph, clusters: list[Cluster], prefix: str = "fused") -> Graph:
    """Replace every cluster by its Fused node, placed where the cluster's last member was."""
    users = _uses(graph)
    at_last: dict[Node, Node] = {}
    dropped: set[Node] = set()
    for i, c in enumerate(clusters):
        fused = fuse_cluster(c, graph, users, f"{prefix}_{i}")
        if fused is None:
            continue
        at_last[c.nodes[-1]] = fused
        dropped.update(c.nodes)
    nodes = [at_last.get(n, n) for n in graph.nodes if n not in dropped or n in at_last]
    return graph.replace(nodes=tuple(_stable_toposort(nodes, graph)))


def _stable_toposort(nodes: list[Node], graph: Graph) -> list[Node]:
    """Keep the given order where it is already topological; otherwise move a node only as far as its inputs
    force it (an outside user of a cluster output may have stood before the cluster's last member)."""
    producer = {v: i for i, n in enumerate(nodes) for v in n.outputs}
    deps: list[set[int]] = []
    for n in nodes:
        used = [v for v in n.inputs if v is not None]
        for sub in subgraphs_of(n):
            used += list(captured_values(sub))
        deps.append({producer[v] for v in used if v in producer})
    if all(all(d < i for d in ds) for i, ds in enumerate(deps)):
        return nodes
    waiting = [len(ds) for ds in deps]
    dependents: list[list[int]] = [[] for _ in nodes]
    for i, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for j in dependents[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        raise RuntimeError(f"graph {graph.name!r}: outlining created a cycle (the cycle check failed)")
    return order
