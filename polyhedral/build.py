"""Compile generated C into the shared content-addressed cache (framework.disk_cache, namespace "poly") and
load it with ctypes. A missing or failing compiler is a CompilerError; the backend falls back on it."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from framework.disk_cache import DiskCache, cache_key
from framework.errors import MsgxError

# reassociation lets reductions vectorise (sum order is unspecified in ONNX; numpy sums pairwise too);
# -fopenmp for `omp simd` (threads come from the generated code's own pool, see codegen.PRELUDE)
FLAGS = ("-O3", "-march=native", "-fopenmp", "-pthread", "-fPIC", "-shared", "-fno-math-errno",
         "-fno-trapping-math", "-fno-signed-zeros", "-fassociative-math")
COMPILES = {"count": 0}  # compiler invocations in this process (tests check that a warm cache makes none)
_LOCK = threading.Lock()
_VERSIONS: dict[str, str] = {}


class CompilerError(MsgxError):
    """No C compiler was found, or it rejected the generated code."""


def compiler() -> str:
    """$MSGX_CC, else gcc, else cc, as a path; CompilerError when none is installed."""
    for name in (os.environ.get("MSGX_CC"), "gcc", "cc"):
        if name:
            path = shutil.which(name)
            if path:
                return path
            if name == os.environ.get("MSGX_CC"):
                raise CompilerError(f"the C compiler named by MSGX_CC ({name!r}) is not installed")
    raise CompilerError("no C compiler (gcc or cc) is installed; set MSGX_CC to one")


def _version(cc: str) -> str:
    if cc not in _VERSIONS:
        try:
            out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
            _VERSIONS[cc] = out.stdout.splitlines()[0] if out.stdout else cc
        except (OSError, subprocess.SubprocessError) as e:
            raise CompilerError(f"C compiler {cc!r} does not run: {e}") from None
    return _VERSIONS[cc]


def shared_library(source: str, flags: tuple[str, ...] = FLAGS, cache: DiskCache | None = None,
                   cc: str | None = None, libs: tuple[str, ...] = ()) -> Path:
    """The path of a verified .so built from `source` (cache hit: no compiler run)."""
    cc = cc or compiler()
    cache = cache or DiskCache("poly")
    key = cache_key(source, _version(cc), flags, libs)
    path = cache.get_path(key, ".so")
    if path is not None:
        return path
    with tempfile.TemporaryDirectory(prefix="msgx-poly-") as tmp:
        src, out = Path(tmp) / "k.c", Path(tmp) / "k.so"
        src.write_text(source)
        with _LOCK:
            COMPILES["count"] += 1
        try:
            proc = subprocess.run([cc, *flags, str(src), "-o", str(out), *libs], capture_output=True,
                                  text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as e:
            raise CompilerError(f"C compiler {cc!r} failed to run: {e}") from None
        if proc.returncode != 0:
            err = "\n".join(proc.stderr.strip().splitlines()[:8])
            raise CompilerError(f"C compiler {cc!r} rejected the generated code (exit {proc.returncode}): "
                                f"{err}")
        return cache.put(key, out.read_bytes(), ".so")


def load(path: Path) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(str(path))
    except OSError as e:
        raise CompilerError(f"cannot load the compiled kernels {str(path)!r}: {e}") from None


class Kernel:
    """A compiled scop function: call with {array name: C-contiguous ndarray} and {scalar: float}."""

    def __init__(self, lib: ctypes.CDLL, fn: str, scop, binding: dict):
        import numpy as np

        self.scop, self.fn_name, self.lib = scop, fn, lib
        self.dtype = np.float64 if scop.dtype == "double" else np.float32
        self.shapes = {a.name: scop.shape(a.name, binding) for a in scop.arrays}
        self.fn = getattr(lib, fn)
        ctype = ctypes.c_double if scop.dtype == "double" else ctypes.c_float
        self.fn.argtypes = [ctypes.c_void_p] * len(scop.arrays) + [ctype] * len(scop.scalars)
        self.fn.restype = None
        self._spare_temps: list[dict] = []
        self._names = [(a.name, a.role == "temp") for a in scop.arrays]
        self._temp_at = [(i, a.name) for i, a in enumerate(scop.arrays) if a.role == "temp"]

    def __call__(self, arrays: dict, scalars: dict | None = None) -> None:
        """The kernel on {name: array}. Scratch (temp) arrays are the kernel's own where the caller passes
        none or one of another shape (the scheduler may have expanded them): a set is kept for the next call
        (no page faults per call), taken off a list so that concurrent calls each get their own."""
        given = [arrays.get(name) if temp else arrays[name] for name, temp in self._names]
        own = None
        for i, name in self._temp_at:
            if given[i] is None or given[i].shape != self.shapes[name]:
                if own is None:
                    own = self._spare_temps.pop() if self._spare_temps else {}
                if name not in own:
                    import numpy as np
                    own[name] = np.empty(self.shapes[name], self.dtype)
                given[i] = own[name]
        try:
            self.call(given, scalars)
        finally:
            if own is not None:
                self._spare_temps.append(own)

    def call(self, arrays: list, scalars: dict | None = None) -> None:
        """The kernel on arrays in the scop's array order."""
        args = []
        for a, x in zip(self.scop.arrays, arrays):
            if x.dtype != self.dtype or x.shape != self.shapes[a.name] or not x.flags.c_contiguous \
                    or (a.role != "in" and not x.flags.writeable):
                raise CompilerError(f"kernel {self.fn_name}: array {a.name} must be a writable C-contiguous "
                                    f"{self.shapes[a.name]} {self.scop.dtype} array, got {x.shape} {x.dtype}")
            args.append(x.ctypes.data)
        args += [float((scalars or {})[s]) for s in self.scop.scalars]
        self.fn(*args)

    def caller(self):
        """f(arrays) -> bool: the kernel on arrays in the scop's array order where each is a C-contiguous array of
        its dtype with its shape's element count (shapes are not checked: the function reads flat memory), else
        False, calling nothing (the caller converts and calls again). Through
        framework._ckernels.call_float32, which checks and takes the addresses in C, where it is built, the
        dtype is float32 and there are no scalars; else through ctypes."""
        import math

        import numpy as np

        from framework.ops.nn_ckernels import _C

        counts = tuple(math.prod(self.shapes[a.name]) for a in self.scop.arrays)
        if _C is not None and self.dtype is np.float32 and not self.scop.scalars and 1 <= len(counts) <= 16:
            address, call = ctypes.cast(self.fn, ctypes.c_void_p).value, _C.call_float32
            return lambda arrays: call(address, counts, *arrays)
        fn, dtype = self.fn, np.dtype(self.dtype)

        def call_ctypes(arrays):
            if not all(x.dtype == dtype and x.size == c and x.flags.c_contiguous for x, c in zip(arrays, counts)):
                return False
            fn(*[x.ctypes.data for x in arrays])
            return True
        return call_ctypes

    def set_threads(self, n: int) -> None:
        self.lib.msgx_poly_threads(ctypes.c_int(int(n)))


_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


def use_shared_pool(lib: ctypes.CDLL) -> bool:
    """Runs the library's parallel loops on the DVM's thread pool (with the GEMMs and DVM kernels of the same
    session) where dvm_runtime._cvm is built; else they keep the library's own pool. Returns which."""
    try:
        from dvm_runtime import _cvm
    except ImportError:
        return False
    lib.msgx_poly_use_pool(ctypes.c_void_p(_capsule_pointer(_cvm._parallel_for, b"dvm_runtime._cvm._parallel_for")))
    return True


def compile_scops(items: list[tuple], cache: DiskCache | None = None, flags: tuple[str, ...] = FLAGS) -> list:
    """One translation unit for many (scop, binding, scheduler Result, function name); returns Kernels (for
    the scops as scheduled: res.scop where the scheduler expanded scratch arrays)."""
    from . import codegen

    src = codegen.translation_unit([codegen.function(s, b, r, fn) for s, b, r, fn in items])
    lib = load(shared_library(src, flags, cache))
    return [Kernel(lib, fn, r.scop or s, b) for s, b, r, fn in items]
