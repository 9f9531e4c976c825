"""InferenceSession: onnxruntime's API shape over msgx's two executors."""
from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from . import context
from .dtypes import type_string
from .errors import ContextError, InputNameError, InputShapeError, InputTypeError, MsgxError
from .backends import backends_for
from .compile import run_passes
from .executor import GraphExecutor, PyNativeExecutor
from .ir import Graph, SequenceType, TensorType, Value
from .onnx_frontend import import_model
from .profiler import Profiler, activated

VALID_FEEDS_KEPT = 256  # feed signatures remembered as checked (bounded for long-lived sessions)


@dataclass(frozen=True)
class NodeArg:
    """What get_inputs()/get_outputs() return, like onnxruntime's NodeArg."""

    name: str
    shape: list | None
    type: str


def _node_arg(v: Value) -> NodeArg:
    t = v.type
    if isinstance(t, TensorType):
        shape = None if t.shape is None else [d if isinstance(d, int) else str(d) for d in t.shape]
        return NodeArg(v.name, shape, type_string(t.dtype))
    if isinstance(t, SequenceType):
        return NodeArg(v.name, None, f"seq({type_string(t.elem.dtype)})")
    return NodeArg(v.name, None, str(t))


class InferenceSession:
    """Load a model (path, bytes or onnx.ModelProto) and run it in graph or PyNative mode."""

    def __init__(self, model, mode: str | int | None = None, jit_level: str | None = None,
                 graph_kernel_flags: str | None = None, check_ir: bool = False,
                 profile: bool | str | os.PathLike = False, device: str | None = None):
        self.mode = context.normalize_mode(context.get_context("mode") if mode is None else mode)
        # device="gpu": O1 clusters and matmuls on the GPU (dvm_runtime.gpu), arrays kept there between them
        self.device = context.normalize_device(context.get_context("device") if device is None else device)
        if self.device == "gpu" and self.mode != context.GRAPH_MODE:
            raise ContextError("device='gpu' runs graph mode only (mode='graph')")
        self.jit_level = context.normalize_jit_level(
            context.get_context("jit_level") if jit_level is None else jit_level)
        self.graph_kernel_flags = context.get_context("graph_kernel_flags") if graph_kernel_flags is None \
            else graph_kernel_flags
        t0 = time.perf_counter()
        # profile=True or a trace path: kernel, compile and pass events; end_profiling() writes the trace
        self._profiler = Profiler(None if profile is True else profile) if profile else None
        self._backends: tuple = ()
        self.model_graph: Graph = import_model(model)
        self.pass_times: dict[str, float] = {}
        compile_times: dict[str, float] = {}

        def on_pass(name, graph, seconds):
            self.pass_times[name] = self.pass_times.get(name, 0.0) + seconds
            if self._profiler is not None:
                end = time.perf_counter()
                self._profiler.add(name, "pass", end - seconds, end, nodes=len(graph.nodes))

        def on_compile(node, backend, seconds):
            compile_times[backend] = compile_times.get(backend, 0.0) + seconds
            if self._profiler is not None:
                end = time.perf_counter()
                self._profiler.add(f"compile {node.name or node.op}", "compile", end - seconds, end,
                                   op=node.op, backend=backend)

        if self.mode == context.GRAPH_MODE:
            with activated(self._profiler):  # backends report compile work (encode, C compile) to it
                self.graph = run_passes(self.model_graph, self.jit_level, check=check_ir, on_pass=on_pass,
                                        graph_kernel_flags=self.graph_kernel_flags)
                flags = self.graph_kernel_flags
                self._backends = backends_for(self.jit_level, flags) if self.device == "cpu" \
                    else _gpu_backends(self.jit_level, flags)
                self._executor = GraphExecutor(self.graph, self._backends, on_compile=on_compile)
                for b in self._backends:  # generators that build all kernels at once (one C file per graph)
                    if hasattr(b, "finish"):
                        t1 = time.perf_counter()
                        b.finish()
                        compile_times[b.name] = compile_times.get(b.name, 0.0) + time.perf_counter() - t1
            backends: dict[str, int] = {}
            for st in self._executor.steps:
                backends[st.backend] = backends.get(st.backend, 0) + 1
        else:
            self.graph = self.model_graph
            if self.jit_level == "O1":  # runtime (lazy) fusion, as DVM does in PyNative
                from graph_kernel.lazy import LazyFusionExecutor  # lazy: the core does not need graph_kernel
                from graph_kernel.pipeline import pynative_passes
                for name, fn in pynative_passes(self.graph_kernel_flags):  # composites into primitives
                    t0 = time.perf_counter()
                    self.graph = fn(self.graph)
                    on_pass(name, self.graph, time.perf_counter() - t0)
                self._backends = backends_for(self.jit_level, self.graph_kernel_flags, mode="pynative")
                self._executor = LazyFusionExecutor(self.graph, fused_backends=self._backends)
            else:
                self._executor = PyNativeExecutor(self.graph)
            backends = {"numpy": len(self.graph.nodes)}
            if self._profiler is not None:
                self._executor.profile = self._profiler.kernel
        self._inputs = {v.name: v for v in self.graph.inputs}
        self._valid_feeds: set = set()  # (shape, dtype) per input of feeds that passed _check_feed
        # array types whose signature stands for a full check: numpy's, and in a GPU session the device array
        # types fed to it (a cProfile of an Adam step fed ten CuPy arrays: the re-check took 40% of the host
        # time of a call)
        self._fast_types = {np.ndarray}
        self._constant_ids = frozenset(id(a) for a in self.graph.constants.values())
        self._lazy_fusion = hasattr(self._executor, "records")
        # the graph executor keys its shape cache by the feed's checked signature (see GraphExecutor.run)
        self._keyed = isinstance(self._executor, GraphExecutor)
        self._shape_fallback_backends = [b for b in self._backends if hasattr(b, "shape_fallbacks")]
        # the model's output names: a pass may leave another value in an output's place (an Identity of a
        # constant removed), which must not rename what the caller asks for
        assert len(self.model_graph.outputs) == len(self.graph.outputs), "passes keep the graph's outputs"
        self._outputs = [v.name for v in self.model_graph.outputs]
        self._every_output = range(len(self._outputs))
        # compiling leaves thousands of young objects (IR, sympy dims, trial encodes); collected here, not by
        # the first runs' generation-1 collection (measured 0.8-1.3 ms, inside whichever kernel or encode ran)
        gc.collect(1)
        fused = [n for n in self.graph.nodes if n.op == "Fused" and n.domain == "msgx"]
        self.stats: dict[str, Any] = {
            "mode": "graph" if self.mode == context.GRAPH_MODE else "pynative",
            "jit_level": self.jit_level,
            "device": self.device,
            "nodes": len(self.graph.nodes),
            "nodes_in_model": len(self.model_graph.nodes),
            "backends": backends,
            "fusion": ("graph-kernel fusion" if self.mode == context.GRAPH_MODE else "runtime (lazy) fusion")
            if self.jit_level == "O1" else "off (O0)",
            "clusters": len(fused),
            "fused_ops": sum(len(n.attrs["body"].nodes) for n in fused),
            # fused bodies the numpy reference interprets because no faster backend took them
            "fallbacks": self._fallbacks(),
            "compile_seconds": time.perf_counter() - t0,
            "compile_ms": {k: v * 1e3 for k, v in compile_times.items()},
            "pass_seconds": self.pass_times,
        }
        if self.device == "gpu" and self._profiler is None:  # the process's one-time GPU costs at setup
            from dvm_runtime.gpu.backend import warm
            fallbacks = dict(self.stats["fallbacks"])
            warm(self, self._executor, self._backends)
            self.stats["fallbacks"] = fallbacks  # what the trial shape needed says nothing of real ones
            self.stats["compile_seconds"] = time.perf_counter() - t0

    def _fallbacks(self) -> dict[str, str]:
        steps = getattr(self._executor, "steps", ())
        out = {st.node.name or f"cluster{i}": "interpreted by the numpy reference: neither the polyhedral "
               "backend nor the DVM encoder took it" for i, st in enumerate(steps)
               if st.node.op == "Fused" and st.node.domain == "msgx" and st.backend == "numpy"}
        for b in self._backends:  # clusters a generator handed on (no C compiler...), with why
            out.update(getattr(b, "shape_fallbacks", {}))
        return out

    def encode_times(self) -> list[float]:
        """Seconds each DVM encode of this session took so far (the latest few thousand): one per new input
        shape of each fused kernel, the whole cost of serving a shape the kernels have not seen."""
        return [t for b in self._backends for t in getattr(b, "encode_times", ())]

    def get_inputs(self) -> list[NodeArg]:
        return [_node_arg(v) for v in self.graph.inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [_node_arg(v) for v in self.model_graph.outputs]

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, Any], **_options) -> list:
        """Run the model; returns the requested outputs (all when output_names is None) in order."""
        arrays, signature = self._check_feed(feed)
        if output_names is None:
            wanted = self._every_output
        else:
            if isinstance(output_names, str):
                output_names = [output_names]
            unknown = [n for n in output_names if n not in self._outputs]
            if unknown:
                raise InputNameError(f"unknown output name(s) {unknown}; the model's outputs are {self._outputs}")
            wanted = [self._outputs.index(n) for n in output_names]
        if self._profiler is not None:
            results = self._run_profiled(arrays)
        elif signature is not None and self._keyed:
            results = self._executor.run(arrays, key=signature)
        else:
            results = self._executor.run(arrays)
        if self._lazy_fusion:  # lazy fusion groups are known only at run time
            lazy = self._executor.stats
            self.stats.update(clusters=lazy["groups"], fused_ops=lazy["fused_ops"], lazy_fusion=lazy)
        for b in self._shape_fallback_backends:  # a backend may hand one shape of a kernel to the reference
            if b.shape_fallbacks:
                self.stats["fallbacks"].update(b.shape_fallbacks)
        if self.device == "gpu":  # device arrays stay on the device only for callers that fed device arrays
            from dvm_runtime.gpu.backend import to_host
            if not any(_on_device(a) for a in arrays):
                results = [to_host(r) for r in results]
        return _detached([results[i] for i in wanted], self._constant_ids, arrays)

    def _run_profiled(self, arrays: list) -> list:
        prof = self._profiler
        with activated(prof):
            records = prof.new_run()
            t0 = time.perf_counter()
            if isinstance(self._executor, GraphExecutor):
                results = self._executor.run(arrays, profile=records.append)
            else:  # PyNative reports each kernel through prof.kernel
                results = self._executor.run(arrays)
            prof.run_span(t0, time.perf_counter(), [getattr(a, "shape", ()) for a in arrays])
        prof.runs += 1
        return results

    def end_profiling(self) -> str | None:
        """Write the trace (Chrome trace-event JSON) and stop profiling; returns its path (None if off)."""
        prof, self._profiler = self._profiler, None
        if prof is None:
            return None
        if hasattr(self._executor, "profile"):
            self._executor.profile = None
        meta = {"mode": self.stats["mode"], "jit_level": self.jit_level, "runs": prof.runs}
        return prof.write(fallbacks=frozenset(self.stats["fallbacks"]), meta=meta)

    def _check_feed(self, feed: Mapping[str, Any]) -> tuple[list, tuple | None]:
        """The feed's values in input order, checked, and their signature ((shape, dtype) per input) where all
        are arrays of _fast_types, else None."""
        if type(feed) is dict and len(feed) == len(self._inputs):  # a signature checked before: no re-check
            arrays = [feed.get(name) for name in self._inputs]
            fast = self._fast_types
            signature = tuple([(a.shape, a.dtype) for a in arrays if type(a) in fast])
            if len(signature) == len(arrays) and signature in self._valid_feeds:
                return arrays, signature
        if not isinstance(feed, Mapping):
            raise InputNameError(f"feed must be a dict of input name -> array, not {type(feed).__name__}")
        unknown = [k for k in feed if k not in self._inputs]
        if unknown:
            raise InputNameError(f"unknown input name(s) {unknown}; the model's inputs are {list(self._inputs)}")
        missing = [k for k in self._inputs if k not in feed]
        if missing:
            raise InputNameError(f"missing input(s) {missing}; the model's inputs are {list(self._inputs)}")
        bound: dict = {}
        arrays = []
        for name, v in self._inputs.items():
            value = feed[name]
            if _on_device(value) and self.device != "gpu":
                raise InputTypeError(f"input {name!r}: a device array was given to a session on the CPU "
                                     "(create it with device='gpu', or pass a numpy array)")
            arrays.append(_check_value(name, v.type, value, bound))
        if self.device == "gpu":
            self._fast_types.update(type(a) for a in arrays if _on_device(a))
        if not all(type(a) in self._fast_types for a in arrays):
            return arrays, None
        signature = tuple([(a.shape, a.dtype) for a in arrays])
        if len(self._valid_feeds) < VALID_FEEDS_KEPT:
            self._valid_feeds.add(signature)
        return arrays, signature


def _detached(results: list, constant_ids: frozenset, fed: list) -> list:
    """The results, each copied where it is (a view of) a constant or a feed, so callers never alias our tables
    or theirs. (Per result: a walk up its bases, usually none; the feeds compared by identity, fewer than a set
    of their ids cost to build.)"""
    out = []
    for r in results:
        base = r
        while isinstance(base, np.ndarray):
            if id(base) in constant_ids or _is_one_of(base, fed):
                r = r.copy()
                break
            base = base.base
        out.append(r)
    return out


def _is_one_of(x, values: list) -> bool:
    for v in values:
        if x is v:
            return True
    return False


def _check_value(name: str, t, value, bound: dict):
    if not isinstance(t, TensorType):
        return value  # sequences and optionals are passed through as given
    if isinstance(value, np.ndarray) or _on_device(value):
        arr = value
    else:
        try:
            arr = np.asarray(value, dtype=t.dtype)
        except (TypeError, ValueError) as e:
            raise InputTypeError(f"input {name!r}: cannot convert {type(value).__name__} to "
                                 f"{type_string(t.dtype)}: {e}") from None
    if t.dtype is not None and arr.dtype != t.dtype:
        if isinstance(arr, np.ndarray) and arr.dtype.newbyteorder("=") == t.dtype:
            arr = arr.astype(t.dtype)  # the same values in the other byte order ('>f4' read from a file)
        else:
            raise InputTypeError(f"input {name!r}: expected {type_string(t.dtype)}, got {type_string(arr.dtype)}")
    if t.shape is None:
        return arr
    if arr.ndim != len(t.shape):
        raise InputShapeError(f"input {name!r}: expected rank {len(t.shape)} "
                              f"{_shape_text(t.shape)}, got rank {arr.ndim} {list(arr.shape)}")
    for axis, (want, got) in enumerate(zip(t.shape, arr.shape)):
        if isinstance(want, int):
            if want != got:
                raise InputShapeError(f"input {name!r}: dim {axis} must be {want}, got {got} "
                                      f"(expected {_shape_text(t.shape)}, got {list(arr.shape)})")
        elif want.is_Symbol:
            if bound.setdefault(want, got) != got:
                raise InputShapeError(f"input {name!r}: dim {axis} ({want}) is {got}, but another input "
                                      f"bound {want} to {bound[want]}")
    return arr


def _on_device(value) -> bool:
    """A CuPy (or other CUDA array interface) array, which a device='gpu' session takes as it is."""
    return type(value) is not np.ndarray and hasattr(value, "__cuda_array_interface__") and hasattr(value, "dtype")


def _gpu_backends(jit_level: str, flags: str) -> tuple:
    from dvm_runtime.gpu.backend import gpu_backends  # lazy: only GPU sessions import CuPy
    return gpu_backends(jit_level, flags)


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


__all__ = ["InferenceSession", "NodeArg", "MsgxError"]
