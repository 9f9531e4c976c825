"""Run one random graph in every executor and kernel generator and compare with onnxruntime (the oracle)."""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
from dataclasses import dataclass, field

import numpy as np

import framework

# float16 graphs: onnxruntime rounds to float16 after every op, our fused kernels may keep float32 inside a
# cluster; a few rounding steps of 2**-11 each, relative to the largest magnitude of the result.
TOLERANCE = {"float32": (1e-4, 1e-5), "float16": (1e-2, 1e-2), "int64": (0, 0)}


def poly_built() -> bool:
    """Whether the polyhedral generator exists yet (otherwise --kernel_generator=poly runs the reference)."""
    return importlib.util.find_spec("polyhedral.backend") is not None


def configs() -> list[tuple[str, dict]]:
    """(label, InferenceSession keyword arguments) for every executor and kernel generator."""
    out = [
        ("pynative O0", dict(mode="pynative", jit_level="O0")),
        ("pynative O1", dict(mode="pynative", jit_level="O1")),
        ("graph O0", dict(mode="graph", jit_level="O0")),
    ]
    for gen in ("dvm", "poly", "auto"):
        out.append(
            (
                f"graph O1 {gen}",
                dict(mode="graph", jit_level="O1", graph_kernel_flags=f"--kernel_generator={gen}"),
            )
        )
    return out


@dataclass
class Stats:
    graphs: int = 0
    runs: int = 0  # (graph, config, feed) comparisons
    mismatches: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)  # reason -> count (onnxruntime refuses the graph)
    by_dtype: dict = field(default_factory=dict)
    symbolic: int = 0
    ort_bugs: list = field(default_factory=list)  # cases where onnxruntime's optimizer was wrong

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def _ort_run(model: bytes, feeds: list, dtype: str, optimized: bool) -> list | str:
    """In the oracle process: onnxruntime's outputs per feed, or why it refuses the graph."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimized:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # NOT_IMPLEMENTED: no CPU kernel for this op and dtype
        msg = str(e)
        if "NOT_IMPLEMENTED" in msg or "Could not find an implementation" in msg:
            op = msg.split("for ")[-1].split("(")[0].strip() if "for " in msg else "?"
            return f"onnxruntime has no CPU kernel: {op} {dtype}"
        return f"onnxruntime refused the graph: {msg.splitlines()[0][:160]}"
    try:
        return [sess.run(None, f) for f in feeds]
    except Exception as e:  # counted and listed in the report: a valid graph it cannot run
        return f"onnxruntime failed to run the graph: {str(e).splitlines()[0][:160]}"


_ORACLE: list = []  # the onnxruntime worker process, started on first use


def ort_outputs(case, optimized: bool = True) -> list | str:
    """onnxruntime's outputs per feed, or why there are none. onnxruntime runs in its own process: it has
    crashed (SIGSEGV) on random graphs, and its crash must not end the fuzzing run."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    if not _ORACLE:
        _ORACLE.append(ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")))
    try:
        return _ORACLE[0].submit(_ort_run, case.model.SerializeToString(), case.feeds, case.dtype,
                                 optimized).result(timeout=300)
    except BrokenProcessPool:
        _ORACLE.pop().shutdown(wait=False)
        return ORT_CRASHED
    except TimeoutError:
        pool = _ORACLE.pop()
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
        pool.shutdown(wait=False)
        return "onnxruntime did not finish in 300 s"


ORT_CRASHED = "onnxruntime crashed (its process died) on this graph"
ORT_OPTIMIZER_BUG = (
    "onnxruntime's optimized graph disagrees with its own unoptimized run, which ours matches "
    "(an onnxruntime optimizer bug)"
)


def compare(got: np.ndarray, want: np.ndarray, dtype: str) -> str | None:
    """None when equal within the dtype's tolerance, else what differs."""
    got = np.asarray(got)
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"shape/dtype {got.shape} {got.dtype} != onnxruntime {want.shape} {want.dtype}"
    rtol, atol = TOLERANCE[dtype]
    if dtype == "int64":
        return (
            None if np.array_equal(got, want) else f"values differ: {got.ravel()[:8]} vs {want.ravel()[:8]}"
        )
    g, w = got.astype(np.float64), want.astype(np.float64)
    scale = max(1.0, float(np.nanmax(np.abs(w[np.isfinite(w)]), initial=0.0)))
    bad = ~(np.isclose(g, w, rtol=rtol, atol=atol * scale, equal_nan=True) | ((g == w) & np.isinf(w)))
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    return f"{int(bad.sum())} of {bad.size} differ; first at {i}: {g.ravel()[i]} vs {w.ravel()[i]}"


def check_case(case, stats: Stats, cfgs=None) -> list[str]:
    """Run the case everywhere; returns the mismatch descriptions (also recorded in stats)."""
    stats.graphs += 1
    stats.by_dtype[case.dtype] = stats.by_dtype.get(case.dtype, 0) + 1
    stats.symbolic += case.symbolic
    want = ort_outputs(case)
    if want == ORT_CRASHED:  # compare with its unoptimized run instead, if that survives
        stats.ort_bugs.append(f"{ORT_CRASHED}: {case.describe()}")
        want = ort_outputs(case, optimized=False)
    if isinstance(want, str):
        stats.skip(want)
        return []
    ours = {}
    for label, kw in cfgs or configs():
        try:
            sess = framework.InferenceSession(case.model, **kw)
            ours[label] = [sess.run(None, feed) for feed in case.feeds]
            stats.runs += len(case.feeds)
        except Exception as e:  # onnxruntime ran it, so any error of ours is a finding
            ours[label] = f"{type(e).__name__}: {e}"
    problems = _differences(ours, want, case.dtype)
    if problems and not any(isinstance(v, str) for v in ours.values()):
        if not _differences(ours, ort_outputs(case, optimized=False), case.dtype):
            stats.skip(ORT_OPTIMIZER_BUG)
            stats.ort_bugs.append(case.describe())
            return []
    if problems:
        stats.mismatches.append((case.describe(), problems))
    return problems


def _differences(ours: dict, want: list, dtype: str) -> list[str]:
    problems = []
    for label, got in ours.items():
        if isinstance(got, str):
            problems.append(f"{label}: {got}")
            continue
        for outs, ref in zip(got, want):
            for k, (g, w) in enumerate(zip(outs, ref, strict=True)):
                diff = compare(g, w, dtype)
                if diff:
                    problems.append(f"{label}: output {k}: {diff}")
    return problems
