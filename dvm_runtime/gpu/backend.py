"""GpuDvmBackend: fused clusters run by the CUDA VM on CuPy arrays that stay on the device between kernels.

Bytecode comes from the same encoder with the GPU tiling (`encode(..., target="gpu")`); MatMul/Gemm (alone
or feeding an epilogue) run through cuBLAS (cupy.matmul). Nodes the GPU does not take run on the host
backends behind it (`HostBackend` copies device arrays down first); a shape the GPU cannot tile falls back
to the numpy reference for that shape, with the reason in `shape_fallbacks`.
"""
from __future__ import annotations

import os
import time

import numpy as np

from framework.errors import ContextError
from framework.ir import Node

from .. import encoder, isa
from ..backend import CACHE_MAX, _Reference, _shape_inputs, encodable, encode_patterns, symbol_patterns
from . import device_ops, vm as gvm

# Register bytes a block aims for (4-byte elements): two blocks per SM, and up to 32 elements per thread per
# instruction, so decoding an instruction is paid over many elements.
TILE_BYTES = 96 * 1024
MIN_TILE, MAX_TILE = 256, 8192
MAX_TILE_ROWS = 1024     # each tile row also takes 24 bytes of shared memory (its d0, d1, d2)
BLAS_OPS = frozenset({"MatMul", "Gemm"})
# Cold start: on a freshly started machine (cold page cache) the bundled transformer's first call at seq 256
# took 13-19 ms where other lengths took 4-8 ms: CUDA loads cuBLAS's kernel for the bigger product from
# libcublasLt on first use, reading its pages from disk (4-5 ms when the page cache already held them). Setup
# trials at dims 64 and 512 did not load that kernel and tripled the setup time; _prefetch_libraries asks the
# kernel to read the cuBLAS libraries in while setup goes on.


def gpu_tiling(rows: int, cols: int, n_regs: int, reduces: bool) -> tuple[int, int]:
    """(tile_rows, tile_cols) for a block: whole rows when rows are short or reduced, else column chunks.
    Reduced rows longer than a block's shared memory holds (a 32000-word vocabulary) are one row per tile:
    the row kernel runs those programs (vm.Prepared), and the VM refuses the others (GpuLimitError: the
    backend runs that shape on the host)."""
    te = TILE_BYTES // (4 * n_regs)
    te = max(MIN_TILE, min(MAX_TILE, 1 << max(te, 1).bit_length() - 1))
    cols = max(cols, 1)
    if reduces:
        return max(1, min(rows, te // cols, MAX_TILE_ROWS)), cols
    if cols >= te:
        return 1, te
    return max(1, min(rows, te // cols, MAX_TILE_ROWS)), cols


def _cupy():
    import cupy
    return cupy


def to_device(x):
    """A CuPy array for a numpy array (copied up) or a CuPy array (as is); other values unchanged."""
    cp = _cupy()
    return cp.asarray(x) if isinstance(x, np.ndarray) else x


def to_host(x):
    """A numpy array for a CuPy array (copied down); anything else unchanged."""
    return x.get() if type(x).__module__.startswith("cupy") and hasattr(x, "get") else x


def _blas_kernel(node: Node):
    """MatMul / Gemm on the device through cuBLAS (cupy.matmul); Gemm's alpha, beta and transposes.
    CuPy is imported when the kernel runs, so encoding for the GPU target works (and is tested) without it."""
    if node.op == "MatMul":
        return lambda a, b: [_cupy().matmul(to_device(a), to_device(b))]
    from framework import ops
    at = {**ops.get(node.op, node.domain, node.opset, node.name).attrs, **node.attrs}
    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
    ta, tb = int(at.get("transA", 0)), int(at.get("transB", 0))

    def gemm(a, b, c=None):
        a, b = to_device(a), to_device(b)
        y = _cupy().matmul(a.T if ta else a, b.T if tb else b)
        if alpha != 1.0:
            y *= y.dtype.type(alpha)
        if c is not None:
            y += to_device(c) if beta == 1.0 else to_device(c) * y.dtype.type(beta)
        return [y]
    return gemm


def _host_op_kernel(node: Node):
    """A node of a fused body run on the device: BLAS ops by cuBLAS, others (Conv) by numpy on the host."""
    if node.op in BLAS_OPS:
        return _blas_kernel(node)
    from framework.backends import NUMPY
    cpu = NUMPY.compile(node)
    return lambda *xs: [to_device(np.asarray(o)) for o in cpu(*[to_host(x) for x in xs])]


encoder.TARGETS["gpu"] = (gpu_tiling, _host_op_kernel)


_WARM: list = []
# Device memory the pool holds from setup on: a first call at a new shape then splits pooled memory rather
# than paying cudaMalloc for each new size.
POOL_RESERVE = 256 << 20


def _prefetch_libraries(marks=("cublas",)) -> list[str]:
    """Starts the OS reading the mapped shared libraries whose names contain one of `marks` into the page
    cache (posix_fadvise WILLNEED: asynchronous, no copy), so kernels loaded from them on first use do not
    wait on the disk. Returns the files it asked for (none where /proc or fadvise is missing)."""
    if not hasattr(os, "posix_fadvise"):
        return []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {fields[5].strip() for fields in (line.split(None, 5) for line in f) if len(fields) == 6}
    except OSError:
        return []
    asked = []
    for path in sorted(p for p in paths if p.startswith("/") and any(m in os.path.basename(p) for m in marks)):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            asked.append(path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return asked


def _warm_up(cp) -> None:
    """Once per process, so a session's setup pays for them rather than its first call: cuBLAS handles and a
    few small matmuls, the VM's module load, CuPy's kernels for dtype conversion and Gemm's scaling, and a
    reserve of pooled device memory."""
    if _WARM:
        return
    for nd in (2, 3, 4):
        a = cp.ones((2,) * (nd - 2) + (4, 8), cp.float32)
        cp.matmul(a, a.swapaxes(-1, -2))
        cp.matmul(a[..., :1, :], a.swapaxes(-1, -2))
    _prefetch_libraries()  # cuBLAS is loaded by now
    y = cp.matmul(a, a.swapaxes(-1, -2))
    y *= y.dtype.type(0.5)
    y += y * y.dtype.type(2.0)
    for dt in (cp.float32, cp.int64, cp.int32, cp.bool_):
        cp.ascontiguousarray(a.swapaxes(-1, -2), dtype=dt)
    code = device_ops.transpose_program((4, 8), (1, 0), np.float32, gpu_tiling)  # loads the VM's module
    gvm.get_vm().run(code, [a.reshape(-1)[:32], cp.empty(32, cp.float32)])
    free, _ = cp.cuda.runtime.memGetInfo()
    reserve = cp.empty(min(POOL_RESERVE, free // 8), cp.uint8)
    del reserve  # back to the pool, which splits it for later allocations
    cp.cuda.Device().synchronize()
    _WARM.append(True)


class GpuDvmBackend:
    """Backend protocol: name, supports(node), compile(node, run_graph) -> kernel(*arrays) -> list."""

    name = "gpu"

    def __init__(self):
        from . import why_unavailable
        why = why_unavailable()
        if why:
            raise ContextError(f"device='gpu' is not available: {why}")
        self.vm = gvm.get_vm()
        _warm_up(_cupy())
        self.encode_times: list[float] = []
        self.shape_fallbacks: dict[str, str] = {}
        self._consts: dict[int, tuple] = {}   # id(numpy constant) -> (constant, its device copy)
        self._layout = device_ops.builders(_cupy(), self.vm, gpu_tiling)
        self._bodies: list = []   # fused bodies compiled by this session, for finish()

    def finish(self) -> None:
        """At session setup: encode each fused body once per pattern of its symbolic dims (each 1 or more),
        so the encoder's templates exist before the first call and a new shape only refills sizes. Bodies
        with more symbols than PATTERN_SYMBOLS get theirs on first use."""
        for body in self._bodies:
            encode_patterns(body, target="gpu")
        self._bodies.clear()

    def supports(self, node: Node) -> bool:
        """MatMul/Gemm, and Fused nodes whose body the encoder takes for the GPU at a trial binding."""
        if device_ops.takes(node):
            return True
        if node.op in BLAS_OPS and node.domain in ("", "ai.onnx"):
            return all(v is None or getattr(v.type, "dtype", None) in (np.float32, np.float64)
                       for v in node.inputs)
        return encodable(node, target="gpu")

    def const(self, arr: np.ndarray):
        """The device copy of a graph constant (uploaded once; the entry keeps the constant alive)."""
        hit = self._consts.get(id(arr))
        if hit is None or hit[0] is not arr:
            if len(self._consts) >= 4096:
                self._consts.clear()
            hit = self._consts[id(arr)] = (arr, _cupy().asarray(arr))
        return hit[1]

    def dev(self, x):
        """A device array for x: read-only numpy arrays (the graph's constants are) are uploaded once."""
        if isinstance(x, np.ndarray):
            return self.const(x) if not x.flags.writeable else _cupy().asarray(x)
        return x

    def compile(self, node: Node, run_graph=None):
        if node.op in self._layout and device_ops.takes(node):
            layout, dev = self._layout[node.op](node), self.dev
            return lambda x, *rest: layout(dev(x), *rest)
        if node.op in BLAS_OPS:
            blas, dev = _blas_kernel(node), self.dev
            return lambda *arrays: blas(*(dev(a) if a is not None else None for a in arrays))
        body, times, fallbacks = node.attrs["body"], self.encode_times, self.shape_fallbacks
        self._bodies.append(body)
        shape_in = sorted(_shape_inputs(body))
        cache: dict = {}

        def kernel(*arrays):
            key = tuple([(a.shape, a.dtype) for a in arrays])  # (a list: no generator frame)
            if shape_in:
                key += tuple(tuple(np.asarray(to_host(arrays[i])).reshape(-1).tolist()) for i in shape_in)
            prog = cache.get(key)
            if prog is None:
                t0 = time.perf_counter()
                try:
                    prog = encoder.encode(body, [a.shape for a in arrays], [a.dtype for a in arrays],
                                          {i: to_host(arrays[i]) for i in shape_in}, target="gpu")
                    self.vm.prepare(prog.code)
                except (encoder.UnsupportedError, gvm.GpuLimitError) as e:
                    prog = _Reference(node, run_graph)
                    fallbacks[node.name or "cluster"] = f"shape {key[:len(arrays)]} ran on the reference: {e}"
                times.append(time.perf_counter() - t0)
                if len(cache) >= CACHE_MAX:
                    cache.pop(next(iter(cache)))
                cache[key] = prog
            if isinstance(prog, _Reference):
                return prog.runner(None)(*[to_host(a) for a in arrays])
            return self.run_program(prog, arrays)
        kernel.cache = cache
        return kernel

    def run_program(self, prog: encoder.Program, arrays) -> list:
        """Run an encoded program on the device: host nodes (cuBLAS), buffers bound, the VM, the outputs."""
        cp = _cupy()
        host_vals: list = []

        def get(src):
            if src is None:
                return None
            kind, ref = src
            if kind == "in":
                return self.dev(arrays[ref])
            return host_vals[ref] if kind == "host" else self.const(ref)
        for kern, refs, _ in prog.host:
            host_vals.extend(kern(*(get(r) for r in refs)))
        bufs = []
        for role, src, shape, dtype in prog.slots:
            if role == isa.Role.INPUT:
                x = get(src)
                if not (isinstance(x, cp.ndarray) and x.dtype == dtype and x.flags.c_contiguous):
                    x = cp.ascontiguousarray(x, dtype=dtype)
                bufs.append(x)  # the VM takes any C-contiguous array of the slot's size
            else:
                bufs.append(cp.empty(shape, dtype))
        self.vm.launch(prog.code, bufs)
        outs = []
        for src, shape in prog.outputs:
            if src[0] == "slot":
                b = bufs[src[1]]
                outs.append(b if b.shape == shape else b.reshape(shape))
            elif src[0] == "const":
                outs.append(cp.array(src[1]).reshape(shape))
            else:
                outs.append(get(src).reshape(shape))
        return outs


class HostBackend:
    """Wraps a host backend in a GPU session: device arrays reaching it are copied to the host first."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    @property
    def shape_fallbacks(self) -> dict:
        return getattr(self.inner, "shape_fallbacks", {})

    def supports(self, node: Node) -> bool:
        return self.inner.supports(node)

    def compile(self, node: Node, run_graph=None):
        kernel = self.inner.compile(node, run_graph)
        return lambda *arrays: kernel(*[to_host(a) for a in arrays])


# the large trial runs at setup: every symbolic dim at each size, where the inputs stay within WARM_MAX_ELEMS
# elements (a [batch, seq] model gets 128 x 128, not 512 x 512); a trial the graph cannot run is skipped
WARM_SIZES = (128, 512)
WARM_MAX_ELEMS = 1 << 16


def warm(session, executor, backends) -> None:
    """At session setup: run the session on trial inputs (zeros; each pattern of the symbolic dims being 1 or
    more, see symbol_patterns), then forget what those runs encoded and cached. The one-time costs of a
    process's first GPU runs (cuBLAS and CuPy kernels loaded for each broadcasting pattern, each kernel's first
    launch, the first copies back to the host) are paid at setup, and every real shape still encodes as a new
    one. A trial the graph cannot run (a dim it needs larger, a data-dependent shape) is skipped."""
    from framework.ir import TensorType
    shapes = {}
    for v in executor.graph.inputs:
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None or t.dtype is None:
            return
        shapes[v.name] = (t.shape, t.dtype)
    syms = sorted({str(d) for shape, _ in shapes.values() for d in shape if not isinstance(d, int)})
    try:
        # the patterns at small sizes, then every symbol at each WARM_SIZES entry: cuBLAS loads a kernel the
        # first time a product reaches a bigger size class (a seq-256 transformer call once took 9.5 ms,
        # the other new lengths 3-4)
        trials = (symbol_patterns(syms, base=2) or [{}]) + [{s: n for s in syms} for n in WARM_SIZES if syms]
        for sizes in trials:
            feed = {name: np.zeros(tuple(d if isinstance(d, int) else sizes.get(str(d), 2) for d in shape), dt)
                    for name, (shape, dt) in shapes.items()}
            if sum(a.size for a in feed.values()) > WARM_MAX_ELEMS:
                continue
            try:
                session.run(None, feed)
            except Exception:  # noqa: BLE001 - a trial that cannot run leaves the session as it was
                pass
        _cupy().cuda.Device().synchronize()
    finally:
        for st in executor.steps:
            cache = getattr(st.kernel, "cache", None)
            if isinstance(cache, dict):
                cache.clear()
        executor.forget_shapes()
        for b in backends:
            if isinstance(b, GpuDvmBackend):
                b.encode_times.clear()
                b.shape_fallbacks.clear()


def gpu_backends(jit_level: str, graph_kernel_flags: str = "") -> tuple:
    """The backends of a device='gpu' session: the GPU first, then the CPU ones behind HostBackend."""
    from framework.backends import backends_for
    return (GpuDvmBackend(), *(HostBackend(b) for b in backends_for(jit_level, graph_kernel_flags)))
