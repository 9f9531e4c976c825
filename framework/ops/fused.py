"""msgx::Fused: a fused kernel whose attrs["body"] is an ordinary Graph (DESIGN.md section 4).

The reference kernel interprets the body; faster backends (DVM, polyhedral) compile it instead.
attrs["kind"] names the cluster pattern (e.g. "elemwise", "reduce", "matmul_epilogue", "stack").
"""
from __future__ import annotations

from .registry import Fusion, op


def _fused_infer(ctx, *types):
    return tuple(v.type for v in ctx["body"].outputs)


@op("Fused", domain="msgx", attrs={"kind": "elemwise"}, fusion=Fusion.OPAQUE, infer=_fused_infer)
def _fused(ctx, *inputs):
    return tuple(ctx.run_graph(ctx["body"], list(inputs)))
