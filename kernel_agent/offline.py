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


def thread_counts() -> tuple[int, ...]:
    """OpenMP thread counts the tuner measures: MSGX_AGENT_THREADS (e.g. "1,2"), else 1 and every CPU this
    process may run on, at most OMP_NUM_THREADS where that is set (the benchmark sets it to its --threads,
    as it limits BLAS); the tuner keeps a multi-threaded variant only where it measured faster."""
    env = os.environ.get("MSGX_AGENT_THREADS")
    if not env:
        cpus = len(os.sched_getaffinity(0))
        omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
        if omp.isdigit() and int(omp) > 0:
            cpus = min(cpus, int(omp))
        return tuple(dict.fromkeys((1, cpus)))
    try:
        counts = tuple(dict.fromkeys(int(t) for t in env.split(",")))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise ValueError(f"MSGX_AGENT_THREADS={env!r}: expected positive thread counts such as 1,2")
    return counts


def variants(plan) -> list[Variant]:
    """The variant families the tuner searches (threads x exp implementation; simd on/off for scans)."""
    if plan.strategy == "host-only":
        return [Variant()]
    ops = {n.op for _, st in plan.steps if _ == "c" for n in st.nodes}
    exps = (True, False) if ops & {"Exp", "Tanh", "Sigmoid"} else (True,)
    return [Variant(t, True, e) for e in exps for t in thread_counts()]


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
