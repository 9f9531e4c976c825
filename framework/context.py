"""Global defaults in MindSpore's style: set_context(mode=GRAPH_MODE, jit_level="O0")."""
from __future__ import annotations

from .errors import ContextError

GRAPH_MODE = 0
PYNATIVE_MODE = 1
MODES = {"graph": GRAPH_MODE, "pynative": PYNATIVE_MODE}
JIT_LEVELS = ("O0", "O1")

_context = {"mode": GRAPH_MODE, "jit_level": "O0", "graph_kernel_flags": ""}


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


def set_context(**options) -> None:
    """Set process-wide defaults for new sessions: mode, jit_level, graph_kernel_flags."""
    for key, value in options.items():
        if key == "mode":
            _context["mode"] = normalize_mode(value)
        elif key == "jit_level":
            _context["jit_level"] = normalize_jit_level(value)
        elif key == "graph_kernel_flags":
            _context["graph_kernel_flags"] = str(value)
        else:
            raise ContextError(f"unknown context option {key!r}; known: mode, jit_level, graph_kernel_flags")


def get_context(key: str):
    if key not in _context:
        raise ContextError(f"unknown context option {key!r}")
    return _context[key]
