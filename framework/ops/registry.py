"""The op registry: one OpDef per ONNX op (and version); adding an op is one entry in one family module."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import UnsupportedOpError


class Fusion(enum.IntEnum):
    """How an op may fuse, from the most to the least fusable (MindSpore/TVM pattern kinds)."""

    ELEMWISE = 0
    BROADCAST = 1
    INJECTIVE = 2
    REDUCE = 3
    OUT_FUSABLE = 4
    OPAQUE = 5


@dataclass(frozen=True, slots=True)
class OpDef:
    """Everything msgx knows about one op version.

    ref(ctx, *inputs) -> array | tuple of arrays: our numpy kernel with exact ONNX dtype semantics.
    bind(ctx) -> kernel(*inputs) -> list of arrays, or None: optional, the same computation as one node's
    kernel with its own per-shape plan cache and no per-call wrapping (the reference backend uses it where
    it returns a kernel).
    infer(ctx, *input_types) -> type | tuple of types: symbolic-aware shape/dtype inference.
    grad, decompose: optional, used by autograd and the graph-kernel expander.
    """

    name: str
    ref: Callable
    infer: Callable | None = None
    fusion: Fusion = Fusion.OPAQUE
    attrs: Mapping[str, Any] = field(default_factory=dict)
    since: int = 1
    domain: str = ""
    grad: Callable | None = None
    decompose: Callable | None = None
    deterministic: bool = True  # random ops are never constant-folded or CSE'd
    shape_op: bool = False  # cheap enough to evaluate on symbolic dims during inference
    bind: Callable | None = None


def single_output_kernel(direct: Callable, specialize: Callable | None = None) -> Callable:
    """A bound kernel for a one-output op from its bare `direct(*inputs) -> array` (what the graph executor
    calls). `specialize(*inputs)`, where given, returns the function later calls on inputs of the same shapes
    may use instead (the executor's shape cache asks once per input-shape signature)."""
    def kernel(*args):
        out = direct(*args)
        return [out if type(out) is np.ndarray else np.asarray(out)]   # numpy scalars (a 1-D @ 1-D product)
    kernel.direct = direct
    if specialize is not None:
        direct.specialize = specialize
    return kernel


class Ctx:
    """What a kernel or an inference rule sees of its node: attributes (defaults filled in), output count,
    opset, constant inputs (inference only) and a way to run subgraphs (control flow)."""

    __slots__ = ("attrs", "num_outputs", "opset", "node_name", "consts", "run_graph")

    def __init__(self, attrs, num_outputs=1, opset=1, node_name="", consts=(), run_graph=None):
        self.attrs, self.num_outputs, self.opset, self.node_name = attrs, num_outputs, opset, node_name
        self.consts, self.run_graph = consts, run_graph

    def __getitem__(self, name):
        return self.attrs[name]

    def get(self, name, default=None):
        return self.attrs.get(name, default)

    def const(self, i: int) -> np.ndarray | None:
        """Value of input i when known at compile time (may hold sympy dims), else None."""
        return self.consts[i] if i < len(self.consts) else None


_REGISTRY: dict[tuple[str, str], list[OpDef]] = {}

DOMAIN_ALIASES = {"ai.onnx": ""}


def register(opdef: OpDef) -> OpDef:
    versions = _REGISTRY.setdefault((opdef.domain, opdef.name), [])
    if any(v.since == opdef.since for v in versions):
        raise ValueError(f"op {opdef.name} since {opdef.since} registered twice")
    versions.append(opdef)
    versions.sort(key=lambda d: d.since)
    return opdef


def op(name: str, *, since: int = 1, domain: str = "", fusion: Fusion = Fusion.OPAQUE, attrs=None,
       infer=None, grad=None, decompose=None, deterministic=True, shape_op=False, bind=None):
    """Decorator form of register(): the decorated function is the reference kernel."""
    def wrap(fn):
        register(OpDef(name, fn, infer, fusion, dict(attrs or {}), since, domain, grad, decompose,
                       deterministic, shape_op, bind))
        return fn
    return wrap


def lookup(name: str, domain: str = "", opset: int | None = None) -> OpDef | None:
    """The newest version of `name` introduced at or before `opset` (None for the newest)."""
    domain = DOMAIN_ALIASES.get(domain, domain)
    versions = _REGISTRY.get((domain, name))
    if not versions:
        return None
    if opset is None:
        return versions[-1]
    usable = [v for v in versions if v.since <= opset]
    return usable[-1] if usable else None


def get(name: str, domain: str = "", opset: int | None = None, node: str = "") -> OpDef:
    """Like lookup() but raises UnsupportedOpError naming the op, domain, opset and node."""
    opdef = lookup(name, domain, opset)
    if opdef is None:
        why = "no kernel registered" if (DOMAIN_ALIASES.get(domain, domain), name) not in _REGISTRY \
            else "the op exists only in later opsets"
        raise UnsupportedOpError(name, domain, opset, node, why)
    return opdef


def all_ops() -> list[OpDef]:
    return [d for versions in _REGISTRY.values() for d in versions]
