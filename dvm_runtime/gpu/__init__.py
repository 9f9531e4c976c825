"""DVM on NVIDIA GPUs: the same bytecode run by a CUDA interpreter compiled once per process (needs CuPy).

Nothing here imports CuPy at module import: `available()` / `why_unavailable()` probe it on first use.
"""
from __future__ import annotations

_WHY: list = []


def why_unavailable() -> str:
    """Why the GPU path cannot run here ('' when it can): no CuPy, no CUDA driver or no device."""
    if not _WHY:
        try:
            import cupy
            n = cupy.cuda.runtime.getDeviceCount()
            _WHY.append("" if n > 0 else "no CUDA device is visible")
        except Exception as e:  # noqa: BLE001 - ImportError, no driver, a broken install: all mean "no"
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            _WHY.append(f"no CUDA device / CuPy ({type(e).__name__}: {msg})")
    return _WHY[0]


def available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    return why_unavailable() == ""
