"""Soak: many runs of one session with changing input shapes; resident memory and caches must level off."""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import framework

CONFIGS = (("graph", "O0"), ("graph", "O1"), ("pynative", "O0"), ("pynative", "O1"))
WARMUP = 0.2  # fraction of the runs before the baseline is taken
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """Current resident set size in bytes (not the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def small_model():
    """x [N, S, 16] -> LayerNorm -> MatMul -> Gelu -> Softmax, plus a reshape driven by Shape ops: fusion,
    the executor's shape cache and a new DVM encode per shape, in ~1 ms a run."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32) / 4, "w"),
        numpy_helper.from_array(np.ones(16, np.float32), "g"),
        numpy_helper.from_array(np.zeros(16, np.float32), "b"),
        numpy_helper.from_array(np.array([0], np.int64), "i0"),
        numpy_helper.from_array(np.array([-1], np.int64), "m1"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], axis=-1),
        helper.make_node("MatMul", ["ln", "w"], ["mm"]),
        helper.make_node("Gelu", ["mm"], ["ge"]),
        helper.make_node("Softmax", ["ge"], ["sm"], axis=-1),
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "i0"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "m1"], ["target"], axis=0),
        helper.make_node("Reshape", ["sm", "target"], ["flat"]),
        helper.make_node("ReduceSum", ["flat", "m1"], ["y"], keepdims=0),
    ]
    g = helper.make_graph(
        nodes,
        "soak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])


def small_feeds(k: int) -> dict:
    """Run k's feed: 400 distinct shapes in turn, more than every per-kernel cache keeps."""
    n, s = 1 + k % 20, 1 + (k // 20) % 20
    return {"x": np.random.default_rng(k % 400).standard_normal((n, s, 16)).astype(np.float32)}


def gpt_feeds(k: int) -> dict:
    import onnx_models

    return onnx_models.example_inputs("tiny_gpt", {"batch": 1 + k % 3, "seq": 1 + (k // 3) % 32}, seed=k % 96)


def cache_sizes(sess) -> dict:
    """Sizes of every cache a long-lived session keeps."""
    ex = sess._executor
    out = {}
    if hasattr(ex, "_shape_cache"):
        out["shape_cache"] = len(ex._shape_cache)
    kernels = [len(st.kernel.cache) for st in getattr(ex, "steps", ()) if hasattr(st.kernel, "cache")]
    if kernels:
        out["dvm_programs_max"] = max(kernels)
    if hasattr(ex, "fused_cache"):
        out["lazy_kernels"] = len(ex.fused_cache)
    if hasattr(ex, "cache") and isinstance(ex.cache, dict):
        out["op_kernels"] = len(ex.cache)
    for b in sess._backends:
        if hasattr(b, "encode_times"):
            out["encode_times"] = len(b.encode_times)
    return out


@dataclass
class SoakResult:
    config: str
    runs: int
    rss_warm: int
    rss_end: int
    rss_max: int
    seconds: float
    caches: dict = field(default_factory=dict)
    caches_warm: dict = field(default_factory=dict)

    @property
    def growth(self) -> float:
        """Resident growth after warm-up, as a fraction of the warm size."""
        return (self.rss_end - self.rss_warm) / self.rss_warm


def soak(model, feeds, runs: int, mode: str, jit_level: str) -> SoakResult:
    """`runs` runs of one session; RSS after warm-up vs at the end."""
    sess = framework.InferenceSession(model, mode=mode, jit_level=jit_level)
    warm = max(1, int(runs * WARMUP))
    t0 = time.perf_counter()
    rss_warm = rss_max = 0
    caches_warm = {}
    for k in range(runs):
        sess.run(None, feeds(k))
        if k + 1 == warm:
            gc.collect()
            rss_warm, caches_warm = rss(), cache_sizes(sess)
        if k % 50 == 0:
            rss_max = max(rss_max, rss())
    gc.collect()
    end = rss()
    return SoakResult(
        f"{mode} {jit_level}",
        runs,
        rss_warm,
        end,
        max(rss_max, end),
        time.perf_counter() - t0,
        cache_sizes(sess),
        caches_warm,
    )
