"""The offline coder's faster forms (tanh(log u), softplus and clip rewrites, AVX-512 argmax, four-row
column reductions) and its thread variants (thread counts, the tuner's choice, OpenMP's wait policy), checked
against numpy on inputs chosen for their edges: exact where the arithmetic is the same, within a few float32
ulps of float64 (or of numpy's own float32 error) where it is rewritten."""
import os
import subprocess
import sys

import numpy as np
import pytest

import kernel_agent
from kernel_agent import offline, registry
from kernel_agent.task import Task

ULP32 = 2.0 ** -24
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path / "cache"))


def wide(seed, n=64 * 1024):
    """Every float32 scale from denormal to overflow, both signs, with the IEEE specials."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.linspace(-120, 120, n // 2), rng.standard_normal(n // 4) * 10,
                        np.sign(rng.standard_normal(n // 4)) * 10.0 ** rng.uniform(-45, 38, n // 4)])
    x[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-42]
    return x.astype(np.float32).reshape(64, -1)


def stage_code(k) -> str:
    """The generated stage functions, without the prelude's helpers."""
    return k.source[k.source.index("int msgx_stage"):]


def softplus(x):
    return np.log(1.0 + np.exp(x))


def mish(x):
    return x * np.tanh(np.log(1.0 + np.exp(x)))


def tanh_log(u):
    return np.tanh(np.log(u))


def test_softplus_is_rewritten_and_within_a_few_ulps_of_float64():
    k = kernel_agent.generate(Task("softplus_wide", softplus, lambda s: [wide(s)]), budget=1)
    body = stage_code(k)
    assert "msgx_softplusf(" in body and "msgx_logf(" not in body and "msgx_expf(" not in body
    x = wide(7)
    (got,) = k.fn(x)
    ref = np.logaddexp(0.0, x.astype(np.float64))  # exact; float32's log(1 + exp(x)) is inf past 88.7
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    fin = np.isfinite(ref) & (ref > 1e-30)  # below that, exp(x) itself is under float32's normal range
    assert np.max(np.abs(got[fin] - ref[fin]) / ref[fin]) < 8 * ULP32
    assert np.all(np.abs(got[np.isfinite(ref) & ~fin]) < 1e-30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_of_log_is_rewritten_and_matches_at_every_scale(dtype):
    def inputs(s):
        u = np.abs(wide(s)).astype(dtype)
        u[0, 6:12] = [-1.0, -0.0, 8191.0, 8192.0, 8193.0, 2.0 ** 28]
        return [u]
    k = kernel_agent.generate(Task(f"tanh_log_{np.dtype(dtype).name}", tanh_log, inputs), budget=1)
    assert "tanh" not in stage_code(k) and "log" not in stage_code(k)
    u = inputs(3)[0]
    (got,) = k.fn(u)
    with np.errstate(all="ignore"):
        ref = np.tanh(np.log(u.astype(np.float64)))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    eps = np.finfo(dtype).eps
    assert np.nanmax(np.abs(got - ref)) < 4 * eps


def test_mish_is_verified_with_the_rewrites():
    k = kernel_agent.generate(Task("mish_wide", mish, lambda s: [wide(s)]), budget=1)
    body = stage_code(k)
    assert "msgx_expf(" in body and "tanh" not in body and "log" not in body and "softplus" not in body
    x = wide(5)
    (got,) = k.fn(x)
    with np.errstate(all="ignore"):
        ref, ref32 = mish(x.astype(np.float64)), mish(x).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    # 1 + exp(x) rounds in float32 in both (up to ~100 ulps of mish near x = -4): no further from the exact
    # value than numpy's own float32 result, plus a few ulps; beyond its overflow, within a few ulps
    fin = np.isfinite(ref)
    own = np.where(np.isfinite(ref32), np.abs(ref32 - ref), 0)[fin]
    assert np.all(np.abs(got[fin] - ref[fin]) <= own + 8 * ULP32 * np.abs(ref[fin]) + 1e-38)


@pytest.mark.parametrize("cols", [1000, 1024, 37])
def test_argmax_first_index_on_ties_and_nans_any_row_length(cols):
    def inputs(s):
        rng = np.random.default_rng(s)
        x = rng.integers(-4, 4, (96, cols)).astype(np.float32)  # many ties of the maximum
        x[rng.integers(0, 96, 8), rng.integers(0, cols, 8)] = np.nan
        x[10] = -0.0
        x[11, ::3] = 0.0
        x[12] = -np.inf
        x[13, -1] = np.inf
        return [x]
    k = kernel_agent.generate(Task(f"argmax_{cols}", lambda x: np.argmax(x, axis=-1), inputs), budget=1)
    for seed in (4, 5, 6):
        x = inputs(seed)[0]
        np.testing.assert_array_equal(k.fn(x)[0], np.argmax(x, axis=-1))


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_column_reduction_with_a_ragged_row_count(op):
    def inputs(s):
        x = np.random.default_rng(s).standard_normal((3, 203, 96)).astype(np.float32)
        x[1, 201, 5] = np.nan  # in the rows after the last group of four
        x[2, 7, 9] = np.nan
        return [x]
    k = kernel_agent.generate(Task(f"col_{op}", lambda x: getattr(x, op)(axis=1), inputs), budget=1)
    assert "k + 4 <=" in k.source
    x = inputs(8)[0]
    (got,) = k.fn(x)
    ref = getattr(x.astype(np.float64), op)(axis=1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_thread_counts_from_the_environment_or_the_machine(monkeypatch):
    monkeypatch.setenv("MSGX_AGENT_THREADS", "1,4,4")
    assert offline.thread_counts() == (1, 4)
    for bad in ("0", "two", "1,,2"):
        monkeypatch.setenv("MSGX_AGENT_THREADS", bad)
        with pytest.raises(ValueError, match="MSGX_AGENT_THREADS"):
            offline.thread_counts()
    monkeypatch.delenv("MSGX_AGENT_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert offline.thread_counts() == tuple(dict.fromkeys((1, len(os.sched_getaffinity(0)))))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as the benchmark's --threads 1 sets it
    assert offline.thread_counts() == (1,)


def log_softmax(x):
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("fn,shape,exact", [
    (mish, (256, 512), True),                  # one flat loop split across threads
    (log_softmax, (256, 512), True),           # rows across threads
    (lambda x: x.max(axis=1), (16, 64, 256), True),  # column reduction across threads
    (log_softmax, (1, 65536), False),          # one row: its reduction split (another summation order)
])
def test_two_thread_variants_are_verified_and_agree_with_one_thread(fn, shape, exact, monkeypatch, tmp_path):
    def inputs(s):
        return [np.random.default_rng(s).standard_normal(shape).astype(np.float32)]
    got = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("MSGX_AGENT_THREADS", threads)
        k = kernel_agent.generate(Task("threads", fn, inputs), budget=1,
                                  registry=registry.Registry(tmp_path / threads))
        assert k.variant.startswith(f"t{threads}-") and (threads == "1" or "num_threads(2)" in k.source)
        got[threads] = k.fn(*inputs(9))[0]
    if exact:  # the same arithmetic per element, only split between threads
        np.testing.assert_array_equal(got["1"], got["2"])
    else:
        np.testing.assert_allclose(got["1"], got["2"], rtol=1e-5, atol=1e-5)


def test_tuner_compares_typical_calls_not_the_luckiest():
    from kernel_agent.tuner import Trial, _cost
    steady = Trial("t1", {}, times=[0.5e-3] * 5)
    lucky = Trial("t2", {}, times=[0.1e-3, 6.8e-3, 6.8e-3, 6.9e-3, 7.0e-3])  # its other thread mostly waited
    assert min([lucky, steady], key=lambda t: _cost(t, steady)) is steady
    assert lucky.time == 6.8e-3


def test_kernels_load_with_a_passive_openmp_wait_policy(tmp_path):
    """In a fresh process: libgomp reads the policy once, so an earlier OpenMP user in this one (torch, in the
    same test worker) would decide it."""
    code = f"""
import ctypes, os
import numpy as np
import kernel_agent
from kernel_agent import registry
from kernel_agent.task import Task
task = Task("col_sum", lambda x: x.sum(axis=1), lambda s: [np.ones((4, 8, 32), np.float32)])
k = kernel_agent.generate(task, budget=1, registry=registry.Registry({str(tmp_path / "reg")!r}))
assert "omp parallel" in k.source and "OMP_WAIT_POLICY" not in os.environ  # the loader restored it
ctypes.CDLL("libgomp.so.1").omp_display_env(0)
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in proc.stderr


@pytest.mark.parametrize("fn,rewritten", [
    (lambda x: np.clip(x, -1.0, 1.0), True),
    (lambda x: np.maximum(np.minimum(x, 0.5), 0.0), True),
    (lambda x: np.minimum(np.maximum(x, 2.0), -2.0), False),  # lo > hi: the result is hi, no rewrite
])
def test_clip_selects_on_its_input_and_is_exact(fn, rewritten):
    def inputs(s):
        x = wide(s)
        x[1, :8] = [-1.0, 1.0, 0.5, 0.0, -0.0, 2.0, -2.0, np.nan]
        return [x]
    k = kernel_agent.generate(Task("clip", fn, inputs), budget=1)
    second = next(ln for ln in stage_code(k).splitlines() if "const float v1 =" in ln)
    assert ("v1 = (b0[" in second) == rewritten
    x = inputs(4)[0]
    np.testing.assert_array_equal(k.fn(x)[0], fn(x))  # NaN where numpy has NaN; -0.0 == 0.0 (IEEE)
