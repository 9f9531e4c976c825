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

VERSION = 5  # bump when lowering, scheduling or code generation changes the C they produce
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
        lowered = self._lowered.pop(id(node), None)
        scop, n_in, consts = lowered or lower(node.attrs["body"], node.name or "cluster")
        # the scheduled C function is cached too, so a warm session neither schedules nor compiles
        cache = self.cache or DiskCache("poly")
        key = cache_key("poly-function", VERSION, repr(scop), repr(self.config))
        text = cache.get(key, ".c")
        if text is None:
            res = scheduler.schedule(scop, {}, self.config)
            text = codegen.function(scop, {}, res, FN).encode()
            cache.put(key, text, ".c")
        slot: dict = {"run": None}
        self._pending.append((node, scop, text.decode(), n_in, consts, slot, run_graph))

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
        src = codegen.translation_unit([text.replace(f"void {FN}(", f"void {fn}(", 1)
                                        for fn, (_, _, text, *_r) in zip(names, items)])
        try:
            lib = build.load(build.shared_library(src, cache=self.cache))
            kernels = [build.Kernel(lib, fn, scop, {}) for fn, (_, scop, *_r) in zip(names, items)]
        except build.CompilerError as e:
            for node, *_x, slot, run_graph in items:
                fb = _fallback_backend(node)
                slot["run"] = fb.compile(node, run_graph)
                self.shape_fallbacks[node.name or "cluster"] = f"poly backend: {e}; ran on {fb.name}"
            return
        finally:
            self.build_seconds += time.perf_counter() - t0
        for (node, scop, _res, n_in, consts, slot, _rg), k in zip(items, kernels):
            slot["run"] = _runner(k, scop, n_in, consts, [o.type.shape for o in node.attrs["body"].outputs])


def _fallback_backend(node):
    from dvm_runtime.backend import DvmBackend  # lazy: only when the C build failed
    from framework.backends import NUMPY
    dvm = DvmBackend()
    return dvm if dvm.supports(node) else NUMPY


def _runner(k: build.Kernel, scop, n_in: int, consts: list, out_shapes: list):
    arrays = scop.arrays
    shapes = [k.shapes[a.name] for a in arrays]
    roles = [a.role for a in arrays]
    names = [a.name for a in arrays]

    def run(*inputs):
        feed, outs, ci = {}, [], 0
        for j, (name, shape, role) in enumerate(zip(names, shapes, roles)):
            if j < n_in:
                feed[name] = np.ascontiguousarray(inputs[j], np.float32).reshape(shape)
            elif role == "in":
                feed[name] = consts[ci].reshape(shape)
                ci += 1
            else:
                feed[name] = np.empty(shape, np.float32)
                if role == "out":
                    outs.append(feed[name])
        k(feed)
        return [o.reshape(s) for o, s in zip(outs, out_shapes)]
    return run
