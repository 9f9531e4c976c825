"""PyNative runtime ("lazy") fusion as DVM does it: pending ops accumulate into a live group that is
flushed as one msgx::Fused kernel on a host read, an unsupported or unrelated op, a size threshold or a
change of dominant shape (DESIGN.md section 2). A reduce does not close its group: the ops after it that
compute on the reduced rows or the dominant shape join it, as a sequence kernel (softmax, LayerNorm)."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from framework import ops
from framework.backends import NUMPY
from framework.executor import (PyNativeExecutor, call_in_scope, call_kernel, captures_of, run_subgraph,
                                shape_follows_inputs, straight_line, values_to_free)
from framework.ir import Graph, Node, TensorType, Value, substitute
from framework.ops import Fusion
from framework.passes import attr_key, subgraphs_of

from .partition import PartitionOptions

MAX_GROUP_OPS = 100  # DVM flushes a live kernel after about this many ops
KERNEL_CACHE_SIZE = 4096  # fused kernels kept per executor (bounded for long-lived sessions)
REPLAY_CACHE_SIZE = 16  # input signatures whose kernel choices are replayed
RESHAPE_LIKE = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})

# why a live group is flushed (FlushRecord.reason, stats["flush_reasons"]): a host read (graph outputs, or a
# non-fusable op reading a pending value); an unsupported op reading nothing pending; an op unrelated to the
# group; the size threshold (ops, or elementwise work feeding a reduce); another dominant shape; a matmul
# (starts its own group); a reshape after a reduce (the encoder's sequence kernels keep one layout)
REASONS = ("host_read", "unsupported", "unrelated", "size", "shape", "matmul", "pattern")
REDUCE_LIMIT = PartitionOptions.reduce_limit  # as in graph mode: elementwise work into a reduce, bounded


@dataclass(frozen=True, slots=True)
class FlushRecord:
    """One flushed group: its ops in order, why it closed, its pattern kind, whether its kernel was cached."""

    ops: tuple[str, ...]
    reason: str
    kind: str
    cached: bool


class _Plan:
    """What the executor precomputes per node: its lazy-fusion role and registry data."""

    __slots__ = ("role", "opdef", "attrs", "captures")

    def __init__(self, role, opdef, attrs, captures):
        self.role, self.opdef, self.attrs, self.captures = role, opdef, attrs, captures


def _role(n: Node, opdef) -> str:
    """'elemwise' | 'reduce' | 'matmul' | 'reshape' | 'unsupported'."""
    if opdef is None or not opdef.deterministic or any(True for _ in subgraphs_of(n)):
        return "unsupported"  # unknown, random (its draw order must not change) or control flow
    if opdef.fusion <= Fusion.BROADCAST:
        return "elemwise"
    if opdef.fusion == Fusion.REDUCE:
        return "reduce"
    if opdef.fusion == Fusion.OUT_FUSABLE and n.op in ("MatMul", "Gemm") and not n.domain:
        return "matmul"
    if opdef.fusion == Fusion.INJECTIVE and n.op in RESHAPE_LIKE and not n.domain:
        return "reshape"
    return "unsupported"


class _Live:
    """One run's state: the environment, the live group (node indices), its values' concrete types, its
    pattern kind and dominant shape, the flushes so far and the kernels chosen (actions, kept for replay when
    not None). Per run, so runs may overlap across threads."""

    __slots__ = ("env", "pending", "types", "kind", "dominant", "reduced", "records", "actions")

    def __init__(self, env: dict, actions: list | None):
        self.env, self.pending, self.types, self.kind, self.dominant = env, [], {}, "", ()
        self.reduced = None  # the output shape of the group's reduces (one per group), None before any
        self.records: list[FlushRecord] = []
        self.actions = actions

    def shape_of(self, v: Value) -> tuple:
        t = self.types.get(v)
        return t.shape if t is not None else np.shape(self.env[v])


class _Site:
    """What straight_line needs of a step: its node (named in errors)."""

    __slots__ = ("node",)

    def __init__(self, node: Node):
        self.node = node


def _numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


class LazyFusionExecutor(PyNativeExecutor):
    """PyNative execution with runtime fusion: the same interface as PyNativeExecutor (run(inputs) -> list),
    identical results; fusable ops wait in a live group that runs as one cached msgx::Fused kernel."""

    def __init__(self, graph: Graph, backend=NUMPY, max_ops: int = MAX_GROUP_OPS, fused_backends=(NUMPY,)):
        graph = consumers_first(graph)
        super().__init__(graph, backend)
        self.fused_backends = tuple(fused_backends) + (NUMPY,)  # the first that supports a group compiles it
        self.max_ops = max_ops
        self.fused_cache: dict = {}
        self.group_backends: dict[Node, str] = {}  # fused group node -> the backend that compiled it
        self.flush_reasons: Counter = Counter()
        self.groups = self.fused_ops = self.single_ops = self.kernel_builds = self.kernel_hits = 0
        self.records: list[FlushRecord] = []  # flushes of the most recent run
        # input signature -> the kernels a run chose (replayed: deciding again per op costs more than the ops)
        self._replays: dict = {}
        # a group exports exactly the values read after it (by later nodes, subgraphs or the host)
        self._last_read: dict[Value, int] = {}
        self._plans: list[_Plan] = []
        for i, n in enumerate(graph.nodes):
            opdef = ops.lookup(n.op, n.domain, n.opset)
            attrs = {**opdef.attrs, **n.attrs} if opdef is not None else {}
            plan = _Plan(_role(n, opdef), opdef, attrs, captures_of(n))
            self._plans.append(plan)
            for v in n.inputs + plan.captures:
                if v is not None:
                    self._last_read[v] = i
        for v in graph.outputs:
            self._last_read[v] = len(graph.nodes)

    @property
    def stats(self) -> dict:
        """Cumulative over all runs: fused kernels launched (groups of 2+ ops), ops inside them, groups of one
        op run as plain kernels, flush reasons (every closed group), fused-kernel builds and cache hits."""
        return {"groups": self.groups, "fused_ops": self.fused_ops, "single_ops": self.single_ops,
                "flush_reasons": Counter(self.flush_reasons), "kernel_builds": self.kernel_builds,
                "kernel_cache_hits": self.kernel_hits}

    # ------------------------------------------------------------ run loop

    def run(self, inputs: Sequence, outer_env: dict | None = None) -> list:
        env: dict = dict(outer_env or {})
        env.update(self.graph.constants)
        env.update(zip(self.graph.inputs, inputs))
        key = None
        if not outer_env and all(isinstance(a, np.ndarray) for a in inputs):
            key = tuple((a.shape, a.dtype) for a in inputs)
            replay = self._replays.get(key)
            if replay is not None:
                if replay[3] is not None and self.profile is None:
                    return self._run_line(replay, inputs)
                return self._replay(env, *replay[:3])
        live = _Live(env, [] if key is not None else None)
        for i, n in enumerate(self.graph.nodes):
            self._step(live, i, n)
        self._flush(live, "host_read")  # the host reads the graph outputs
        self.records = live.records
        if key is not None:
            if len(self._replays) >= REPLAY_CACHE_SIZE:
                self._replays.pop(next(iter(self._replays)))
            reads = [list(a[1].inputs) + list(a[2].captures) if a[0] == "one" else a[2] for a in live.actions]
            free = values_to_free(self.graph, reads)
            self._replays[key] = (live.actions, live.records, free, self._line(live.actions, free, env))
        return [env[v] for v in self.graph.outputs]

    def _line(self, actions: list, free: list, env: dict):
        """The chosen kernels as generated straight-line code over slots, as the graph executor runs them
        (replaying through the value dict costs as much as the small kernels themselves): (run, slot list
        template, input slots, output slots), or None where an action needs a capture scope. Single ops
        whose results follow from the input shapes alone (Shape and what is computed from it and constants:
        reshape targets, positions, masks) are not replayed: their values from this run, `env`, are the same
        for every run of the signature and go into the template."""
        if any(a[0] == "one" and a[2].captures for a in actions):
            return None
        known = set(self.graph.constants)
        skip = set()
        symbols = {d for v in self.graph.inputs if isinstance(v.type, TensorType) and v.type.shape is not None
                   for d in v.type.shape if not isinstance(d, int)}
        outputs = set(self.graph.outputs)
        for k, action in enumerate(actions):
            if action[0] != "one":
                continue
            n, plan = action[1], action[2]
            by_shape = n.op in ("Shape", "Size") and not n.domain and shape_follows_inputs(n.inputs[0], symbols)
            derived = any(v is not None for v in n.inputs) and all(v is None or v in known for v in n.inputs)
            if (by_shape or derived) and plan.opdef.deterministic and not outputs.intersection(n.outputs):
                known.update(n.outputs)
                skip.add(k)
        slot: dict[Value, int] = {}

        def index(v):
            return -1 if v is None else slot.setdefault(v, len(slot))
        ins = [index(v) for v in self.graph.inputs]
        flat = []
        for k, (action, dead) in enumerate(zip(actions, free)):
            if k in skip:
                continue
            if action[0] == "one":
                _, n, _, kernel = action
                node, args, outs = n, n.inputs, n.outputs
            else:
                _, (kernel, node), args, outs = action
            flat.append((_Site(node), kernel, [index(v) for v in args], [index(v) for v in outs],
                         [index(v) for v in dead if v not in known]))
        out_slots = [index(v) for v in self.graph.outputs]
        template: list = [None] * (len(slot) + 1)
        for v, s in slot.items():
            if v in known:
                template[s] = self.graph.constants[v] if v in self.graph.constants else env[v]
        return straight_line(flat, out_slots), template, ins, out_slots

    def _run_line(self, replay, inputs: Sequence) -> list:
        actions, records, _, (run, template, ins, _) = replay
        env = list(template)
        for s, a in zip(ins, inputs):
            env[s] = a
        outs = run(env, None)
        self._count(records)
        return outs

    def _replay(self, env: dict, actions: list, records: list, free: list) -> list:
        """Run the kernels a previous run with the same input signature chose, without re-deciding.

        Always correct: a fused body is the same ops in order, and kernels handle any shape they get;
        the grouping decisions only affect speed."""
        for action, dead in zip(actions, free):
            if action[0] == "one":
                self._run_one(env, *action[1:])
            else:
                _, (kernel, node), ext, outs = action
                args = [env[v] for v in ext]
                env.update(zip(outs, call_kernel(kernel, node, args) if self.profile is None
                               else self._profiled_group(kernel, node, args)))
            for v in dead:
                env.pop(v, None)
        self._count(records)
        return [env[v] for v in self.graph.outputs]

    def _count(self, records: list) -> None:
        """Stats of a replayed run: its groups hit the kernel cache."""
        for r in records:
            self.flush_reasons[r.reason] += 1
            if len(r.ops) > 1:
                self.groups += 1
                self.fused_ops += len(r.ops)
                self.kernel_hits += 1
            else:
                self.single_ops += 1
        self.records = [FlushRecord(r.ops, r.reason, r.kind, len(r.ops) > 1) for r in records]

    def _step(self, live: "_Live", i: int, n: Node) -> None:
        plan = self._plans[i]
        reads_pending = any(v in live.types for v in n.inputs if v is not None) or \
            any(v in live.types for v in plan.captures)
        host_reason = "host_read" if reads_pending else "unsupported"
        if plan.role == "unsupported":
            self._flush(live, host_reason)
            return self._run_one(live.env, n, plan, actions=live.actions)
        types = self._infer(live, n, plan)
        if types is None and live.pending:  # e.g. a Reshape target still pending: materialise, retry
            self._flush(live, host_reason)
            types = self._infer(live, n, plan)
        if types is None:
            return self._run_one(live.env, n, plan, actions=live.actions)
        if live.pending:
            reason = self._refuse(live, n, plan.role, types, reads_pending)
            if reason:
                self._flush(live, reason)
        if not live.pending:
            if plan.role == "reshape":  # nothing to absorb it into: a view, run now
                return self._run_one(live.env, n, plan, actions=live.actions)
            live.kind = "matmul_epilogue" if plan.role == "matmul" else "elemwise"
            live.dominant = live.shape_of(n.inputs[0]) if plan.role == "reduce" else types[0].shape
            live.reduced = None
        live.pending.append(i)
        live.types.update(zip(n.outputs, types))
        if plan.role == "reduce":  # the group goes on: what follows may use the reduced rows (a sequence)
            live.reduced = types[0].shape
            if live.kind != "matmul_epilogue":
                live.kind = "reduce"
        if len(live.pending) >= self.max_ops:
            self._flush(live, "size")

    @staticmethod
    def _refuse(live: "_Live", n: Node, role: str, types, reads_pending: bool) -> str:
        """Why node n may not join the live group ('' when it may)."""
        if not reads_pending:
            return "unrelated"
        if role == "matmul":
            return "matmul"  # a matmul only starts a group
        out = types[0].shape
        if role == "reduce":  # of the dominant shape, to the group's one reduced shape (softmax, LayerNorm)
            if live.shape_of(n.inputs[0]) != live.dominant or live.reduced not in (None, out):
                return "shape"
            return "size" if _numel(live.dominant) > REDUCE_LIMIT else ""
        if live.reduced is not None:
            if role == "reshape":
                return "pattern"
            return "" if out in (live.dominant, live.reduced) else "shape"
        if live.kind == "matmul_epilogue" or role == "reshape":
            return "" if _numel(out) == _numel(live.dominant) else "shape"
        return "" if out == live.dominant else "shape"

    @staticmethod
    def _infer(live: "_Live", n: Node, plan: _Plan):
        """Concrete output types of n from its inputs' runtime (or pending) types; None when unknown."""
        if plan.opdef.infer is None:
            return None
        types, consts = [], []
        for v in n.inputs:
            if v is None or v in live.types:
                types.append(None if v is None else live.types[v])
                consts.append(None)
                continue
            a = live.env.get(v)
            if not isinstance(a, np.ndarray):
                return None
            types.append(TensorType(a.dtype, a.shape))
            consts.append(a)
        ctx = ops.Ctx(plan.attrs, len(n.outputs), n.opset, n.name, tuple(consts))
        try:
            out = plan.opdef.infer(ctx, *types)
        except Exception:  # a bad shape: the kernel itself raises the typed error, unfused
            return None
        out = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(out) != len(n.outputs) or not all(
                isinstance(t, TensorType) and t.dtype is not None and t.shape is not None
                and all(isinstance(d, int) for d in t.shape) for t in out):
            return None
        return out

    # ------------------------------------------------------------ kernels

    def _run_one(self, env: dict, n: Node, plan: _Plan, kernel=None, actions: list | None = None) -> None:
        args = [None if v is None else env[v] for v in n.inputs]
        if kernel is None:
            kernel = self.kernel_for(n, args)
        if actions is not None:
            actions.append(("one", n, plan, kernel))
        t0 = time.perf_counter() if self.profile else 0.0
        if plan.captures:
            outs = call_in_scope(kernel, n, args, {v: env.get(v) for v in plan.captures})
        else:
            outs = call_kernel(kernel, n, args)
        if self.profile:
            self.profile(n, self.backend.name, t0, time.perf_counter(), args, outs)
        env.update(zip(n.outputs, outs))

    def _profiled_group(self, kernel, node: Node, args: list) -> list:
        t0 = time.perf_counter()
        outs = call_kernel(kernel, node, args)
        self.profile(node, self.group_backends.get(node, "numpy"), t0, time.perf_counter(), args, outs)
        return outs

    def _flush(self, live: "_Live", reason: str) -> None:
        """Run the live group: one op as a plain kernel, several as one cached msgx::Fused kernel."""
        if not live.pending:
            return
        idx, kind, env = live.pending, live.kind, live.env
        live.pending, live.types = [], {}
        self.flush_reasons[reason] += 1
        nodes = [self.graph.nodes[i] for i in idx]
        if len(nodes) == 1:
            self.single_ops += 1
            live.records.append(FlushRecord((nodes[0].op,), reason, kind, False))
            return self._run_one(env, nodes[0], self._plans[idx[0]], actions=live.actions)
        ext, outs, key = self._signature(nodes, idx[-1], env, kind)
        entry = self.fused_cache.get(key)
        hit = entry is not None
        if not hit:
            if len(self.fused_cache) >= KERNEL_CACHE_SIZE:
                self.fused_cache.clear()
                self.group_backends.clear()
            node = fused_node(nodes, ext, outs, kind)
            backend = next(b for b in self.fused_backends if b.supports(node))
            entry = self.fused_cache[key] = (backend.compile(node, run_subgraph), node)
            self.group_backends[node] = backend.name
            self.kernel_builds += 1
        else:
            self.kernel_hits += 1
        self.groups += 1
        self.fused_ops += len(nodes)
        live.records.append(FlushRecord(tuple(n.op for n in nodes), reason, kind, hit))
        if live.actions is not None:
            live.actions.append(("group", entry, ext, outs))
        args = [env[v] for v in ext]
        env.update(zip(outs, call_kernel(entry[0], entry[1], args) if self.profile is None
                       else self._profiled_group(entry[0], entry[1], args)))

    def _signature(self, nodes: list[Node], last: int, env: dict, kind: str):
        """External inputs, exported outputs and the structural cache key of a group."""
        where: dict[Value, tuple] = {}
        ext: list[Value] = []
        parts: list = [kind]
        for j, n in enumerate(nodes):
            refs = []
            for v in n.inputs:
                if v is None:
                    refs.append(None)
                    continue
                r = where.get(v)
                if r is None:
                    r = where[v] = ("x", len(ext))
                    ext.append(v)
                refs.append(r)
            for k, v in enumerate(n.outputs):
                where[v] = ("n", j, k)
            parts.append((n.op, n.domain, n.opset, attr_key(tuple(sorted(n.attrs.items()))),
                          tuple(refs), len(n.outputs)))
        outs = [v for n in nodes for v in n.outputs if self._last_read.get(v, -1) > last]
        if not outs:  # dead group: still run it (its errors must surface as in PyNative)
            outs = [nodes[-1].outputs[0]]
        parts.append(tuple(where[v] for v in outs))
        parts.append(tuple((getattr(env[v], "dtype", None), np.ndim(env[v])) for v in ext))
        return ext, outs, tuple(parts)


def consumers_first(graph: Graph) -> Graph:
    """The graph with each pure node moved up to just after the producers it waits for, when they are all
    placed: q = MatMul(x, Wq); k = MatMul(x, Wk); q + bq; k + bk becomes q, q + bq, k, k + bk, so a live group
    meets its epilogue before an unrelated op flushes it. Only deterministic nodes without subgraphs move,
    and only earlier: every other node keeps its place relative to the others, so results are the same."""
    def movable(n: Node) -> bool:
        opdef = ops.lookup(n.op, n.domain, n.opset)
        return opdef is not None and opdef.deterministic and not any(True for _ in subgraphs_of(n))

    users: dict[Value, list[Node]] = {}
    for n in graph.nodes:
        for v in n.inputs:
            if v is not None:
                users.setdefault(v, []).append(n)
    ready = set(graph.inputs) | set(graph.constants)
    placed: set[Node] = set()
    order: list[Node] = []
    for first in graph.nodes:
        if first in placed:
            continue
        stack = [first]
        while stack:
            n = stack.pop()
            if n in placed:
                continue
            placed.add(n)
            order.append(n)
            ready.update(n.outputs)
            waiting = [u for v in n.outputs for u in users.get(v, ()) if u not in placed and movable(u)
                       and all(x is None or x in ready for x in u.inputs)]
            stack.extend(reversed(waiting))  # in graph order: the first consumer runs next
    if all(a is b for a, b in zip(order, graph.nodes)):
        return graph
    return graph.replace(nodes=tuple(order))


def fused_node(nodes: Sequence[Node], ext: Sequence[Value], outs: Sequence[Value], kind: str) -> Node:
    """A msgx::Fused node over `nodes`: its body has fresh values, reads only its inputs (ext)."""
    fresh = {v: Value(v.type, v.name) for v in ext}
    fresh.update({v: Value(v.type, v.name) for n in nodes for v in n.outputs})
    body = substitute(Graph(tuple(ext), tuple(outs), tuple(nodes), {}, f"lazy_{kind}"), fresh)
    return Node("Fused", tuple(ext), tuple(outs), {"body": body, "kind": kind}, domain="msgx", opset=1,
                name=f"lazy_{kind}_{len(nodes)}")
