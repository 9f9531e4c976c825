"""The C VM (extension dvm_runtime._cvm): available() says whether it can be used, why_unavailable() why not.

The extension is refused when its compiled-in ISA digest differs from isa.py's current c_header() (a stale
build), so Python and C never disagree about opcodes. Bad programs raise BytecodeError, a pyvm.DvmError.
"""
from __future__ import annotations

import hashlib
import os

from .pyvm import DvmError

_BUILD_ERROR = os.path.join(os.path.dirname(__file__), "_cvm_build_error.txt")


class BytecodeError(DvmError, ValueError):
    """A program, or the buffers given for it, failed the C VM's validation; nothing ran."""


def _load():
    try:
        from . import _cvm
    except ImportError as exc:
        why = f"extension dvm_runtime._cvm is not built ({exc})"
        if os.path.exists(_BUILD_ERROR):
            with open(_BUILD_ERROR, encoding="utf-8") as f:
                why += "; " + f.read().strip()
        return None, why + "; rebuild with `pip install -e .` (needs a C compiler)"
    from .isa import c_header
    want = hashlib.sha256(c_header().encode()).hexdigest()[:16]
    if _cvm.ISA_DIGEST != want:
        return None, (f"dvm_runtime._cvm was built for ISA {_cvm.ISA_DIGEST}, isa.py is now {want}: "
                      "rebuild with `pip install -e .`")
    return _cvm, ""


_mod, _why = _load()


def extension():
    """The compiled module itself (its run raises its own BytecodeError); None when unavailable."""
    return _mod


def available() -> bool:
    """True when the compiled VM is importable and matches isa.py."""
    return _mod is not None


def why_unavailable() -> str:
    """Why the C VM cannot be used ('' when it can)."""
    return _why


def cpu_count() -> int:
    """Threads the VM uses when nthreads is None."""
    return _mod.cpu_count() if _mod is not None else (os.cpu_count() or 1)


def stream_bytes(bytes_: int | None = None) -> int:
    """The data size (bytes, all of a program's buffers) from which the program's STOREs into buffers of at
    least 1/8 of it bypass the caches (non-temporal); with an argument, sets it for programs decoded from then
    on (<= 0: the default, half the last-level cache, at least 16 MiB; $MSGX_STREAM_BYTES sets the
    default)."""
    if _mod is None:
        raise RuntimeError(f"the DVM C VM is unavailable: {_why}")
    return _mod.stream_bytes() if bytes_ is None else _mod.stream_bytes(int(bytes_))


def validate(program) -> dict:
    """Validate a program without running it: {'ntiles', 'arena_bytes', 'n_instr', 'fused', 'softmax',
    'expands', 'streams'} or BytecodeError ('fused': instruction groups the VM runs as one kernel on this
    machine, 'softmax' of them softmax's four steps a row at a time; 'expands': instructions that first copy
    a scalar or a repeated row out to a whole tile; 'streams': STOREs that bypass the caches (stream_bytes))."""
    if _mod is None:
        raise RuntimeError(f"the DVM C VM is unavailable: {_why}")
    try:
        return _mod.validate(program)
    except _mod.BytecodeError as exc:
        raise BytecodeError(f"bad DVM program: {exc}") from None


def run(program, buffers, nthreads: int | None = None) -> None:
    """Validate `program` (uint64 words) and its `buffers` (one C-contiguous array per slot), then run it.

    Outputs are written in place; the GIL is released while tiles run on `nthreads` threads (default: all
    CPUs).
    """
    if _mod is None:
        raise RuntimeError(f"the DVM C VM is unavailable: {_why}")
    try:
        _mod.run(program, buffers, nthreads)
    except _mod.BytecodeError as exc:
        raise BytecodeError(f"bad DVM program: {exc}") from None

