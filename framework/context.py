"""Global defaults in MindSpore's style: set_context(mode=GRAPH_MODE, jit_level="O0")."""
from __future__ import annotations

from .errors import ContextError

GRAPH_MODE = 0
PYNATIVE_MODE = 1
MODES = {"graph": GRAPH_MODE, "pynative": PYNATIVE_MODE}
JIT_LEVELS = ("O0", "O1")
DEVICES = ("cpu", "gpu")

_context = {"mode": GRAPH_MODE, "jit_level": "O0", "graph_kernel_flags": "", "device": "cpu"}


def normalize_mode(mode) -> int:
    if isinstance(mode, str) and mode.lower() in MODES:
        return MODES[mode.lower()]
    if mode in (GRAPH_MODE, PYNATIVE_MODE):
        return mode
    raise ContextError(f"mode must be 'graph', 'pynative', GRAPH_MODE or PYNATIVE_MODE, not {mode!r}")


def normalize_jit_level(level) -> str:
    if level not in JIT_LEVELS:
        raise ContextError(f"jit_level must be one of {JIT_LEVELS}, not {level!r}")
    return level


def normalize_device(device) -> str:
    """'cpu' or 'gpu'; 'gpu' needs CuPy and a CUDA device (dvm_runtime.gpu), else a ContextError says why."""
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ContextError(f"device must be one of {DEVICES}, not {device!r}")
    device = device.lower()
    if device == "gpu":
        from dvm_runtime.gpu import why_unavailable  # lazy: the framework does not need the GPU package
        why = why_unavailable()
        if why:
            raise ContextError(f"device='gpu' is not available here: {why}")
    return device


def set_context(**options) -> None:
    """Set process-wide defaults for new sessions: mode, jit_level, graph_kernel_flags, device."""
    for key, value in options.items():
        if key == "mode":
            _context["mode"] = normalize_mode(value)
        elif key == "jit_level":
            _context["jit_level"] = normalize_jit_level(value)
        elif key == "graph_kernel_flags":
            _context["graph_kernel_flags"] = str(value)
        elif key == "device":
            _context["device"] = normalize_device(value)
        else:
            raise ContextError(f"unknown context option {key!r}; known: mode, jit_level, graph_kernel_flags, "
                               "device")


def get_context(key: str):
    if key not in _context:
        raise ContextError(f"unknown context option {key!r}")
    return _context[key]
