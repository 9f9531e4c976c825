"""Kernel backends. Each has a name, supports(node) and compile(node, run_graph) -> kernel(*arrays) -> list.

The numpy reference backend runs the registry's `ref` kernels; faster backends (DVM, polyhedral, agent)
are looked up lazily by name so this module imports none of them.
"""
from __future__ import annotations

import functools

import numpy as np

from . import ops
from .ir import Node


def as_outputs(out) -> list:
    """A reference kernel's result as the list of output values executors expect."""
    if type(out) is np.ndarray:
        return [out]
    if isinstance(out, (tuple, list)):
        return [o if type(o) is np.ndarray or o is None or isinstance(o, list) else np.asarray(o) for o in out]
    return [np.asarray(out)]


class NumpyBackend:
    """The reference backend: every registered op, through its numpy kernel."""

    name = "numpy"

    def supports(self, node: Node) -> bool:
        return ops.lookup(node.op, node.domain, node.opset) is not None

    def compile(self, node: Node, run_graph=None):
        opdef = ops.get(node.op, node.domain, node.opset, node.name)
        ctx = ops.Ctx({**opdef.attrs, **node.attrs}, len(node.outputs), node.opset, node.name,
                      run_graph=run_graph)
        bound = opdef.bind(ctx) if opdef.bind is not None else None
        if bound is not None:
            return bound
        ref = opdef.ref

        def kernel(*args):
            return as_outputs(ref(ctx, *args))
        if len(node.outputs) == 1:
            # the graph executor calls this directly (no wrapper frame), converting only what is not an
            # array: one call per node per run is a real share of small kernels' time
            kernel.direct = functools.partial(ref, ctx)
        return kernel


NUMPY = NumpyBackend()


def backends_for(jit_level: str, graph_kernel_flags: str = "", mode: str = "graph") -> tuple:
    """Backends in the order they are offered each node. At O1 with `--kernel_generator=auto` the DVM takes
    the clusters it can encode (no compile, any shape) and the polyhedral backend the static-shape ones the
    DVM declines; `=poly` offers static clusters to the polyhedral backend first; `=dvm` uses the DVM only,
    and so does PyNative (it must not run a C compiler mid-run). In graph mode the kernel agent takes custom
    ops and clusters no generator took; the numpy reference everything else."""
    if jit_level != "O1":
        return (NUMPY,)
    from graph_kernel.flags import parse_flags  # lazy: the core does not depend on the fusion packages

    generator = parse_flags(graph_kernel_flags).kernel_generator
    from dvm_runtime.backend import DvmBackend

    if mode != "graph":  # PyNative fuses at run time: no C compiler mid-run, and groups change shape
        return (DvmBackend(), NUMPY)
    if generator == "dvm":
        return (DvmBackend(), *_agent(), NUMPY)
    from polyhedral.backend import PolyBackend

    # auto puts the DVM first: on this machine the polyhedral C is slower on row-wise reductions (softmax,
    # LayerNorm) and a first session pays seconds of scheduling and gcc (ARCHITECTURE.md, Polyhedral)
    poly, dvm = PolyBackend(mode=generator), DvmBackend()
    return (poly, dvm, *_agent(), NUMPY) if generator == "poly" else (dvm, poly, *_agent(), NUMPY)


def _agent() -> tuple:
    """The kernel agent (custom ops, clusters no other backend took), unless MSGX_AGENT=off."""
    from kernel_agent.backend import AgentBackend, enabled  # lazy, like the other generators

    return (AgentBackend(),) if enabled() else ()
