"""AgentBackend ("agent"), the last fallback before the numpy reference at O1: custom-domain ops with only a
numpy reference and fused clusters no other backend took. It takes a node only with a verified kernel (from
the registry or just generated); otherwise it declines and records why."""
from __future__ import annotations

import math
import os

from framework.ir import Node

from .designer import C_DTYPES, plan

MIN_ELEMENTS = int(os.environ.get("MSGX_AGENT_MIN_ELEMENTS", "4096"))  # smaller clusters: not worth a compile
BUDGET = 2  # sandbox runs per generated kernel


def enabled() -> bool:
    return os.environ.get("MSGX_AGENT", "on").lower() not in ("0", "off", "false", "no")


def _static(values) -> bool:
    return all(getattr(v.type, "shape", None) is not None and getattr(v.type, "is_static", False)
               and getattr(v.type, "dtype", None) in C_DTYPES for v in values if v is not None)


class AgentBackend:
    """Backend protocol: name, supports(node), compile(node, run_graph) -> kernel(*arrays) -> list."""

    name = "agent"

    def __init__(self, registry=None, log=None):
        from .registry import Registry
        self.registry = registry or Registry()
        self.log = log or (print if os.environ.get("MSGX_AGENT_VERBOSE") else (lambda m: None))
        self.kernels: dict[Node, object] = {}
        self.shape_fallbacks: dict[str, str] = {}
        self.generated = self.from_registry = 0

    def _task(self, node: Node):
        from framework.custom_ops import CUSTOM_OPS

        from .task import task_from_custom_op, task_from_graph
        if (node.domain, node.op) in CUSTOM_OPS:
            if not _static(list(node.inputs) + list(node.outputs)):
                return None
            return task_from_custom_op(f"{node.domain}::{node.op}", CUSTOM_OPS[(node.domain, node.op)],
                                       [v.type for v in node.inputs], dict(node.attrs))
        if node.op == "Fused" and node.domain == "msgx" and "body" in node.attrs:
            body = node.attrs["body"]
            if not _static(list(body.inputs) + [o for n in body.nodes for o in n.outputs]):
                return None
            if max((math.prod(o.type.shape) for o in body.outputs), default=0) < MIN_ELEMENTS:
                return None
            if plan(body).strategy != "c-rows":
                return None
            return task_from_graph(body, node.name or "cluster")
        return None

    def supports(self, node: Node) -> bool:
        """True when a verified kernel for this node is in the registry or was just generated."""
        if not enabled():
            return False
        if node in self.kernels:
            return True
        task = self._task(node)
        if task is None:
            return False
        from .conductor import run
        try:
            k = run(task, "offline", BUDGET, self.registry, log=self.log)
        except Exception as e:  # noqa: BLE001 - any failure declines the node; the reference runs it
            self.shape_fallbacks[node.name or node.op] = f"agent declined it: {type(e).__name__}: {e}"[:300]
            return False
        if k.from_registry:
            self.from_registry += 1
        else:
            self.generated += 1
        from framework import profiler
        profiler.compile_event(node.name or node.op, "agent", k.seconds, variant=k.variant,
                               from_registry=k.from_registry, speedup=k.speedup)
        self.kernels[node] = k
        return True

    def listing(self, node: Node, kernel=None) -> dict:
        """For `msgx show`: the accepted kernel's C source."""
        k = self.kernels.get(node)
        return {f"agent kernel ({k.variant})": k.source} if k is not None else {}

    def compile(self, node: Node, run_graph=None):
        if node not in self.kernels and not self.supports(node):
            from framework.errors import KernelError
            raise KernelError(f"agent backend: no kernel for node {node.name or node.op}")
        fn = self.kernels[node].fn

        def kernel(*arrays):
            return fn(*arrays)
        return kernel
