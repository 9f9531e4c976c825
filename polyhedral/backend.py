"""PolyBackend: static-shape fused clusters -> statements -> a legal schedule -> C, built once per graph.

compile() schedules and generates a cluster's function; finish() (called by the session once every node is
compiled, else on the first run) builds all pending functions as one translation unit through the disk cache.
A missing or failing compiler hands the clusters to the DVM (or the reference) with the reason recorded."""
from __future__ import annotations

import time

import numpy as np

from framework.ir import Node

from framework.disk_cache import DiskCache, cache_key

from . import build, codegen, scheduler
from .config import Config
from .lower import lower
from .stmt import ScopError

VERSION = 7  # bump when lowering, scheduling or code generation changes the C they produce
FN = "msgx_poly_fn"
# row-wise clusters gain nothing from tiling (each row is touched once or twice, in cache)
CLUSTER_CONFIG = Config("cluster", objectives=(("contiguity", "proximity", "big-loops", "sum"),),
                        fusion="max")


class PolyBackend:
    """Backend protocol: name, supports(node), compile(node, run_graph) -> kernel(*arrays) -> list."""

    name = "poly"

    def __init__(self, config: Config = CLUSTER_CONFIG, cache=None, mode: str = "auto"):
        self.config, self.cache, self.mode = config, cache, mode
        self.shape_fallbacks: dict[str, str] = {}  # clusters handed to another backend, with why
        self.build_seconds = 0.0
        self._lowered: dict[int, tuple] = {}
        self._pending: list[tuple] = []

    def supports(self, node: Node) -> bool:
        """Fused nodes whose body lowers to statements (static float32 shapes, known ops) when gcc exists."""
        if node.op != "Fused" or node.domain != "msgx" or "body" not in node.attrs:
            return False
        try:
            lowered = lower(node.attrs["body"], node.name or "cluster")
        except ScopError:
            return False
        try:
            build.compiler()
        except build.CompilerError as e:
            self.shape_fallbacks[node.name or "cluster"] = f"poly backend: {e}; another backend runs it"
            return False
        self._lowered[id(node)] = lowered
        return True

    def compile(self, node: Node, run_graph=None):
        lowered = self._lowered.pop(id(node), None) or lower(node.attrs["body"], node.name or "cluster")
        scop = lowered.scop
        # the scheduled C function is cached too, so a warm session neither schedules nor compiles
        cache = self.cache or DiskCache("poly")
        key = cache_key("poly-function", VERSION, repr(scop), repr(self.config))
        text = cache.get(key, ".c")
        if text is None:
            res = scheduler.schedule(scop, {}, self.config)
            text = codegen.function(scop, {}, res, FN).encode()
            cache.put(key, text, ".c")
        slot: dict = {"run": None}
        self._pending.append((node, scop, text.decode(), lowered.feeds, slot, run_graph))

        def kernel(*arrays):
            if slot["run"] is None:
                self.finish()
            return slot["run"](*arrays)
        return kernel

    def finish(self) -> None:
        """Build every pending cluster in one translation unit (a cache hit runs no compiler)."""
        items, self._pending = self._pending, []
        if not items:
            return
        t0 = time.perf_counter()
        names = [f"msgx_poly_{k}" for k in range(len(items))]
        # FN also prefixes the function's parallel-loop helpers: renaming every occurrence keeps them apart
        src = codegen.translation_unit([text.replace(FN, fn) for fn, (_, _, text, *_r) in zip(names, items)])
        try:
            lib = build.load(build.shared_library(src, cache=self.cache))
            kernels = [build.Kernel(lib, fn, scop, {}) for fn, (_, scop, *_r) in zip(names, items)]
            kernels[0].set_threads(_threads())
        except build.CompilerError as e:
            for node, *_x, slot, run_graph in items:
                fb = _fallback_backend(node)
                slot["run"] = fb.compile(node, run_graph)
                self.shape_fallbacks[node.name or "cluster"] = f"poly backend: {e}; ran on {fb.name}"
            return
        finally:
            self.build_seconds += time.perf_counter() - t0
        for (node, scop, _text, feeds, slot, _rg), k in zip(items, kernels):
            slot["run"] = _runner(k, scop, feeds, [o.type.shape for o in node.attrs["body"].outputs])


def _threads() -> int:
    """The DVM's thread count (MSGX_NUM_THREADS, OMP_NUM_THREADS, else the CPUs this process may use)."""
    from dvm_runtime.backend import vm_threads  # lazy: the poly backend needs nothing else of the DVM
    return vm_threads()


def _fallback_backend(node):
    from dvm_runtime.backend import DvmBackend  # lazy: only when the C build failed
    from framework.backends import NUMPY
    dvm = DvmBackend()
    return dvm if dvm.supports(node) else NUMPY


def _matmul(a: np.ndarray, b: np.ndarray, shape) -> np.ndarray:
    """ONNX MatMul on BLAS; a batch of rows against one matrix is a single sgemm (np.matmul would loop)."""
    if b.ndim == 2 and a.ndim > 2:
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(shape)
    return np.matmul(a, b).reshape(shape)


def _runner(k: build.Kernel, scop, feeds: list, out_shapes: list):
    plan = [(a.name, k.shapes[a.name], a.role, f) for a, f in zip(scop.arrays, feeds)]

    def run(*inputs):
        arrays, outs = [], []
        for name, shape, role, f in plan:
            if isinstance(f, int):
                x = np.ascontiguousarray(inputs[f], np.float32).reshape(shape)
            elif isinstance(f, np.ndarray):
                x = f.reshape(shape)
            elif f is not None:  # ("matmul", a, b): operands are earlier arrays
                x = _matmul(arrays[f[1]], arrays[f[2]], shape)
            else:
                x = np.empty(shape, np.float32)
                if role == "out":
                    outs.append(x)
            arrays.append(x)
        k.call(arrays)
        return [o.reshape(s) for o, s in zip(outs, out_shapes)]
    return run
