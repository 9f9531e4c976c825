"""Kernel backends. Each has a name, supports(node) and compile(node, run_graph) -> kernel(*arrays) -> list.

The numpy reference backend runs the registry's `ref` kernels; faster backends (DVM, polyhedral, agent)
are looked up lazily by name so this module imports none of them.
"""
from __future__ import annotations

import numpy as np

from . import ops
from .ir import Node


class NumpyBackend:
    """The reference backend: every registered op, through its numpy kernel."""

    name = "numpy"

    def supports(self, node: Node) -> bool:
        return ops.lookup(node.op, node.domain, node.opset) is not None

    def compile(self, node: Node, run_graph=None):
        opdef = ops.get(node.op, node.domain, node.opset, node.name)
        ctx = ops.Ctx({**opdef.attrs, **node.attrs}, len(node.outputs), node.opset, node.name,
                      run_graph=run_graph)
        ref = opdef.ref

        def kernel(*args):
            out = ref(ctx, *args)
            if isinstance(out, (tuple, list)):
                return [o if type(o) is np.ndarray or o is None or isinstance(o, list) else np.asarray(o)
                        for o in out]
            return [out if type(out) is np.ndarray else np.asarray(out)]
        return kernel


NUMPY = NumpyBackend()


def backends_for(jit_level: str, graph_kernel_flags: str = "") -> tuple:
    """Backends in the order they are offered each node. At O1 the DVM takes the fused clusters it can
    encode (the polyhedral backend is not built yet, so --kernel_generator=poly leaves them to the
    reference); the numpy reference takes everything else."""
    if jit_level != "O1":
        return (NUMPY,)
    from graph_kernel.flags import parse_flags  # lazy: the core does not depend on the fusion packages

    if parse_flags(graph_kernel_flags).kernel_generator == "poly":
        return (NUMPY,)
    from dvm_runtime.backend import DvmBackend

    return (DvmBackend(), NUMPY)
