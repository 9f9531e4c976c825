"""The offline synthesizer: a kernel from the task's traced structure, with no model service. The designer
plans host steps and C stages, the coder prints C for one variant; candidates compile with gcc into the
shared disk cache ("agent") and load with ctypes."""
from __future__ import annotations

import os

import numpy as np

from framework.ir import Graph

from . import coder, designer
from .designer import Variant
from .kernel import KernelSpec

NAME = "offline"
# thread counts searched; one by default: on a small shared machine extra OpenMP threads mostly spin
THREADS = tuple(int(t) for t in os.environ.get("MSGX_AGENT_THREADS", "1").split(","))


def variants(plan) -> list[Variant]:
    """The variant families the tuner searches (threads x exp implementation; simd on/off for scans)."""
    if plan.strategy == "host-only":
        return [Variant()]
    ops = {n.op for _, st in plan.steps if _ == "c" for n in st.nodes}
    exps = (True, False) if ops & {"Exp", "Tanh", "Sigmoid"} else (True,)
    return [Variant(t, True, e) for e in exps for t in THREADS]


def spec_from_plan(plan, var: Variant) -> KernelSpec:
    """Number the values, print the C for `var` and list the steps."""
    g: Graph = plan.graph
    ids: dict = {}

    def vid(v):
        return ids.setdefault(v, len(ids))
    types = {}
    for v in list(g.inputs) + [o for n in g.nodes for o in n.outputs] + list(g.constants):
        types[vid(v)] = (tuple(int(d) for d in v.type.shape), v.type.dtype.str)
    source, names = coder.c_source(plan, var) if plan.strategy != "host-only" else ("", [])
    steps, it = [], iter(names)
    for kind, item in plan.steps:
        if kind == "host":
            n = item
            steps.append(("host", n.op, n.domain, n.opset, dict(n.attrs), [vid(v) for v in n.inputs],
                          [vid(v) for v in n.outputs]))
        else:
            bufs, k = [vid(v) for v in item.buffers], len(item.buffers) - len(item.outputs)
            steps.append(("c", next(it), bufs[:k], bufs[k:]))
    consts = {vid(v): np.asarray(a) for v, a in g.constants.items()}
    return KernelSpec([vid(v) for v in g.inputs], [vid(v) for v in g.outputs], steps, consts, source, NAME,
                      var.label(), types)


def synthesize(graph: Graph, var: Variant | None = None):
    """(plan, spec) for one variant (the first of its family by default)."""
    plan = designer.plan(graph)
    var = var or variants(plan)[0]
    return plan, spec_from_plan(plan, var)
