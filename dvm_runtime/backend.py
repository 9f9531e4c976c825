"""DvmBackend: runs Fused nodes through the DVM (the C VM when built and working, else the numpy VM).

Each kernel encodes once per input-shape signature (plus the values of inputs used as Reshape targets) and
reuses the bytecode afterwards; a body the encoder cannot express is declined in supports().
"""
from __future__ import annotations

import collections
import functools
import itertools
import time

import numpy as np

from framework.ir import Node
from framework.ops.gemm import cpu_threads
from framework.profiler import compile_event

from . import encoder, isa

DTYPES = frozenset(isa.NUMPY_DTYPE.values())
CACHE_MAX = 256  # shape signatures kept per kernel
ENCODE_TIMES_KEPT = 4096  # the latest encode times, for stats and tests


def _c_run():
    """dvm_runtime.cvm.run if the extension imports, matches isa.py and runs a smoke program; else None."""
    try:
        from . import cvm
        if not cvm.available():
            return None
        x, out = np.arange(5, dtype=np.float32), np.empty(5, np.float32)
        code = [isa.MAGIC, isa.VERSION, 0, 4, 2, 1, 1, 5, 1, 1, 1, 5, 0, 0, 0, 0,
                int(isa.DType.F32) | int(isa.Role.INPUT) << 8, 5,
                int(isa.DType.F32) | int(isa.Role.OUTPUT) << 8, 5,
                isa.word0(isa.Opcode.LOAD, isa.DType.F32, 0, 0, 0), 0,
                isa.word0(isa.Opcode.ADD_IMM, isa.DType.F32, 0, 0, 0), isa.imm_bits(1.0, isa.DType.F32),
                isa.word0(isa.Opcode.STORE, isa.DType.F32, 0, 1, 0), 0, isa.word0(isa.Opcode.END)]
        code[2] = len(code)
        cvm.run(np.array(code, np.uint64), [x, out])
        if not np.array_equal(out, x + 1):
            return None
        # the extension itself, not cvm.run: the kernel converts its BytecodeError (one frame less per call)
        ext, threads = cvm.extension(), cpu_threads()
        run = functools.partial(ext.run, nthreads=threads)
        # a kernel's program is validated and decoded once, then only its buffers are checked per call
        run.prepare = lambda code, convert=None: ext.Program(code, convert, threads)
        run.converts = True  # prepare takes convert(array, slot), which the VM calls on inputs it cannot take
        return run
    except Exception:  # noqa: BLE001 - a missing or broken extension: the numpy VM takes over
        return None


def _c_error() -> type:
    """The C VM's exception type (an exception no program raises when the extension is missing)."""
    from . import cvm
    return cvm.extension().BytecodeError if cvm.available() else _NeverRaised


class _NeverRaised(Exception):
    pass


@functools.lru_cache(maxsize=None)
def _signature(n: int):
    """(a0, ..., a{n-1}) -> (a0.shape, a0.dtype, a1.shape, ...): a kernel's cache key, as one generated
    expression (a generator over the arrays cost a microsecond per call, a real share of a small kernel's
    time), flat (a tuple per array was one more object for each cached key to create and the GC to walk)."""
    names = [f"a{i}" for i in range(n)]
    return eval(f"lambda {', '.join(names)}: ({''.join(f'{a}.shape, {a}.dtype, ' for a in names)})")


def _shape_inputs(body) -> set[int]:
    """Indices of body inputs read as shape/axes operands (their values become part of the cache key)."""
    idx = {v: i for i, v in enumerate(body.inputs)}
    out = set()
    for n in body.nodes:
        if n.op in encoder.SHAPE_OPERAND_OPS or n.op in encoder.REDUCE:
            if len(n.inputs) > 1 and n.inputs[1] in idx:
                out.add(idx[n.inputs[1]])
    return out


class DvmBackend:
    """Backend protocol: name, supports(node), compile(node, run_graph) -> kernel(*arrays) -> list."""

    name = "dvm"

    def __init__(self, vm: str = "auto"):
        if vm not in ("auto", "c", "numpy"):
            raise ValueError(f"vm must be 'auto', 'c' or 'numpy', got {vm!r}")
        from . import pyvm
        crun = _c_run() if vm != "numpy" else None
        if vm == "c" and crun is None:
            from framework.errors import MsgxError
            raise MsgxError("the DVM C extension (dvm_runtime.cvm) is not available")
        self.vm = "c" if crun is not None else "numpy"
        self._run = crun or pyvm.run
        # bounded: a long-lived session re-encodes shapes evicted from the per-kernel caches, forever
        self.encode_times: collections.deque[float] = collections.deque(maxlen=ENCODE_TIMES_KEPT)
        self.shape_fallbacks: dict[str, str] = {}  # kernels the encoder declined for one shape, with why
        self._bodies: list = []  # fused bodies compiled since the last finish()

    def supports(self, node: Node) -> bool:
        return encodable(node)

    def finish(self) -> None:
        """At session setup (graph mode): the templates of every body compiled so far, per symbol pattern."""
        for body in self._bodies:
            encode_patterns(body)
        self._bodies.clear()

    def compile(self, node: Node, run_graph=None):
        body, run, times, fallbacks = node.attrs["body"], self._run, self.encode_times, self.shape_fallbacks
        if _symbols(body):  # dynamic shapes: finish() encodes its templates (PyNative's bodies are concrete)
            self._bodies.append(body)
        shape_in = sorted(_shape_inputs(body))
        cache: dict = {}  # key -> the program's bound run(*arrays)
        # key -> its bytecode, for listing(): only the bound run(*arrays) and the code outlive an encode, so a new
        # shape leaves few objects for the garbage collector to walk
        codes: dict = {}
        signature = _signature(len(node.inputs))
        c_error = _c_error()

        def key_of(arrays) -> tuple:
            key = signature(*arrays)
            if shape_in:
                key += tuple(tuple(np.asarray(arrays[i]).reshape(-1).tolist()) for i in shape_in)
            return key

        def kernel(*arrays):
            key = key_of(arrays)
            run_program = cache.get(key)  # the program's bound run(*arrays): one call less than prog.run
            if run_program is None:
                t0 = time.perf_counter()
                try:
                    prog = encoder.encode(body, [a.shape for a in arrays], [a.dtype for a in arrays],
                                          {i: arrays[i] for i in shape_in})
                except encoder.UnsupportedError as e:  # this shape only (rows too long...): the reference runs it
                    prog = _Reference(node, run_graph)
                    fallbacks[node.name or "cluster"] = \
                        f"shape {tuple(a.shape for a in arrays)} ran on the reference: {e}"
                times.append(time.perf_counter() - t0)
                compile_event(f"encode {node.name or 'cluster'}", "encode", times[-1], t0,
                              input_shapes=[list(a.shape) for a in arrays], backend="dvm",
                              reference=isinstance(prog, _Reference))
                if len(cache) >= CACHE_MAX:
                    oldest = next(iter(cache))
                    del cache[oldest]
                    codes.pop(oldest, None)
                run_program = cache[key] = prog.runner(run)
                if not isinstance(prog, _Reference):
                    codes[key] = prog.code
            try:
                return run_program(*arrays)
            except c_error as e:
                from .cvm import BytecodeError
                raise BytecodeError(f"bad DVM program: {e}") from None

        def specialize(*arrays):
            """The kernel for later calls with arrays of this signature (and shape-operand values): the
            program a call with them encoded, bound, without the per-call signature and cache lookup (0.7 µs
            of a small kernel's 3). A buffer the VM rejects then surfaces as its own BytecodeError."""
            return cache.get(key_of(arrays), kernel)
        kernel.cache, kernel.codes, kernel.specialize = cache, codes, specialize
        return kernel

    def listing(self, node: Node, kernel=None) -> dict[str, str]:
        """Disassembly of the bytecode encoded so far for `kernel` (per shape), else of a trial encode."""
        from .disasm import disasm
        progs = list(getattr(kernel, "codes", {}).items())
        if not progs:
            shapes, dtypes, values = _trial(node.attrs["body"])
            key = tuple(itertools.chain(*zip(shapes, dtypes)))  # the kernel cache's key layout
            progs = [(key, encoder.encode(node.attrs["body"], shapes, dtypes, values))]
        n = len(node.inputs)
        return {"DVM bytecode, inputs " + ", ".join(f"{list(s)}" for s in key[:2 * n:2]): disasm(prog)
                for key, prog in progs}


def encodable(node: Node, target: str = "cpu") -> bool:
    """Fused nodes whose ops and dtypes the DVM has and whose body encodes (for `target`) at a trial binding
    of its dims."""
    if node.op != "Fused" or node.domain != "msgx" or "body" not in node.attrs:
        return False
    body = node.attrs["body"]
    if any(n.op not in encoder.SUPPORTED_OPS for n in body.nodes):
        return False
    for v in list(body.inputs) + [o for n in body.nodes for o in n.outputs]:
        if getattr(v.type, "dtype", None) not in DTYPES or getattr(v.type, "shape", None) is None:
            return False
    try:
        encoder.encode(body, *_trial(body), target=target)
    except Exception:  # noqa: BLE001 - anything the encoder cannot express is declined, not fatal
        return False
    return True


PATTERN_SYMBOLS = 3  # bodies with at most this many symbolic dims get all their templates at setup


def symbol_patterns(syms: list[str], base: int) -> list[dict[str, int]]:
    """Trial sizes for each pattern of the symbols being 1 or more (1 changes broadcasting, and the encoder's
    templates and CuPy's and cuBLAS's paths with it), the others distinct from base up; none for no symbols
    or more than PATTERN_SYMBOLS of them."""
    if not syms or len(syms) > PATTERN_SYMBOLS:
        return []
    return [{s: 1 if one else base + 2 * i for i, (s, one) in enumerate(zip(syms, ones))}
            for ones in itertools.product((True, False), repeat=len(syms))]


def encode_patterns(body, target: str = "cpu") -> None:
    """Encode `body` once per pattern of its symbolic dims (see symbol_patterns), so the encoder's templates
    exist before the first call and a new shape only refills sizes (a full encode of a big body took
    milliseconds; a refill, about 100 µs)."""
    for sizes in symbol_patterns(_symbols(body), base=6):
        try:
            encoder.encode(body, *_trial(body, sizes), target=target)
        except Exception:  # noqa: BLE001 - as in encodable(): that pattern meets the same error, if ever
            pass


def _symbols(body) -> list[str]:
    """The names of the symbolic dims of a body's inputs, sorted."""
    import sympy
    return sorted({str(s) for v in body.inputs for d in v.type.shape if isinstance(d, sympy.Expr)
                   for s in d.free_symbols})


def _trial(body, sizes: dict | None = None):
    """Concrete shapes (symbols bound to small distinct integers, or to sizes[symbol name] where given) and
    Reshape-operand values for a trial."""
    import sympy
    syms = sorted({s for v in body.inputs for d in v.type.shape if isinstance(d, sympy.Expr)
                   for s in d.free_symbols}, key=str)
    bind = {s: (sizes or {}).get(str(s), 5 + 2 * i) for i, s in enumerate(syms)}

    def conc(shape):
        return tuple(int(d.subs(bind)) if isinstance(d, sympy.Expr) else int(d) for d in shape)
    shapes = [conc(v.type.shape) for v in body.inputs]
    values = {}
    for i in _shape_inputs(body):
        user = next(n for n in body.nodes if len(n.inputs) > 1 and n.inputs[1] is body.inputs[i])
        values[i] = np.array(conc(user.outputs[0].type.shape), np.int64) if user.op in ("Reshape", "Expand") else \
            np.zeros(shapes[i], np.int64)
    return shapes, [v.type.dtype for v in body.inputs], values


class _Reference:
    """Stands in for a Program where one shape signature cannot be encoded."""

    def __init__(self, node, run_graph):
        from framework.backends import NUMPY
        self.kernel = NUMPY.compile(node, run_graph)

    def runner(self, _vm):
        return self.kernel
