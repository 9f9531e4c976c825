"""Tasks: what a kernel must compute. From a KernelBench-style file (numpy `class Model` with `forward`,
`get_inputs()`, `get_init_inputs()`), from an IR graph (a fused cluster no other backend took, a model-local
function's body) or from a custom op's numpy reference. The synthesizer works on the traced graph."""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from framework.errors import MsgxError
from framework.ir import Graph, print_graph

from .trace import trace

_IDS = itertools.count()


class TaskError(MsgxError):
    """A task file or spec is malformed (names the file and what is missing)."""


@dataclass
class Task:
    """A reference computation with a way to make inputs; `graph` is its traced (or given) IR."""

    name: str
    reference: Callable
    make: Callable[[int], list]
    kind: str = "file"
    graph: Graph | None = None
    source: str = ""
    path: str = ""
    index_inputs: set = field(default_factory=set)

    def make_inputs(self, seed: int) -> list[np.ndarray]:
        return [np.asarray(a) for a in self.make(seed)]

    def run_reference(self, inputs: list) -> list[np.ndarray]:
        out = self.reference(*inputs)
        return [np.asarray(o) for o in (out if isinstance(out, (tuple, list)) else (out,))]

    def traced(self) -> Graph:
        if self.graph is None:
            self.graph = trace(self.reference, self.make_inputs(0))
            self.index_inputs |= _index_inputs(self.graph)
        return self.graph

    def signature(self) -> str:
        """Everything about the computation that affects code: the IR text plus a hash of the constants."""
        g = self.traced()
        h = hashlib.sha256()
        for a in g.constants.values():
            a = np.ascontiguousarray(a)
            h.update(str((a.dtype.str, a.shape)).encode() + a.tobytes())
        return print_graph(g) + "\nconsts " + h.hexdigest()


def _index_inputs(g: Graph) -> set:
    """Inputs used (directly or through reshapes) as gather indices: edge inputs leave them alone."""
    src = {v: v for v in g.inputs}
    out = set()
    for n in g.nodes:
        if n.op in ("Reshape", "Squeeze", "Unsqueeze", "Cast") and n.inputs[0] in src:
            src[n.outputs[0]] = src[n.inputs[0]]
        if n.op in ("GatherElements", "Gather") and n.inputs[1] in src:
            out.add(list(g.inputs).index(src[n.inputs[1]]))
    return out


def _seeded(get_inputs):
    def make(seed):
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            return list(get_inputs())
        finally:
            np.random.set_state(state)
    return make


def load_task(path) -> Task:
    """Import a KernelBench-style task file."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"task file {str(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"_msgx_task_{path.stem}_{next(_IDS)}", path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as e:  # noqa: BLE001 - a broken task file is the user's input
        raise TaskError(f"task file {str(path)!r} failed to import: {type(e).__name__}: {e}") from e
    for need in ("Model", "get_inputs"):
        if not hasattr(mod, need):
            raise TaskError(f"task file {str(path)!r} defines no {need}")
    init = list(getattr(mod, "get_init_inputs", lambda: [])())
    model = _seeded(lambda: [mod.Model(*init)])(12345)[0]
    fwd = model.forward
    return Task(path.stem, fwd, _seeded(mod.get_inputs), "file", source=inspect.getsource(mod),
                path=str(path), index_inputs=set(getattr(mod, "INDEX_INPUTS", ())))


def task_from_graph(graph: Graph, name: str = "cluster", kind: str = "cluster") -> Task:
    """A task whose reference is the graph run by the framework's numpy kernels (a fused body, a function)."""
    from framework.executor import GraphExecutor
    ex = GraphExecutor(graph)
    shapes = [(tuple(int(d) for d in v.type.shape), v.type.dtype) for v in graph.inputs]

    def make(seed):
        rng = np.random.default_rng(seed)
        out = []
        for shape, dt in shapes:
            if dt.kind == "f":
                out.append(rng.standard_normal(shape).astype(dt))
            elif dt.kind == "b":
                out.append(rng.random(shape) < 0.5)
            else:
                out.append(rng.integers(0, 4, shape).astype(dt))
        return out
    return Task(name, lambda *xs: ex.run(list(xs)), make, kind, graph=graph, source=print_graph(graph),
                index_inputs=_index_inputs(graph))


def task_from_custom_op(name: str, reference: Callable, input_types: list, attrs: dict | None = None) -> Task:
    """A task for one call of a custom op: its numpy reference at these input shapes and dtypes."""
    attrs = dict(attrs or {})
    fn = (lambda *xs: reference(*xs, **attrs)) if attrs else reference
    shapes = [(tuple(int(d) for d in t.shape), np.dtype(t.dtype)) for t in input_types]

    def make(seed):
        rng = np.random.default_rng(seed)
        return [rng.standard_normal(s).astype(d) if d.kind == "f" else rng.integers(0, 2, s).astype(d)
                for s, d in shapes]
    try:
        src = inspect.getsource(reference)
    except (OSError, TypeError):
        src = repr(reference)
    return Task(name, fn, make, "custom_op", source=src)
