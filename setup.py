"""Builds the optional C VM extension `dvm_runtime._cvm`; all other metadata lives in pyproject.toml.

The build first writes dvm_runtime/csrc/dvm_isa.h from dvm_runtime/isa.py's c_header(), so opcodes are
defined once. A digest of that header is compiled in; dvm_runtime.cvm refuses a stale build. If the
compiler is missing or the build fails, the install still succeeds and the numpy VM is used instead.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("dvm_runtime", "csrc")
ERROR_FILE = os.path.join(ROOT, "dvm_runtime", "_cvm_build_error.txt")


def isa_header() -> str:
    """c_header() of dvm_runtime/isa.py, loaded by path so the package __init__ is not imported."""
    spec = importlib.util.spec_from_file_location("_dvm_isa_for_build", os.path.join(ROOT, "dvm_runtime",
                                                                                  "isa.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class body runs
    try:
        spec.loader.exec_module(mod)
        return mod.c_header()
    finally:
        sys.modules.pop(spec.name, None)


def header_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_if_changed(path: str, text: str) -> None:
    # Rewriting an unchanged header would force a rebuild of every object on each install.
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


class OptionalBuildExt(build_ext):
    """Generates the ISA header, then compiles; on any failure records why and lets the install go on."""

    def run(self):
        try:
            text = isa_header()
            write_if_changed(os.path.join(ROOT, CSRC, "dvm_isa.h"), text)
            for ext in self.extensions:
                ext.define_macros.append(("DVM_ISA_DIGEST", f'"{header_digest(text)}"'))
            super().run()
        except Exception as exc:  # noqa: BLE001 - a compiler error may surface as any setuptools error
            self._record_failure(exc)
        else:
            if os.path.exists(ERROR_FILE):
                os.remove(ERROR_FILE)

    def build_extension(self, ext):
        if ext.name != CKERNELS:
            return super().build_extension(ext)
        try:  # optional too, and independent of the VM: framework falls back to its numpy conv/pool kernels
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - a compiler error may surface as any setuptools error
            print(f"WARNING: building {CKERNELS} failed ({type(exc).__name__}: {exc}); the numpy conv/pool "
                  "kernels will be used", file=sys.stderr)

    def _record_failure(self, exc: BaseException) -> None:
        msg = f"building dvm_runtime._cvm failed: {type(exc).__name__}: {exc}"
        print(f"WARNING: {msg}; the numpy VM will be used", file=sys.stderr)
        try:
            with open(ERROR_FILE, "w", encoding="utf-8") as f:
                f.write(msg + "\n")
        except OSError:
            pass


def numpy_include() -> list[str]:
    """numpy's C headers (the VM reads arrays' fields directly); none where numpy is missing, which fails only
    the optional VM build (numpy is a build requirement in pyproject.toml)."""
    try:
        import numpy
    except ImportError:
        return []
    return [numpy.get_include()]


def cvm_extension() -> Extension:
    sources = sorted(os.path.join(CSRC, f) for f in os.listdir(os.path.join(ROOT, CSRC)) if f.endswith(".c"))
    flags, libs = [], []
    if not sysconfig.get_platform().startswith("win"):
        # No -ffast-math (NaN/Inf must stay IEEE) and no -march=native (the wheel may run elsewhere);
        # AVX2 (and, for float32 math, AVX-512) code paths come from target_clones in the sources; no FMA
        # contraction, so every machine (and the numpy VM) computes the same float32 roundings.
        flags = ["-O3", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off",
                 "-fopenmp-simd", "-pthread", "-Wall", "-Wno-unknown-pragmas"]
        libs = ["m"]
    return Extension("dvm_runtime._cvm", sources=sources, include_dirs=[CSRC] + numpy_include(),
                     extra_compile_args=flags, extra_link_args=["-pthread"] if flags else [], libraries=libs,
                     depends=[os.path.join(CSRC, f) for f in os.listdir(os.path.join(ROOT, CSRC))
                              if f.endswith(".h")])


CKERNELS = "framework._ckernels"


def ckernels_extension() -> Extension:
    """framework._ckernels: float32 depthwise conv / im2col / pooling loops (framework/ops/nn_ckernels.py),
    row kernels (LayerNorm, softmax, erf: framework/ops/row_ckernels.py), which share the DVM's vm_math.h, the
    conv / max-pool backward (framework/ops/nn_ckernels.py) and the GEMM (framework/ops/gemm.py), which runs
    on a copy of the DVM's thread pool (vm_pool.c: this extension must not need the VM's)."""
    windows = sysconfig.get_platform().startswith("win")
    flags = [] if windows else \
        ["-O3", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-pthread", "-Wall"]
    src = os.path.join("framework", "csrc")
    sources = [os.path.join(src, f) for f in ("ckernels.c", "convdirect.c", "convgemm.c", "rowops.c",
                                              "gradops.c", "gemm.c", "matmul.c", "callptr.c")]
    return Extension(CKERNELS, sources=sources + [os.path.join(CSRC, "vm_pool.c")],
                     include_dirs=[src, CSRC], extra_compile_args=flags,
                     extra_link_args=[] if windows else ["-pthread"],
                     depends=[os.path.join(src, f) for f in ("ckernels.h", "gemm.h")] +
                             [os.path.join(CSRC, f) for f in ("vm_math.h", "vm_pool.h")])


setup(ext_modules=[ckernels_extension(), cvm_extension()], cmdclass={"build_ext": OptionalBuildExt})
