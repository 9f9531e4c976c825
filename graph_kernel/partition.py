"""Pattern-based clustering (MindSpore's graph-kernel patterns) with a cycle check and a split step.

Every fusable node starts as its own cluster; merges follow the patterns (matmul/conv epilogue, elementwise
and broadcast chains in depth, elementwise into reduce, reduce into elementwise as a two-stage "sequence",
reshape absorption, slice/transpose into elementwise, width merges of consumers of one value) and are kept
only when the merged cluster is valid (`_Partitioner.valid`: sizes proved equal by the symbol engine) and
outlining it would create no cycle. Clusters of one node, or of data movement only, are not outlined.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from framework import ops
from framework.ir import Graph, Node, TensorType, Value
from framework.passes import captured_values, subgraphs_of

from .symbols import SymbolEngine

F = ops.Fusion
RESHAPES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
VIEWS = frozenset({"Slice", "Transpose"})  # strided loads: fused only where they read from outside
NOT_REDUCES = frozenset({"ArgMax", "ArgMin", "GlobalLpPool"})  # index results / composites
HOST_OPS = frozenset({"Shape", "Size"})


@dataclass(frozen=True)
class PartitionOptions:
    """Bounds and op selection (MindSpore's graph_kernel_flags map onto these)."""

    max_ops: int = 100  # DVM's lazy-fusion threshold
    max_live: int = 32  # buffers live at once inside one kernel (inputs, intermediates, outputs)
    reduce_limit: int = 1 << 26  # static element count above which elementwise ops stay out of a reduce
    enable_ops: frozenset = field(default_factory=frozenset)
    disable_ops: frozenset = field(default_factory=frozenset)


@dataclass(frozen=True, eq=False)
class Cluster:
    """Nodes in graph order and the kernel kind (elemwise, reduce, sequence, matmul_/conv_epilogue)."""

    nodes: tuple[Node, ...]
    kind: str


def _tensor_ok(v: Value | None) -> bool:
    t = None if v is None else v.type
    return isinstance(t, TensorType) and t.shape is not None and t.dtype is not None \
        and t.dtype.kind in "biuf"


def role(n: Node, opts: PartitionOptions = PartitionOptions()) -> str | None:
    """elem | reshape | view | reduce | anchor, or None when the node never fuses."""
    if n.op in opts.disable_ops or len(n.outputs) != 1 or any(True for _ in subgraphs_of(n)):
        return None
    opdef = ops.lookup(n.op, n.domain, n.opset)
    if opdef is None or not opdef.deterministic or opdef.fusion == F.OPAQUE:
        return None
    if not all(_tensor_ok(v) for v in n.outputs) or not all(_tensor_ok(v) for v in n.inputs if v is not None):
        return None
    kind = opdef.fusion
    if kind in (F.ELEMWISE, F.BROADCAST):
        return "elem"
    if kind == F.INJECTIVE:
        if n.op in RESHAPES:
            return "reshape"
        return "view" if n.op in VIEWS or n.op in opts.enable_ops else None
    if kind == F.REDUCE:
        primitive = n.op.startswith(("Reduce", "Global")) and n.op not in NOT_REDUCES
        return "reduce" if primitive else None
    return "anchor" if kind == F.OUT_FUSABLE else None


def host_values(graph: Graph) -> set[Value]:
    """Values computed from shapes alone (Shape -> Gather -> Range ...): folded at static shapes, so they stay
    host-side computations at symbolic shapes too and never join a kernel."""
    host: set[Value] = set()
    for n in graph.nodes:
        data = [v for v in n.inputs if v is not None and v not in graph.constants]
        if n.op in HOST_OPS or (data and all(v in host for v in data)):
            host.update(n.outputs)
    return host


class _Partitioner:
    def __init__(self, graph: Graph, engine: SymbolEngine, opts: PartitionOptions):
        self.g, self.eng, self.opts = graph, engine, opts
        self.pos = {n: i for i, n in enumerate(graph.nodes)}
        self.users: dict[Value, list[Node]] = {}
        for n in graph.nodes:
            used = [v for v in n.inputs if v is not None]
            for sub in subgraphs_of(n):
                used += sorted(captured_values(sub), key=lambda v: v.name)
            for v in dict.fromkeys(used):
                self.users.setdefault(v, []).append(n)
        self.outputs = set(graph.outputs)
        host = host_values(graph)
        self.role = {n: r for n in graph.nodes
                     if (r := role(n, opts)) is not None and not any(v in host for v in n.outputs)}
        self.producer = {v: n for n in graph.nodes if n in self.role for v in n.outputs}
        self.rep: dict[Node, Node] = {n: n for n in graph.nodes}
        self.members: dict[Node, list[Node]] = {n: [n] for n in graph.nodes}
        self._size: dict[Value, object] = {}

    # ---------------------------------------------------------------- sizes and validity

    def size(self, v: Value):
        if v not in self._size:
            self._size[v] = self.eng.numel(v.type.shape)
        return self._size[v]

    def valid(self, nodes: list[Node]) -> bool:
        """Can these nodes (in graph order) form one kernel? Sizes must be proved equal, never guessed."""
        if len(nodes) > self.opts.max_ops:
            return False
        inside = {v for n in nodes for v in n.outputs}
        anchors = [n for n in nodes if self.role[n] == "anchor"]
        reduces = [n for n in nodes if self.role[n] == "reduce"]
        if len(anchors) > 1:
            return False
        for n in nodes:
            r = self.role[n]
            if (r == "anchor" or r == "view") and any(v in inside for v in n.inputs):
                return False  # no matmul prologue; views load from memory outside the kernel
        small = None
        if reduces:
            big, small = self.size(reduces[0].inputs[0]), self.size(reduces[0].outputs[0])
            shape0 = reduces[0].outputs[0].type.shape
            for r in reduces[1:]:
                if not (self.eng.same_shape(r.outputs[0].type.shape, shape0)
                        and self.eng.equal(self.size(r.inputs[0]), big)):
                    return False  # reduces in one kernel share one output shape
            if len(nodes) > len(reduces) and big.is_Integer and int(big) > self.opts.reduce_limit:
                return False  # elementwise into reduce only up to a size bound
            if anchors and (anchors[0].op not in ("MatMul", "Gemm")
                            or not self.eng.equal(self.size(anchors[0].outputs[0]), big)):
                return False  # a matmul's epilogue may reduce its rows (attention scores -> softmax)
        elif anchors:
            big = self.size(anchors[0].outputs[0])
        else:
            big = self.size(nodes[-1].outputs[0])
        node_set = set(nodes)
        cls: dict[Node, str] = {}
        for n in reversed(nodes):
            r, out = self.role[n], n.outputs[0]
            if r in ("anchor", "reduce"):
                cls[n] = "D" if r == "anchor" else "R"
                continue
            sz = self.size(out)
            if self.eng.equal(sz, big):
                cls[n] = "D"
            elif small is not None and self.eng.equal(sz, small):
                cls[n] = "R"
            elif self._small_side(n, node_set, cls):
                cls[n] = "S"
            else:
                return False
        return True

    def _small_side(self, n: Node, node_set, cls) -> bool:
        """Broadcast backward: a smaller value all of whose users are in the kernel and broadcast it."""
        out = n.outputs[0]
        users = self.users.get(out, [])
        if out in self.outputs or not users:
            return False
        return all(u in node_set and u in cls and self.role[u] == "elem"
                   and self.eng.broadcasts_to(out.type.shape, u.outputs[0].type.shape) for u in users)

    # ---------------------------------------------------------------- union-find and the cycle check

    def find(self, n: Node) -> Node:
        while self.rep[n] is not n:
            self.rep[n] = self.rep[self.rep[n]]
            n = self.rep[n]
        return n

    def successors(self, c: Node) -> set[Node]:
        return {self.find(u) for n in self.members[c] for v in n.outputs for u in self.users.get(v, ())} - {c}

    def _path(self, a: Node, b: Node) -> bool:
        """Is there a path a -> X -> ... -> b through at least one other cluster X?"""
        last = max(self.pos[n] for n in self.members[b])
        stack = [x for x in self.successors(a) if x is not b]
        seen = set(stack)
        while stack:
            x = stack.pop()
            for y in self.successors(x):
                if y is b:
                    return True
                if y not in seen and y is not a and min(self.pos[n] for n in self.members[y]) < last:
                    seen.add(y)
                    stack.append(y)
        return False

    def try_merge(self, x: Node, y: Node) -> bool:
        a, b = self.find(x), self.find(y)
        if a is b or a not in self.role or b not in self.role:
            return False
        nodes = sorted(self.members[a] + self.members[b], key=self.pos.__getitem__)
        if not self.valid(nodes) or self._path(a, b) or self._path(b, a):
            return False
        self.rep[b] = a
        self.members[a] = nodes
        del self.members[b]
        return True

    # ---------------------------------------------------------------- patterns

    def run(self) -> list[list[Node]]:
        fusable = [n for n in self.g.nodes if n in self.role]
        for n in fusable:  # matmul / conv epilogue first, so the pointwise tail lands on its anchor
            if self.role[n] == "anchor":
                self._grow_forward(n)
        for _ in range(4):  # depth: producer into consumer (elementwise chains, reduces both ways, reshapes)
            changed = False
            for n in fusable:
                for v in n.inputs:
                    p = self.producer.get(v)
                    if p is not None:
                        changed |= self.try_merge(p, n)
            for n in fusable:  # width: consumers of one value computing the same size
                for v in n.outputs:
                    us = [u for u in self.users.get(v, ()) if u in self.role]
                    for u in us[1:]:
                        changed |= self.try_merge(us[0], u)
            if not changed:
                break
        clusters = [sorted(m, key=self.pos.__getitem__) for c, m in self.members.items()
                    if c in self.role and len(m) > 1]
        return sorted(clusters, key=lambda m: self.pos[m[0]])

    def _grow_forward(self, anchor: Node) -> None:
        frontier = [anchor]
        while frontier:
            n = frontier.pop(0)
            for u in sorted(self.users.get(n.outputs[0], ()), key=self.pos.__getitem__):
                alone = self.find(u) is u and len(self.members[u]) == 1
                if self.role.get(u) in ("elem", "reshape") and alone and self.try_merge(anchor, u):
                    frontier.append(u)

    # ---------------------------------------------------------------- split

    def live_peak(self, nodes: list[Node]) -> int:
        """Most buffers live at once while the kernel runs `nodes` in order (inputs, temporaries, outputs)."""
        inside = set(nodes)
        last: dict[Value, int] = {}
        for i, n in enumerate(nodes):
            for v in n.inputs:
                if v is not None:
                    last[v] = i
        for i, n in enumerate(nodes):
            for v in n.outputs:
                if v in self.outputs or any(u not in inside for u in self.users.get(v, ())):
                    last[v] = len(nodes)
        born: dict[Value, int] = {}  # an input is live from its first load, a temporary from its definition
        for i, n in enumerate(nodes):
            for v in (*n.inputs, *n.outputs):
                if v is not None:
                    born.setdefault(v, i)
        peak = 0
        for i in range(len(nodes)):
            peak = max(peak, sum(1 for v, e in last.items() if born[v] <= i <= e))
        return peak

    def split(self, nodes: list[Node]) -> list[list[Node]]:
        """Contiguous pieces in graph order (no piece can close a cycle) within the op and buffer bounds."""
        if len(nodes) <= self.opts.max_ops and self.live_peak(nodes) <= self.opts.max_live:
            return [nodes]
        pieces, cur = [], []
        for n in nodes:
            if cur and (len(cur) >= self.opts.max_ops or self.live_peak(cur + [n]) > self.opts.max_live):
                pieces.append(cur)
                cur = []
            cur.append(n)
        return pieces + [cur]

    def kind(self, nodes: list[Node]) -> str:
        roles = [self.role[n] for n in nodes]
        if "anchor" in roles:
            a = nodes[roles.index("anchor")]
            return "conv_epilogue" if "Conv" in a.op else "matmul_epilogue"
        if "reduce" in roles:
            after: set[Value] = set()  # values computed from a reduce result inside the kernel
            for n in nodes:
                if self.role[n] == "reduce" or any(v in after for v in n.inputs):
                    if self.role[n] in ("elem", "reduce") and any(v in after for v in n.inputs):
                        return "sequence"  # a second stage computes on the first stage's result
                    after.update(n.outputs)
            return "reduce"
        return "elemwise"

    def computes(self, nodes: list[Node]) -> bool:
        return any(self.role[n] in ("elem", "reduce", "anchor") for n in nodes)


def partition(graph: Graph, engine: SymbolEngine | None = None,
              options: PartitionOptions | None = None) -> list[Cluster]:
    """Clusters of `graph` in graph order (by first node); each outlines into one Fused node."""
    engine = SymbolEngine.from_graph(graph) if engine is None else engine
    p = _Partitioner(graph, engine, options or PartitionOptions())
    out = []
    for nodes in p.run():
        for piece in p.split(nodes):
            if len(piece) > 1 and p.computes(piece):
                out.append(Cluster(tuple(piece), p.kind(piece)))
    return out


def unfused(graph: Graph, clusters: list[Cluster]) -> list[Node]:
    """Nodes no cluster took (what a report lists as left out)."""
    taken = {n for c in clusters for n in c.nodes}
    return [n for n in graph.nodes if n not in taken]

