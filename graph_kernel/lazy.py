"""PyNative runtime ("lazy") fusion as DVM does it: pending ops accumulate into a live group that is
flushed as one msgx::Fused kernel on a host read, an unsupported or unrelated op, a size threshold, a
change of dominant shape, or after a reduce (DESIGN.md section 2)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from framework import ops
from framework.backends import NUMPY
from framework.executor import PyNativeExecutor, _call, _call_in_scope, _captures_of, run_subgraph
from framework.ir import Graph, Node, TensorType, Value, substitute
from framework.ops import Fusion
from framework.passes import _attr_key, _subgraphs

MAX_GROUP_OPS = 100  # DVM flushes a live kernel after about this many ops
KERNEL_CACHE_SIZE = 4096  # fused kernels kept per executor (bounded for long-lived sessions)
RESHAPE_LIKE = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})

# the reasons a live group is flushed (FlushRecord.reason, stats["flush_reasons"])
REASONS = ("host_read", "unsupported", "unrelated", "size", "shape", "reduce", "matmul", "pattern")


@dataclass(frozen=True, slots=True)
class FlushRecord:
    """One flushed group: its ops in order, why it closed, its pattern kind and whether its kernel was cached."""

    ops: tuple[str, ...]
    reason: str
    kind: str
    cached: bool


class _Plan:
    """What the executor precomputes per node: its lazy-fusion role and registry data."""

    __slots__ = ("role", "opdef", "attrs", "last_read", "captures")

    def __init__(self, role, opdef, attrs, last_read, captures):
        self.role, self.opdef, self.attrs, self.last_read, self.captures = role, opdef, attrs, last_read, captures


def _role(n: Node, opdef) -> str:
    """'elemwise' | 'reduce' | 'matmul' | 'reshape' | 'unsupported'."""
    if opdef is None or not opdef.deterministic or any(True for _ in _subgraphs(n)):
        return "unsupported"  # unknown, random (never replayed inside a kernel) or control flow
    if opdef.fusion <= Fusion.BROADCAST:
        return "elemwise"
    if opdef.fusion == Fusion.REDUCE:
        return "reduce"
    if opdef.fusion == Fusion.OUT_FUSABLE and n.op in ("MatMul", "Gemm") and not n.domain:
        return "matmul"
    if opdef.fusion == Fusion.INJECTIVE and n.op in RESHAPE_LIKE and not n.domain:
        return "reshape"
    return "unsupported"


def _numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


class LazyFusionExecutor(PyNativeExecutor):
    """PyNative execution with runtime fusion: the same interface as PyNativeExecutor (run(inputs) -> list),
    identical results; fusable ops wait in a live group that runs as one cached msgx::Fused kernel."""

    def __init__(self, graph: Graph, backend=NUMPY, max_ops: int = MAX_GROUP_OPS):
        super().__init__(graph, backend)
        self.max_ops = max_ops
        self.fused_cache: dict = {}
        self.flush_reasons: Counter = Counter()
        self.groups = self.fused_ops = self.single_ops = self.kernel_builds = self.kernel_hits = 0
        self.records: list[FlushRecord] = []  # flushes of the most recent run
        last_read: dict[Value, int] = {}
        for i, n in enumerate(graph.nodes):
            for v in n.inputs + _captures_of(n):
                if v is not None:
                    last_read[v] = i
        for v in graph.outputs:
            last_read[v] = len(graph.nodes)  # read by the host after the last node
        self._plans = []
        for n in graph.nodes:
            opdef = ops.lookup(n.op, n.domain, n.opset)
            attrs = {**opdef.attrs, **n.attrs} if opdef is not None else {}
            self._plans.append(_Plan(_role(n, opdef), opdef, attrs,
                                     max((last_read.get(v, -1) for v in n.outputs), default=-1),
                                     _captures_of(n)))
        self._last_read = last_read

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
        self.records = []
        self._pending: list[int] = []  # node indices of the live group, in order
        self._types: dict[Value, TensorType] = {}  # concrete types of values the live group will produce
        self._kind, self._dominant = "", ()
        for i, n in enumerate(self.graph.nodes):
            self._step(i, n, env)
        self._flush(env, "host_read")  # the host reads the graph outputs
        return [env[v] for v in self.graph.outputs]

    def _step(self, i: int, n: Node, env: dict) -> None:
        plan = self._plans[i]
        reads_pending = any(v in self._types for v in n.inputs if v is not None) or \
            any(v in self._types for v in plan.captures)
        host_reason = "host_read" if reads_pending else "unsupported"
        if plan.role == "unsupported":
            self._flush(env, host_reason)
            return self._run_one(n, plan, env)
        types = self._infer(n, plan, env)
        if types is None and self._pending:  # e.g. a Reshape target still pending: materialise, retry
            self._flush(env, host_reason)
            types = self._infer(n, plan, env)
        if types is None:
            return self._run_one(n, plan, env)
        if self._pending:
            reason = self._refuse(n, plan.role, types, reads_pending, env)
            if reason:
                self._flush(env, reason)
        if not self._pending:
            if plan.role == "reshape":  # nothing to absorb it into: a view, run now
                return self._run_one(n, plan, env)
            self._kind = "matmul_epilogue" if plan.role == "matmul" else "elemwise"
            self._dominant = types[0].shape if plan.role != "reduce" else self._shape_of(n.inputs[0], env)
        self._pending.append(i)
        self._types.update(zip(n.outputs, types))
        if plan.role == "reduce":
            self._kind = "reduce"
            self._flush(env, "reduce")
        elif len(self._pending) >= self.max_ops:
            self._flush(env, "size")

    def _refuse(self, n: Node, role: str, types, reads_pending: bool, env: dict) -> str:
        """Why node n may not join the live group ('' when it may)."""
        if not reads_pending:
            return "unrelated"
        if role == "matmul":
            return "matmul"  # a matmul only starts a group
        out = types[0].shape
        if self._kind == "matmul_epilogue":
            if role == "reduce":
                return "pattern"  # a Mix kernel is one matmul plus a pointwise epilogue
            return "" if _numel(out) == _numel(self._dominant) else "shape"
        if role == "reduce":
            return "" if self._shape_of(n.inputs[0], env) == self._dominant else "shape"
        if role == "reshape":
            return "" if _numel(out) == _numel(self._dominant) else "shape"
        return "" if out == self._dominant else "shape"

    def _shape_of(self, v: Value, env: dict):
        t = self._types.get(v)
        return t.shape if t is not None else np.shape(env[v])

    def _infer(self, n: Node, plan: _Plan, env: dict):
        """Concrete output types of n from its inputs' runtime (or pending) types; None when unknown."""
        types, consts = [], []
        for v in n.inputs:
            if v is None:
                types.append(None)
                consts.append(None)
            elif v in self._types:
                types.append(self._types[v])
                consts.append(None)
            else:
                a = env.get(v)
                if not isinstance(a, np.ndarray):
                    return None
                types.append(TensorType(a.dtype, a.shape))
                consts.append(a)
        if plan.opdef.infer is None:
            return None
        ctx = ops.Ctx(plan.attrs, len(n.outputs), n.opset, n.name, tuple(consts))
        try:
            out = plan.opdef.infer(ctx, *types)
        except Exception:  # a bad shape: let the kernel itself raise its typed error, unfused
            return None
        out = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(out) != len(n.outputs) or not all(
                isinstance(t, TensorType) and t.dtype is not None and t.shape is not None
                and all(isinstance(d, int) for d in t.shape) for t in out):
            return None
        return out

    # ------------------------------------------------------------ kernels

    def _run_one(self, n: Node, plan: _Plan, env: dict) -> None:
        args = [None if v is None else env[v] for v in n.inputs]
        kernel = self.kernel_for(n, args)
        if plan.captures:
            outs = _call_in_scope(kernel, n, args, {v: env.get(v) for v in plan.captures})
        else:
            outs = _call(kernel, n, args)
        env.update(zip(n.outputs, outs))

    def _flush(self, env: dict, reason: str) -> None:
        """Run the live group: one op as a plain kernel, several as one cached msgx::Fused kernel."""
        if not self._pending:
            return
        idx, kind = self._pending, self._kind
        self._pending, self._types = [], {}
        self.flush_reasons[reason] += 1
        nodes = [self.graph.nodes[i] for i in idx]
        if len(nodes) == 1:
            self.single_ops += 1
            self.records.append(FlushRecord((nodes[0].op,), reason, kind, False))
            return self._run_one(nodes[0], self._plans[idx[0]], env)
        ext, outs, key = self._signature(nodes, idx[-1], env, kind)
        entry = self.fused_cache.get(key)
        hit = entry is not None
        if not hit:
            if len(self.fused_cache) >= KERNEL_CACHE_SIZE:
                self.fused_cache.clear()
            node = fused_node(nodes, ext, outs, kind)
            entry = self.fused_cache[key] = (self.backend.compile(node, run_subgraph), node)
            self.kernel_builds += 1
        else:
            self.kernel_hits += 1
        self.groups += 1
        self.fused_ops += len(nodes)
        self.records.append(FlushRecord(tuple(n.op for n in nodes), reason, kind, hit))
        results = _call(entry[0], entry[1], [env[v] for v in ext])
        env.update(zip(outs, results))

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
            parts.append((n.op, n.domain, n.opset, _attr_key(tuple(sorted(n.attrs.items()))),
                          tuple(refs), len(n.outputs)))
        outs = [v for n in nodes for v in n.outputs if self._last_read.get(v, -1) > last]
        if not outs:  # dead group: still run it (its errors must surface as in PyNative)
            outs = [nodes[-1].outputs[0]]
        parts.append(tuple(where[v] for v in outs))
        parts.append(tuple((getattr(env[v], "dtype", None), np.ndim(env[v])) for v in ext))
        return ext, outs, tuple(parts)


def fused_node(nodes: Sequence[Node], ext: Sequence[Value], outs: Sequence[Value], kind: str) -> Node:
    """A msgx::Fused node over `nodes`: its body has fresh values, reads only its inputs (ext)."""
    fresh = {v: Value(v.type, v.name) for v in ext}
    fresh.update({v: Value(v.type, v.name) for n in nodes for v in n.outputs})
    body = substitute(Graph(tuple(ext), tuple(outs), tuple(nodes), {}, f"lazy_{kind}"), fresh)
    return Node("Fused", tuple(ext), tuple(outs), {"body": body, "kind": kind}, domain="msgx", opset=1,
                name=f"lazy_{kind}_{len(nodes)}")
