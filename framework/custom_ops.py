"""User-registered custom ops: a numpy reference plus a type rule, entered in the op registry like any op.

At O1 the kernel agent generates, verifies and caches a compiled kernel for them (kernel_agent.backend);
elsewhere the reference runs. `CUSTOM_OPS` lets backends tell them from the built-in ops."""
from __future__ import annotations

from typing import Callable

from .errors import MsgxError
from .ir import TensorType
from .ops import registry

CUSTOM_OPS: dict[tuple[str, str], Callable] = {}  # (domain, name) -> the user's numpy reference


class CustomOpError(MsgxError):
    """A custom op registration is invalid (names the op and domain)."""


def register_custom_op(name: str, domain: str, reference: Callable, infer: Callable | None = None,
                       since: int = 1) -> registry.OpDef:
    """Register `domain::name`: `reference(*arrays, **attrs)` -> array(s); `infer(*input_types)` -> output
    TensorType(s) (default: the first input's type)."""
    if not name or not isinstance(name, str):
        raise CustomOpError(f"custom op name must be a non-empty string, got {name!r}")
    if domain in ("", "ai.onnx", "ai.onnx.ml", "msgx"):
        raise CustomOpError(f"custom op {name!r}: domain {domain!r} is reserved; use your own domain")
    if not callable(reference):
        raise CustomOpError(f"custom op {domain}::{name}: reference must be callable")
    if (domain, name) in CUSTOM_OPS or registry.lookup(name, domain) is not None:
        raise CustomOpError(f"custom op {domain}::{name} is already registered")

    def ref(ctx, *arrays):
        return reference(*arrays, **dict(ctx.attrs))

    def rule(ctx, *types):
        if infer is None:
            return TensorType(types[0].dtype, types[0].shape)
        return infer(*types)
    opdef = registry.register(registry.OpDef(name, ref, rule, registry.Fusion.OPAQUE, {}, since, domain))
    CUSTOM_OPS[(domain, name)] = reference
    return opdef
