"""The whole compile pipeline on one screen. Every pass is a Graph -> Graph function."""
from __future__ import annotations

import time

from .ir import Graph, verify
from .passes import (eliminate_common_subexpressions, eliminate_dead_code, fold_batch_norm, fold_constants,
                     fuse_conv_activation, infer_shapes)

O0_PASSES = (
    ("infer_shapes", infer_shapes),
    ("fold_constants", fold_constants),
    ("eliminate_dead_code", eliminate_dead_code),
    ("eliminate_common_subexpressions", eliminate_common_subexpressions),
    ("fold_batch_norm", fold_batch_norm),
    ("fuse_conv_activation", fuse_conv_activation),
    ("eliminate_dead_code", eliminate_dead_code),
)


def passes_for(jit_level: str):
    """O0: infer shapes, fold constants, DCE, CSE, Conv+BatchNorm folding and Conv+Relu/Clip fusion (what
    onnxruntime's basic level does). O1 adds graph-kernel fusion once it lands; until then it runs the O0
    list (the session's stats say so)."""
    return O0_PASSES


def run_passes(graph: Graph, jit_level: str = "O0", check: bool = False, on_pass=None) -> Graph:
    """Apply the pipeline for `jit_level`; `check` verifies the IR after every pass (tests turn it on)."""
    for name, fn in passes_for(jit_level):
        t0 = time.perf_counter()
        graph = fn(graph)
        if check:
            verify(graph)
        if on_pass:
            on_pass(name, graph, time.perf_counter() - t0)
    return graph
