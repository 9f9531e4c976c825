"""The whole compile pipeline on one screen. Every pass is a Graph -> Graph function."""
from __future__ import annotations

import os
import time

from .ir import Graph, print_graph, verify
from .passes import (eliminate_common_subexpressions, eliminate_dead_code, fold_channel_affine,
                     fold_constants, fuse_conv_epilogue, infer_shapes)

O0_PASSES = (
    ("infer_shapes", infer_shapes),
    ("fold_constants", fold_constants),
    ("eliminate_dead_code", eliminate_dead_code),
    ("eliminate_common_subexpressions", eliminate_common_subexpressions),
    ("fold_channel_affine", fold_channel_affine),
    ("fuse_conv_epilogue", fuse_conv_epilogue),
    ("eliminate_dead_code", eliminate_dead_code),
)


def passes_for(jit_level: str, graph_kernel_flags: str = ""):
    """O0: infer shapes, fold constants, DCE, CSE, per-channel affine folding (BatchNorm, Mul, Add into a
    Conv or BatchNorm) and Conv+Add+Relu/Clip fusion (what onnxruntime's basic level does). O1 = O0 + the
    graph-kernel passes (expand, cluster, outline...)."""
    if jit_level != "O1":
        return O0_PASSES
    from graph_kernel import o1_passes  # lazy: the framework core does not depend on graph_kernel

    return O0_PASSES + tuple(o1_passes(graph_kernel_flags))


def run_passes(graph: Graph, jit_level: str = "O0", check: bool = False, on_pass=None,
               graph_kernel_flags: str = "") -> Graph:
    """Apply the pipeline for `jit_level`; `check` verifies the IR after every pass (tests turn it on);
    `--dump_as_text=DIR` in the flags writes the printed IR before the first and after every pass."""
    dump = _dump_dir(graph_kernel_flags)
    if dump:
        _dump(dump, "00_input", graph)
    for i, (name, fn) in enumerate(passes_for(jit_level, graph_kernel_flags), start=1):
        t0 = time.perf_counter()
        graph = fn(graph)
        if check:
            verify(graph)
        if on_pass:
            on_pass(name, graph, time.perf_counter() - t0)
        if dump:
            _dump(dump, f"{i:02d}_{name}", graph)
    return graph


def _dump_dir(flags: str) -> str | None:
    if not flags:
        return None
    from graph_kernel.flags import parse_flags  # lazy: flags are parsed only when given

    return parse_flags(flags).dump_as_text


def _dump(directory: str, name: str, graph: Graph) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{name}.txt"), "w") as f:
        f.write(print_graph(graph) + "\n")
