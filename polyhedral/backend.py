"""PolyBackend: static-shape fused clusters -> statements -> a legal schedule -> C, built once per graph.

compile() schedules and generates a cluster's function; finish() (called by the session once every node is
compiled, else on the first run) builds all pending functions as one translation unit through the disk cache.
A missing or failing compiler hands the clusters to the DVM (or the reference) with the reason recorded."""
from __future__ import annotations

import math
import time

import numpy as np

from framework.disk_cache import DiskCache, cache_key
from framework.ir import Node
from framework.ops import gemm

from . import build, codegen, scheduler
from .config import Config
from .lower import lower
from .stmt import ScopError

VERSION = 17  # bump when lowering, scheduling or code generation changes the C they produce
FN = "msgx_poly_fn"
# Row-wise clusters gain nothing from tiling (each row is touched once or twice, in cache). Their loops run
# on the DVM's pool, whose workers poll between jobs, and thread from 8192 instances: static tiny_gpt (batch
# 8, seq 64) at O1 poly took 1.38-1.43 ms with it against 1.41-1.47 ms with Config's 512K (best of 40x20 calls,
# 3 alternating runs). PolyBench's standalone kernels keep the library's own pool and Config's threshold.
CLUSTER_CONFIG = Config("cluster", objectives=(("contiguity", "proximity", "big-loops", "sum"),),
                        fusion="max", min_parallel_work=1 << 13)


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
            kernels[0].set_threads(gemm.cpu_threads())
            build.use_shared_pool(lib)
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


def _fallback_backend(node):
    from dvm_runtime.backend import DvmBackend  # lazy: only when the C build failed
    from framework.backends import NUMPY
    dvm = DvmBackend()
    return dvm if dvm.supports(node) else NUMPY


def _product(a_shape: tuple, b_shape: tuple):
    """f(a, b, out): ONNX MatMul of arrays of these (static) shapes into `out` (a C-contiguous float32 array
    of the product's size), on our GEMM (framework.ops.gemm, as the DVM's host matmuls) when it takes the
    product, else on BLAS. Rows against one matrix are a single product (np.matmul would loop over the
    batch); the shapes are worked out once here, not per call."""
    if len(b_shape) == 2:
        a_shape = (math.prod(a_shape[:-1]), a_shape[-1])
    natural = np.broadcast_shapes(a_shape[:-2], b_shape[:-2]) + (a_shape[-2], b_shape[-1])

    def product(a, b, out):
        a, out = a.reshape(a_shape), out.reshape(natural)
        if gemm.matmul(a, b, out) is None:
            np.matmul(a, b, out=out)
    return product


def _runner(k: build.Kernel, scop, feeds: list, out_shapes: list):
    """The cluster's host path: matmul products (_product), then the C function called with the arrays
    (k.caller: their addresses taken in C after a check that each is C-contiguous float32 of its element
    count; an input that is not is converted and the call made again). Outputs are allocated in the shapes
    they are returned in (the function reads flat memory). Temporaries and products are nobody's after the
    call: a set of them is kept for the next call (no allocation, no page faults per call). A call takes a
    set off `spare` and puts it back after (list pop and append are atomic under the GIL), so a concurrent
    call of the same kernel allocates its own."""
    if scop.scalars:
        raise ScopError(f"cluster {scop.name!r}: lowered clusters pass no scalar arguments")
    base: list = [None] * len(scop.arrays)
    inputs_at, outputs_at, temps_at, products = [], [], [], []
    for pos, (a, f) in enumerate(zip(scop.arrays, feeds)):
        shape = k.shapes[a.name]
        if isinstance(f, int):
            inputs_at.append((pos, f, shape))
        elif isinstance(f, np.ndarray):
            base[pos] = np.ascontiguousarray(f, np.float32).reshape(shape)
        elif a.role == "out" and f is None:
            outputs_at.append(pos)
        else:  # a temporary, or ("matmul", a, b) whose operands are earlier arrays
            temps_at.append((pos, shape))
            if f is not None:
                a_shape, b_shape = (k.shapes[scop.arrays[j].name] for j in f[1:3])
                products.append((pos, f[1], f[2], _product(a_shape, b_shape)))
    returned = list(zip(outputs_at, (tuple(s) for s in out_shapes)))
    spare: list[list] = []
    call, f32 = k.caller(), np.float32

    def run(*inputs):
        arrays = base.copy()
        for pos, f, _ in inputs_at:
            arrays[pos] = inputs[f]
        outs = []
        for pos, shape in returned:
            arrays[pos] = o = np.empty(shape, f32)
            outs.append(o)
        try:
            temps = spare.pop()
        except IndexError:  # the first call, or another thread's call holds the kept set
            temps = [np.empty(shape, f32) for _, shape in temps_at]
        for (pos, _), x in zip(temps_at, temps):
            arrays[pos] = x
        if products:  # BLAS takes the operands in their scop shapes
            for pos, f, shape in inputs_at:
                arrays[pos] = np.ascontiguousarray(inputs[f], f32).reshape(shape)
            for pos, a, b, product in products:
                product(arrays[a], arrays[b], arrays[pos])
        if not call(arrays):
            for pos, f, shape in inputs_at:  # a view, another dtype: converted (a wrong size raises here)
                arrays[pos] = np.ascontiguousarray(inputs[f], f32).reshape(shape)
            if not call(arrays):
                raise ScopError(f"cluster {scop.name!r}: arrays do not match the kernel's")
        spare.append(temps)
        return outs
    return run
