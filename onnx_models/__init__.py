"""Bundled ONNX models built from seeded random weights with ``onnx.helper`` only (opset 17, IR 8)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx

from . import mlp, mobilenet, tiny_gpt

__all__ = ["DEFAULT_MODEL", "MODELS", "build", "example_inputs", "export"]

_MODULES: dict[str, ModuleType] = {"tiny_gpt": tiny_gpt, "mobilenet": mobilenet, "mlp": mlp}

MODELS: dict[str, Callable[..., onnx.ModelProto]] = {name: mod.build for name, mod in _MODULES.items()}
DEFAULT_MODEL = "tiny_gpt"


def _module(name: str) -> ModuleType:
    if name not in _MODULES:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_MODULES))}")
    return _MODULES[name]


def build(name: str, seed: int = 0) -> onnx.ModelProto:
    """Build the named model with weights drawn from ``numpy.random.default_rng(seed)``."""
    return _module(name).build(seed=seed)


def example_inputs(name: str, shapes: dict[str, int] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """A random feed for the named model; ``shapes`` overrides its symbolic dims (e.g. batch, seq)."""
    mod = _module(name)
    unknown = set(shapes or {}) - set(mod.DEFAULT_DIMS)
    if unknown:
        raise ValueError(f"model {name!r} has dims {sorted(mod.DEFAULT_DIMS)}; unknown: {sorted(unknown)}")
    dims = {**mod.DEFAULT_DIMS, **(shapes or {})}
    if any(int(v) < 1 for v in dims.values()):
        raise ValueError(f"dims must be positive, got {dims}")
    return mod.make_inputs({k: int(v) for k, v in dims.items()}, np.random.default_rng(seed))


def export(directory: str | Path, seed: int = 0) -> list[Path]:
    """Write ``<name>.onnx`` for every model into ``directory`` (created if missing)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in MODELS:
        path = out / f"{name}.onnx"
        onnx.save_model(build(name, seed=seed), path)
        paths.append(path)
    return paths
