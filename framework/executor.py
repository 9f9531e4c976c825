"""Executors. GraphExecutor compiles once into a flat kernel list over numbered slots and frees each
buffer after its last use; PyNativeExecutor dispatches op by op through the registry with a kernel cache."""
from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

import numpy as np

from . import ops
from .backends import NUMPY, as_outputs
from .errors import KernelError, MsgxError
from .ir import Graph, Node, TensorType, Value
from .passes import attr_key, captured_values, subgraphs_of
from .profiler import StepTimes, shape_dtype


def _typed(node: Node, e: Exception) -> MsgxError:
    """The error to raise for an exception escaping a kernel: ours pass through, others name the node."""
    if isinstance(e, MsgxError):
        return e
    if isinstance(e, (MemoryError, RecursionError)):
        return KernelError(f"node {node.describe()}: {type(e).__name__}")
    return KernelError(f"node {node.describe()} failed: {type(e).__name__}: {e}")


def call_kernel(kernel, node: Node, args):
    try:
        return kernel(*args)
    except Exception as e:
        raise _typed(node, e) from (None if isinstance(e, (MemoryError, RecursionError)) else e)


SHAPE_CACHE_SIZE = 16  # distinct input-shape signatures whose shape computations are remembered


def shape_follows_inputs(v: Value, input_symbols: set) -> bool:
    """True when v's shape is known as a function of the graph inputs' dims alone (not of their data)."""
    t = v.type
    if not isinstance(t, TensorType) or t.shape is None:
        return False
    return all(isinstance(d, int) or d.free_symbols <= input_symbols for d in t.shape)


class _Step:
    __slots__ = ("node", "kernel", "ins", "outs", "free", "backend", "captures")

    def __init__(self, node, kernel, ins, outs, free, backend, captures):
        self.node, self.kernel, self.ins, self.outs = node, kernel, ins, outs
        self.free, self.backend, self.captures = free, backend, captures


def captures_of(n: Node) -> tuple[Value, ...]:
    """Outer values read by a node's subgraphs, in a fixed order."""
    subs = list(subgraphs_of(n))
    return tuple(sorted(set().union(*(captured_values(g) for g in subs)), key=id)) if subs else ()


class GraphExecutor:
    """Runs a graph compiled once: each node bound to a kernel from the first backend that supports it."""

    def __init__(self, graph: Graph, backends: Sequence = (NUMPY,), outer: frozenset = frozenset(),
                 on_compile: Callable | None = None):
        self.graph = graph
        slot: dict[Value, int] = {}

        def index(v: Value) -> int:
            if v not in slot:
                slot[v] = len(slot)
            return slot[v]

        self.input_slots = [index(v) for v in graph.inputs]
        self.outer_slots = [(v, index(v)) for v in outer]
        const_slots = [(index(v), a) for v, a in graph.constants.items()]
        self.steps: list[_Step] = []
        last_use: dict[int, int] = {}
        for i, n in enumerate(graph.nodes):
            captures = captures_of(n)
            ins = [-1 if v is None else index(v) for v in n.inputs]
            cap = [(v, index(v)) for v in captures]
            for s in ins + [s for _, s in cap]:
                last_use[s] = i
            backend = next(b for b in backends if b.supports(n))
            t0 = time.perf_counter()
            kernel = backend.compile(n, run_subgraph if captures or any(True for _ in subgraphs_of(n)) else None)
            if on_compile:
                on_compile(n, backend.name, time.perf_counter() - t0)
            self.steps.append(_Step(n, kernel, ins, [index(v) for v in n.outputs], [], backend.name, cap))
        keep = {index(v) for v in graph.outputs} | {s for s, _ in const_slots} | set(self.input_slots)
        keep |= {s for _, s in self.outer_slots}
        for s, i in last_use.items():
            if s >= 0 and s not in keep:
                self.steps[i].free.append(s)
        # one extra slot, always None, stands for omitted optional inputs (index -1)
        self.template: list = [None] * (len(slot) + 1)
        for s, a in const_slots:
            self.template[s] = a
        self.output_slots = [index(v) for v in graph.outputs]
        self._plain = not any(st.captures for st in self.steps)
        self._flat = [(st, st.kernel, st.ins, st.outs, st.free) for st in self.steps]
        self._plan_shape_cache({s for s, _ in const_slots}, set(self.output_slots))

    def _plan_shape_cache(self, const_slots: set, output_slots: set) -> None:
        """Find steps whose results depend only on input *shapes* (Shape/Size and what is computed from them
        and constants: reshape targets, position ranges, masks). Per distinct input-shape signature they run
        once; later runs reuse their results and skip them."""
        known, shape_steps = set(const_slots), set()
        input_symbols = set()
        for v in self.graph.inputs:
            if isinstance(v.type, TensorType) and v.type.shape is not None:
                input_symbols |= {d for d in v.type.shape if not isinstance(d, int)}
        for i, st in enumerate(self.steps):
            n = st.node
            opdef = ops.lookup(n.op, n.domain, n.opset)
            by_shape = n.op in ("Shape", "Size") and not n.domain and shape_follows_inputs(n.inputs[0], input_symbols)
            derived = bool(st.ins) and all(s in known for s in st.ins if s >= 0)
            if (by_shape or derived) and not st.captures and opdef is not None and opdef.deterministic \
                    and not output_slots.intersection(st.outs):
                known.update(st.outs)
                shape_steps.add(i)
        needed = {s for i, st in enumerate(self.steps) if i not in shape_steps for s in st.ins
                  if s in known and s not in const_slots}
        self.shape_steps = shape_steps
        # Where every value's shape is a function of the input shapes, a run whose input shapes were seen
        # before sees the same shape at every kernel: kernels that can be specialised for their arguments'
        # shapes are, once per input-shape signature (shape_kernels). Data-dependent shapes rule it out.
        fixed = all(v is None or shape_follows_inputs(v, input_symbols)
                    for st in self.steps for v in list(st.node.inputs) + list(st.node.outputs))
        # (what a step's line calls, its kernel or `direct`, may offer specialize(*args) -> a replacement of
        # the same calling convention)
        self._specialize = frozenset(i for i, f in enumerate(self._flat)
                                     if fixed and i not in shape_steps and hasattr(_callable(f), "specialize"))
        # the fast path: the steps a repeated input-shape signature runs (all, for a static graph)
        self._flat_fast = [f for i, f in enumerate(self._flat) if i not in shape_steps] \
            if shape_steps or self._specialize else None
        self._fast_index = [i for i in range(len(self._flat)) if i not in shape_steps]
        self._shape_needed = needed
        self._shape_cache: dict = {}
        self._step_info: dict = {}  # shape key -> (step, ins, outs) of the fast steps, from a profiled run
        self._shape_kernels: dict = {}  # shape key -> the fast steps' kernels, specialised where they can be
        self._lines: dict = {}

    def forget_shapes(self) -> None:
        """Drop the shape cache: the next run of every input-shape signature recomputes its shape values."""
        self._shape_cache.clear()
        self._step_info.clear()
        self._shape_kernels.clear()

    def _line(self, fast: bool, timing: str) -> Callable:
        """The straight-line function over all steps or (fast) over those the shape cache does not skip, with
        the per-kernel timing `timing` ("", "records" or "times", see straight_line); generated on first use.
        The full line specialises the kernels that can be (see _plan_shape_cache)."""
        fn = self._lines.get((fast, timing))
        if fn is None:
            flat, keep, spec = (self._flat_fast, (), ()) if fast else \
                (self._flat, self._shape_needed, self._specialize)
            fn = self._lines[(fast, timing)] = straight_line(flat, self.output_slots, keep, timing, spec)
        return fn

    def _run_shape_cached(self, env: list, inputs: Sequence, profile: Callable | None, key) -> list:
        timing = "records" if profile is not None else ""
        if key is None:
            key = tuple([a.shape for a in inputs if isinstance(a, np.ndarray)])  # (a list: no generator frame)
            if len(key) != len(inputs):
                return self._line(False, timing)(env, {}, profile)
        cached = self._shape_cache.get(key)
        if cached is not None:
            for s, a in cached.items():
                env[s] = a
            kernels = self._shape_kernels[key]
            info = self._step_info.get(key) if profile is not None else None
            if info is None:
                return self._line(True, timing)(env, None, profile, kernels)
            # the shapes of a cache hit are those of the run that filled the cache: only times are taken
            times: list = []
            outs = self._line(True, "times")(env, None, times.append, kernels)
            profile(StepTimes(info, times))
            return outs
        record: dict = {}
        specialized: dict = {}
        if profile is None:
            outs = self._line(False, "")(env, record, None, None, specialized)
        else:
            mine: list = []
            outs = self._line(False, "records")(env, record, mine.append, None, specialized)
            for r in mine:
                profile(r)
            fast = {id(f[0]) for f in self._flat_fast}
            self._step_info[key] = [(r[0], r[3], r[4]) for r in mine if id(r[0]) in fast]
        if len(self._shape_cache) >= SHAPE_CACHE_SIZE:  # bounded: long-lived sessions see many shapes
            old = next(iter(self._shape_cache))
            self._shape_cache.pop(old)
            self._step_info.pop(old, None)
            self._shape_kernels.pop(old, None)
        self._shape_cache[key] = record
        self._shape_kernels[key] = tuple(specialized.get(i) or _callable(self._flat[i]) for i in self._fast_index)
        return outs

    def run(self, inputs: Sequence, outer_env: dict | None = None, profile: Callable | None = None,
            key: tuple | None = None) -> list:
        """The graph's outputs for `inputs`. key: a signature the caller already computed that determines every
        input's shape (InferenceSession's (shape, dtype) per input), the shape cache's key instead of the
        input shapes (building that tuple again took half a microsecond of a small kernel's call)."""
        env = list(self.template)
        for s, a in zip(self.input_slots, inputs):
            env[s] = a
        if outer_env:
            for v, s in self.outer_slots:
                env[s] = outer_env.get(v)
        if self._plain:  # profile: the hook gets each kernel's times; the steps run are the same
            if self._flat_fast is not None and not outer_env:
                return self._run_shape_cached(env, inputs, profile, key)
            return self._line(False, "records" if profile is not None else "")(env, {}, profile)
        for st in self.steps:
            args = [env[i] for i in st.ins]
            t0 = time.perf_counter()
            if st.captures:
                outs = call_in_scope(st.kernel, st.node, args, {v: env[s] for v, s in st.captures})
            else:
                outs = call_kernel(st.kernel, st.node, args)
            if profile:
                t1 = time.perf_counter()
                profile((st, t0, t1, [shape_dtype(a) for a in args], [shape_dtype(o) for o in outs]))
            for s, a in zip(st.outs, outs):
                env[s] = a
            for s in st.free:
                env[s] = None
        return [env[s] for s in self.output_slots]


def _callable(entry) -> Callable:
    """What the straight-line code calls for a step: a single-output kernel's bare `direct` function where it
    has one (its result converted only when not an array), else the kernel (a list of outputs)."""
    _, kernel, _, outs, _ = entry
    return (getattr(kernel, "direct", None) if len(outs) == 1 else None) or kernel


def straight_line(flat: list, output_slots: list, keep: set = frozenset(), timing: str = "",
                  specialize: frozenset = frozenset()) -> Callable:
    """The hot loop for graphs without control flow, generated as straight-line Python: slots become local
    variables, each step one call, each buffer dropped after its last use, one try around everything. (A
    loop over the steps spends more time indexing and unpacking than small kernels take to run.) The
    function run(env, record, hook=None, kernels=None, specialized=None) takes the slot list (constants and
    inputs filled in) and a dict that receives the values of the slots in `keep` as they are produced; it
    returns the output values. kernels replaces the steps' kernels for this call (same calling convention);
    for each step index in `specialize`, specialized[index] receives kernel.specialize(*its arguments).
    timing "records": each call is bracketed by clock reads and reported as hook((step, t0, t1, ins, outs)),
    ins and outs being (shape, dtype) per value (attribute reads only); "times": only hook(t0) and hook(t1),
    for runs whose shapes are known. Little time passes between kernels, so the profile's kernel times cover
    the run."""
    written: set = set()
    body: list[str] = []

    def ref(s: int) -> str:
        if s < 0:
            return "None"  # an omitted optional input
        if s not in written:  # a constant, an input or a cached shape value: read from the slot list once
            body.append(f"v{s} = env[{s}]")
            written.add(s)
        return f"v{s}"

    def info(s: int, v) -> str:  # (shape, dtype) of slot s: direct for tensors, checked for anything else
        if s < 0:
            return "None"
        return f"(v{s}.shape, v{s}.dtype)" if isinstance(getattr(v, "type", None), TensorType) else f"sd(v{s})"

    callables = []
    for i, (st, kernel, ins, outs, free) in enumerate(flat):
        args = ", ".join(ref(s) for s in ins)
        callables.append(_callable(flat[i]))
        direct = callables[-1] is not kernel
        call = f"v{outs[0]} = k{i}({args})" if direct else f"r = k{i}({args})"
        body.append(f"i = {i}; t0 = clock(); {call}; t1 = clock()" if timing else f"i = {i}; {call}")
        if direct:  # a reference kernel's bare result: only non-arrays need converting
            body.append(f"if type(v{outs[0]}) is not ndarray: v{outs[0]} = first(v{outs[0]})")
        if i in specialize:
            body.append(f"if specialized is not None: specialized[{i}] = k{i}.specialize({args})")
        for j, s in enumerate(outs):
            if not direct:
                body.append(f"v{s} = r[{j}]")
            written.add(s)
            if s in keep:
                body.append(f"record[{s}] = v{s}")
        if timing == "times":
            body.append("hook(t0); hook(t1)")
        elif timing:
            ins_info = [info(s, v) for s, v in zip(ins, st.node.inputs)]
            outs_info = [info(s, v) for s, v in zip(outs, st.node.outputs)]
            body.append(f"hook((steps[{i}], t0, t1, [{', '.join(ins_info)}], [{', '.join(outs_info)}]))")
        if free:
            body.append(", ".join(f"v{s}" for s in free) + " = " + ", ".join("None" for _ in free))
    result = "[" + ", ".join(ref(s) for s in output_slots) + "]"
    kernels = ", ".join(f"k{i}" for i in range(len(flat)))
    src = ["def make(steps, defaults, typed, MsgxError, clock, sd, ndarray, first):",
           "    def run(env, record, hook=None, kernels=None, specialized=None):",
           f"        {kernels}{',' if len(flat) == 1 else ''} = kernels or defaults" if flat else "        pass",
           "        i = -1",
           "        try:"]
    src += [f"            {line}" for line in body] + [f"            return {result}",
            "        except Exception as e:",
            "            if i < 0 or isinstance(e, MsgxError):",
            "                raise",
            "            raise typed(steps[i].node, e) from e",
            "    return run"]
    namespace: dict = {}
    exec(compile("\n".join(src), "<msgx straight-line executor>", "exec"), namespace)
    return namespace["make"]([f[0] for f in flat], callables, _typed, MsgxError, time.perf_counter, shape_dtype,
                              np.ndarray, lambda out: as_outputs(out)[0])


_SCOPES = threading.local()  # per thread: stack of {Value: array} visible to running subgraphs


def call_in_scope(kernel, node: Node, args, scope: dict):
    """Run a control-flow kernel with the values its subgraphs capture visible to run_subgraph."""
    stack = _SCOPES.__dict__.setdefault("stack", [])
    stack.append(scope)
    try:
        return call_kernel(kernel, node, args)
    finally:
        stack.pop()


_SUBGRAPH_EXECUTORS: dict[Graph, GraphExecutor] = {}


def run_subgraph(g: Graph, inputs: Sequence) -> list:
    """Run a subgraph (If/Loop/Scan body); captured outer values come from the innermost scope."""
    stack = _SCOPES.__dict__.get("stack") or [{}]
    executor = _SUBGRAPH_EXECUTORS.get(g)
    if executor is None:
        if len(_SUBGRAPH_EXECUTORS) > 1024:  # bound the cache for long-lived processes
            _SUBGRAPH_EXECUTORS.clear()
        executor = _SUBGRAPH_EXECUTORS[g] = GraphExecutor(g, outer=frozenset(captured_values(g)))
    return executor.run(list(inputs), outer_env=stack[-1])


class PyNativeExecutor:
    """Eager execution: each node is looked up in the registry when it runs; kernels are cached by op
    signature (op, opset, attributes, input dtypes), as PyNative caches single-op kernels."""

    def __init__(self, graph: Graph, backend=NUMPY):
        self.graph, self.backend = graph, backend
        self.cache: dict = {}
        self.profile: Callable | None = None  # hook(node, backend, t0, t1, args, outs) while profiling
        self.free_after = values_to_free(graph, [list(n.inputs) + list(captures_of(n)) for n in graph.nodes])

    def kernel_for(self, node: Node, args):
        if any(True for _ in subgraphs_of(node)):
            key = node  # subgraph kernels are specific to their node
        else:
            key = (node.op, node.domain, node.opset, attr_key(tuple(sorted(node.attrs.items()))),
                   tuple(getattr(a, "dtype", None) for a in args), len(node.outputs))
        kernel = self.cache.get(key)
        if kernel is None:
            kernel = self.cache[key] = self.backend.compile(node, run_subgraph)
        return kernel

    def run(self, inputs: Sequence, outer_env: dict | None = None) -> list:
        env: dict = dict(outer_env or {})
        env.update(self.graph.constants)
        env.update(zip(self.graph.inputs, inputs))
        prof, free = self.profile, self.free_after
        for i, n in enumerate(self.graph.nodes):
            args = [None if v is None else env[v] for v in n.inputs]
            kernel = self.kernel_for(n, args)
            captures = captures_of(n)
            t0 = time.perf_counter() if prof else 0.0
            if captures:
                outs = call_in_scope(kernel, n, args, {v: env.get(v) for v in captures})
            else:
                outs = call_kernel(kernel, n, args)
            if prof:
                prof(n, self.backend.name, t0, time.perf_counter(), args, outs)
            env.update(zip(n.outputs, outs))
            for v in free[i]:
                env.pop(v, None)
        return [env[v] for v in self.graph.outputs]


def values_to_free(graph: Graph, reads: list) -> list[list[Value]]:
    """For steps that read `reads[i]` in order: the values to drop after each step, at their last read.
    Graph outputs, inputs and constants are kept. (Values dropped early let the allocator reuse warm memory
    instead of mapping fresh pages for every large result.)"""
    keep = set(graph.outputs) | set(graph.inputs) | set(graph.constants)
    last: dict = {}
    for i, vs in enumerate(reads):
        for v in vs:
            if v is not None and v not in keep:
                last[v] = i
    free: list[list[Value]] = [[] for _ in reads]
    for v, i in last.items():
        free[i].append(v)
    return free
