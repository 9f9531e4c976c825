"""A generated kernel as data (`KernelSpec`: steps, constants, C source) and its runner (`Kernel`): host steps
run the op's registered numpy kernel (MatMul on BLAS, views), C steps call the compiled stage functions."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

import numpy as np

from framework.errors import KernelError, MsgxError

CC = os.environ.get("CC", "gcc")
# no -ffast-math: exact IEEE semantics and no flush-to-zero set for the whole process
CFLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp", "-fno-math-errno",
          "-fno-trapping-math", "-std=gnu11", "-shared", "-fPIC")
ALLOWED_SYMBOLS = {"malloc", "free", "calloc", "memcpy", "memset", "memmove", "__stack_chk_fail", "abort",
                   "__cxa_finalize", "__gmon_start__", "_ITM_registerTMCloneTable",
                   "_ITM_deregisterTMCloneTable",
                   "__assert_fail"}
MATH = {"exp", "log", "tanh", "sqrt", "sin", "cos", "floor", "ceil", "erf", "pow", "fabs", "expm1", "log1p",
        "fmax", "fmin", "round", "trunc", "lround", "exp2", "log2", "tan", "atan", "sinh", "cosh", "fmod",
        "hypot",
        "nearbyint", "rint", "cbrt", "atan2", "asin", "acos", "copysign", "ldexp", "frexp"}
ALLOWED_SYMBOLS |= MATH | {m + "f" for m in MATH}
KIND_OF_SYMBOL = {"file access": ("open", "fopen", "fclose", "creat", "write", "fwrite", "unlink", "remove",
                                  "rename",
                                  "fputs", "fprintf", "mkdir", "truncate", "ftruncate"),
                  "network access": ("socket", "connect", "bind", "send", "sendto", "getaddrinfo", "listen"),
                  "process control": ("system", "fork", "execve", "execl", "execvp", "popen", "kill",
                                      "dlopen",
                                      "syscall", "ptrace", "mprotect", "mmap")}


class CompileError(MsgxError):
    """The C compiler rejected a candidate (names the compiler and the first error line)."""


@dataclass
class KernelSpec:
    """Everything needed to run a generated kernel; picklable, so the sandbox child can run it too."""

    inputs: list[int]
    outputs: list[int]
    steps: list
    consts: dict = field(default_factory=dict)
    source: str = ""
    generator: str = "offline"
    variant: str = ""
    types: dict = field(default_factory=dict)  # value id -> (shape, dtype str)


@functools.lru_cache(maxsize=None)
def compiler_id() -> str:
    """The compiler's version line (part of every cache key)."""
    try:
        out = subprocess.run([CC, "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.split("\n")[0]
    except (OSError, subprocess.SubprocessError):
        return "none"


def forbidden_symbols(so_path) -> list[str]:
    """Undefined dynamic symbols outside the allow-list (libm, allocation, OpenMP), with their kind."""
    nm = shutil.which("nm")
    if nm is None:
        return ["cannot inspect symbols: nm not found"]
    out = subprocess.run([nm, "-D", "--undefined-only", str(so_path)], capture_output=True, text=True).stdout
    bad = []
    for line in out.splitlines():
        sym = line.split()[-1].split("@")[0]
        if sym in ALLOWED_SYMBOLS or sym.startswith(("GOMP_", "omp_")):
            continue
        kind = next((k for k, names in KIND_OF_SYMBOL.items() if sym.rstrip("64") in names or sym in names),
                    "a call outside the allowed runtime")
        bad.append(f"{kind}: calls {sym}")
    return sorted(bad, key=lambda b: b.startswith("a call outside"))


def compile_c(source: str, cache=None) -> str:
    """Compile into the shared disk cache ("agent" namespace) and return the verified .so path."""
    from framework.disk_cache import DiskCache, cache_key
    cache = cache or DiskCache("agent")
    key = cache_key("agent-c", source, CC, compiler_id(), CFLAGS)
    path = cache.get_path(key, ".so")
    if path is not None:
        return str(path)
    with tempfile.TemporaryDirectory(prefix="msgx-agent-") as tmp:
        src, so = os.path.join(tmp, "k.c"), os.path.join(tmp, "k.so")
        with open(src, "w") as f:
            f.write(source)
        try:
            r = subprocess.run([CC, *CFLAGS, "-o", so, src, "-lm"], capture_output=True, text=True,
                               timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            raise CompileError(f"{CC} failed to run: {e}") from e
        if r.returncode != 0:
            first = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr[:300])
            raise CompileError(f"{CC} rejected the candidate: {first}")
        with open(so, "rb") as f:
            data = f.read()
    return str(cache.put(key, data, ".so"))


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def _load(so_path: str) -> ctypes.CDLL:
    """Load a kernel with OMP_WAIT_POLICY=passive in the environment (unless the user set a policy): libgomp
    reads it once, when the first kernel brings it into the process. Its default, spinning at barriers, made
    2-thread kernels on a busy 2-core machine wait a scheduler slice for a worker queued behind the spinning
    thread: 10-17 ms a call instead of 0.2-0.4 ms (measured). The sandbox's timing runs use the same policy."""
    if "OMP_WAIT_POLICY" in os.environ:
        return ctypes.CDLL(so_path)
    os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        return ctypes.CDLL(so_path)
    finally:
        del os.environ["OMP_WAIT_POLICY"]


def _address(a: np.ndarray) -> int:
    """The data address of a contiguous array. ctypes' from_buffer costs a third of __array_interface__
    (a per-call cost that shows on kernels of tens of microseconds) but needs a writable, non-empty buffer."""
    if a.flags.writeable and a.size:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    return a.__array_interface__["data"][0]


class Kernel:
    """Callable: kernel(*arrays) -> list of output arrays. `alloc(shape, dtype)` makes the C outputs."""

    def __init__(self, spec: KernelSpec, so_path: str | None = None, alloc=None):
        self.spec, self.so_path = spec, so_path
        self.alloc = alloc or (lambda shape, dtype: np.empty(shape, dtype))
        self.lib = _load(so_path) if so_path else None
        self.plan = []
        from framework import ops
        for st in spec.steps:
            if st[0] == "host":
                _, op, domain, opset, attrs, ins, outs = st
                opdef = ops.get(op, domain, opset)
                ctx = ops.Ctx({**opdef.attrs, **attrs}, len(outs), opset, op)
                self.plan.append(("host", opdef.ref, ctx, ins, outs))
            else:
                _, fname, ins, outs = st
                fn = getattr(self.lib, fname)
                fn.restype, fn.argtypes = ctypes.c_int, [ctypes.POINTER(ctypes.c_void_p)]
                types = [(tuple(spec.types[i][0]), np.dtype(spec.types[i][1])) for i in ins + outs]
                self.plan.append(("c", fn, (types, ctypes.c_void_p * len(types)), ins, outs))
        if len(self.plan) == 1 and self.plan[0][0] == "c" and self.plan[0][3] == spec.inputs \
                and self.plan[0][4] == spec.outputs:
            self._fast = self.plan[0][1:3]  # one C function on the inputs: skip the step interpreter

    _fast = None

    def _call_c(self, fn, meta, ins):
        types, ptr_type = meta
        n_in = len(ins)
        bufs = []
        for (shape, dtype), a in zip(types, ins):
            if type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
                a = np.ascontiguousarray(a, dtype)
            if a.shape != shape and a.size != int(np.prod(shape)):
                raise KernelError(f"agent kernel: input of shape {a.shape} where {shape} was compiled")
            bufs.append(a)
        outs = [self.alloc(shape, dtype) for shape, dtype in types[n_in:]]
        ptrs = ptr_type(*[_address(b) for b in bufs + outs])
        if fn(ptrs) != 0:
            raise KernelError("agent kernel: an index input is out of range")
        return outs

    def __call__(self, *arrays):
        if self._fast is not None and len(arrays) == len(self.spec.inputs):
            return self._call_c(*self._fast, arrays)
        env = dict(self.spec.consts)
        if len(arrays) != len(self.spec.inputs):
            raise KernelError(f"agent kernel takes {len(self.spec.inputs)} inputs, got {len(arrays)}")
        for i, a in zip(self.spec.inputs, arrays):
            env[i] = a
        for kind, fn, meta, ins, outs in self.plan:
            if kind == "host":
                r = fn(meta, *[env[i] for i in ins])
                r = r if isinstance(r, (tuple, list)) else (r,)
                for o, a in zip(outs, r):
                    env[o] = np.asarray(a)
                continue
            for o, a in zip(outs, self._call_c(fn, meta, [env[i] for i in ins])):
                env[o] = a
        return [env[o] for o in self.spec.outputs]
