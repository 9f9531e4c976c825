"""Soak: thousands of runs with changing shapes in both executors; memory and caches stay bounded."""

import onnx_models
import pytest

from dvm_runtime import backend as dvm_backend
from framework.executor import SHAPE_CACHE_SIZE
from graph_kernel.lazy import KERNEL_CACHE_SIZE
from tests.reliability.soak import CONFIGS, gpt_feeds, small_feeds, small_model, soak

MAX_GROWTH = 0.05
BOUNDS = {
    "shape_cache": SHAPE_CACHE_SIZE,
    "dvm_programs_max": dvm_backend.CACHE_MAX,
    "lazy_kernels": KERNEL_CACHE_SIZE,
    "op_kernels": 64,
}


def _check(result):
    assert result.growth < MAX_GROWTH, (result.config, result.rss_warm, result.rss_end)
    for name, size in result.caches.items():
        if name in BOUNDS:
            assert size <= BOUNDS[name], (result.config, name, size)


@pytest.mark.parametrize("mode,jit_level", CONFIGS)
def test_soak_changing_shapes(mode, jit_level, monkeypatch):
    monkeypatch.setattr(dvm_backend, "ENCODE_TIMES_KEPT", 100)
    result = soak(small_model(), small_feeds, 500, mode, jit_level)  # 400 distinct shapes: caches evict
    _check(result)
    if mode == "graph":
        assert result.caches["shape_cache"] == SHAPE_CACHE_SIZE  # the cache was exercised, and stayed bounded
    if jit_level == "O1" and mode == "graph":
        assert result.caches["dvm_programs_max"] == dvm_backend.CACHE_MAX
        assert result.caches["encode_times"] == 100  # a stats list once grew by one per re-encode, forever


@pytest.mark.slow
@pytest.mark.parametrize("mode,jit_level", CONFIGS)
def test_soak_long_tiny_gpt(mode, jit_level):
    _check(soak(onnx_models.build("tiny_gpt"), gpt_feeds, 2500, mode, jit_level))  # 10,000 runs in all
