"""Conductor: runs the workflow, which is data (steps with their budget and retries), for one task and one
generator, and returns a GeneratedKernel (callable, source, generator, verification record, speedup)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from framework.errors import MsgxError

from . import offline
from .kernel import CompileError, Kernel, KernelSpec, compile_c
from .registry import Registry
from .trace import TraceError
from .tuner import successive_halving

WORKFLOW = (
    {"step": "lookup"},                         # registry hit: done
    {"step": "trace"},                          # reference -> IR (untraceable: reported)
    {"step": "design_and_code", "retries": 3},  # offline: plan + variants; llm: ask, feeding back rejections
    {"step": "tune", "budget": 6},              # verify + successive halving, in sandbox runs
    {"step": "measure", "rounds": 7},           # interleaved timing against the reference, in process
    {"step": "register"},
)


class GenerationError(MsgxError):
    """No candidate was accepted (names the task, generator and the last rejection)."""


@dataclass
class GeneratedKernel:
    """A verified kernel: call it like the reference."""

    fn: Callable
    source: str
    generator: str
    variant: str
    verification: dict
    speedup: float | None = None
    times_ms: dict = field(default_factory=dict)
    seconds: float = 0.0
    from_registry: bool = False
    log: list = field(default_factory=list)

    def __call__(self, *arrays):
        out = self.fn(*arrays)
        return out[0] if len(out) == 1 else tuple(out)


def _c_candidate(spec: KernelSpec) -> dict:
    return {"kind": "c", "spec": spec, "so_path": compile_c(spec.source)}


def _speedup(task, fn, rounds: int) -> tuple[float, dict]:
    """Interleaved rounds of the reference and the kernel on seed-0 inputs; median ratio."""
    inputs = task.make_inputs(0)
    ref_t, our_t = [], []
    for _ in range(rounds):
        for which, f in (("ref", task.reference), ("ours", fn)):
            reps, t0 = 0, time.perf_counter()
            while True:
                f(*inputs)
                reps += 1
                if time.perf_counter() - t0 > 0.02:
                    break
            (ref_t if which == "ref" else our_t).append((time.perf_counter() - t0) / reps)
    r, o = float(np.median(ref_t)), float(np.median(our_t))
    return r / o, {"reference": r * 1e3, "kernel": o * 1e3}


def run(task, generator: str = "offline", budget: int | None = None, registry: Registry | None = None,
        workflow=WORKFLOW, log: Callable[[str], None] = lambda m: None, llm=None) -> GeneratedKernel:
    """Run `workflow` for `task`; raises GenerationError (or TraceError) when nothing is accepted."""
    t0 = time.perf_counter()
    registry = registry if registry is not None else Registry()
    lines: list[str] = []

    def say(msg):
        lines.append(msg)
        log(msg)
    state: dict = {}
    for step in workflow:
        name = step["step"]
        if name == "lookup":
            entry = registry.lookup(task, generator)
            if entry is not None and entry.get("failed"):
                raise GenerationError(f"task {task.name!r} ({generator}): cached failure: {entry['failed']}")
            if entry is not None:
                spec = entry["spec"]
                fn = Kernel(spec, compile_c(spec.source) if spec.source else None)
                say(f"[{task.name}] from the registry ({entry['variant']})")
                return GeneratedKernel(fn, spec.source, generator, entry["variant"], entry["verification"],
                                       entry.get("speedup"), entry.get("times_ms", {}),
                                       time.perf_counter() - t0, True, lines)
        elif name == "trace":
            try:
                state["graph"] = task.traced()
            except TraceError as e:
                say(f"[{task.name}] untraceable: {e}")
                raise
            say(f"[{task.name}] traced: {len(state['graph'].nodes)} ops")
        elif name == "design_and_code":
            state["candidates"] = _candidates(task, generator, state, step, budget, say, llm)
        elif name == "tune":
            steps = budget if budget is not None else step["budget"]
            best, trials, used = successive_halving(task, state["candidates"], max(steps, 1), log=say)
            if best is None and generator == "llm" and llm is not None:
                best, used = _llm_retry(task, state, trials, step, llm, say, used)
            if best is None:
                reason = next((v.reason for t in reversed(trials) for v in t.verdicts if not v.ok),
                              "no candidate")
                registry.store(task, generator, {"failed": reason})
                raise GenerationError(f"task {task.name!r} ({generator}): no candidate accepted: {reason}")
            state["best"] = best
            say(f"[{task.name}] accepted {best.label} after {used} sandbox runs")
        elif name == "measure":
            cand = state["best"].candidate
            fn = Kernel(cand["spec"], cand["so_path"]) if cand["kind"] == "c" else _py_fn(cand["source"])
            state["fn"] = fn
            state["speedup"], state["times"] = _speedup(task, fn, step.get("rounds", 7))
            say(f"[{task.name}] {state['speedup']:.2f}x vs the numpy reference "
                f"({state['times']['reference']:.3f} ms -> {state['times']['kernel']:.3f} ms)")
        elif name == "register":
            best = state["best"]
            record = {"cases": best.verdicts[-1].record.get("cases", []), "runs": len(best.verdicts)}
            if best.candidate["kind"] == "c":
                registry.store(task, generator, {"spec": best.candidate["spec"], "variant": best.label,
                                                 "verification": record, "speedup": state.get("speedup"),
                                                 "times_ms": state.get("times", {})})
            state["record"] = record
    best = state["best"]
    src = best.candidate["spec"].source if best.candidate["kind"] == "c" else best.candidate["source"]
    return GeneratedKernel(state["fn"], src, generator, best.label, state.get("record", {}),
                           state.get("speedup"), state.get("times", {}), time.perf_counter() - t0, False,
                           lines)


def _py_fn(source: str):
    raise GenerationError("python candidates are verified only; the registry keeps C kernels")


def _candidates(task, generator, state, step, budget, say, llm) -> list[tuple[str, dict]]:
    if generator == "offline":
        plan = offline.designer.plan(state["graph"])
        say(f"[{task.name}] design: {plan.strategy}, "
            f"{sum(1 for k, _ in plan.steps if k == 'c')} C stage(s), "
            f"{sum(1 for k, _ in plan.steps if k == 'host')} host step(s)")
        out = []
        for var in offline.variants(plan):
            spec = offline.spec_from_plan(plan, var)
            try:
                out.append((var.label(), _c_candidate(spec) if spec.source else {"kind": "c", "spec": spec,
                                                                                  "so_path": None}))
            except CompileError as e:
                say(f"  {var.label()}: {e}")
        return out
    if generator == "llm":
        from . import llm as llm_mod
        client = llm or llm_mod.Client()
        state["conversation"] = llm_mod.conversation(task, state["graph"])
        return [llm_mod.candidate_from_reply(client.chat(state["conversation"]), state["graph"], 0)]
    raise GenerationError(f"unknown generator {generator!r} (offline or llm)")


def _llm_retry(task, state, trials, step, client, say, used):
    from . import llm as llm_mod
    conv = state["conversation"]
    for attempt in range(1, step.get("retries", 3) + 1):
        reason = next((v.reason for v in reversed(trials[-1].verdicts) if not v.ok), "rejected")
        conv = llm_mod.feedback(conv, reason)
        label, cand = llm_mod.candidate_from_reply(client.chat(conv), state["graph"], attempt)
        best, more, n = successive_halving(task, [(label, cand)], 1, log=say)
        trials.extend(more)
        used += n
        if best is not None:
            return best, used
    return None, used
