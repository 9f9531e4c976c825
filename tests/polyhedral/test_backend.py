"""PolyBackend in O1 sessions: fused clusters vs the O0 reference, one build per graph, cache hits in a second
session (no compiler run), and a missing or failing compiler handing clusters to the DVM with the reason."""
import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import framework
from polyhedral import build, scheduler

RNG = np.random.default_rng(7)


def _model(nodes, ins, inits=(), opset=17):
    inputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in ins]
    g = helper.make_graph(nodes, "g", inputs,
                          [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


n = helper.make_node
POLY = "--kernel_generator=poly"  # poly first; the default (auto) puts the compile-free DVM first
CASES = {
    "matmul_bias_relu": (_model([n("MatMul", ["x", "W"], ["t"]), n("Add", ["t", "B"], ["u"]),
                                 n("Relu", ["u"], ["y"])], [("x", [24, 40])],
                                [("W", _r(40, 36)), ("B", _r(36))]),
                         {"x": _r(24, 40)}),
    "softmax": (_model([n("Softmax", ["x"], ["y"], axis=-1)], [("x", [12, 50])]), {"x": _r(12, 50) * 4}),
    "layer_norm": (_model([n("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)],
                          [("x", [10, 48]), ("g", [48]), ("b", [48])]),
                   {"x": _r(10, 48), "g": _r(48), "b": _r(48)}),
    "bias_gelu": (_model([n("Add", ["x", "b"], ["t"]), n("Gelu", ["t"], ["y"])],
                         [("x", [8, 70]), ("b", [70])],
                         opset=20), {"x": _r(8, 70), "b": _r(70)}),
    "transpose_reduce": (_model([n("Transpose", ["x"], ["t"], perm=[1, 0]),
                                 n("ReduceSum", ["t", "ax"], ["y"], keepdims=0)], [("x", [16, 30])],
                                [("ax", np.array([1], np.int64))]), {"x": _r(16, 30)}),
}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MSGX_CC", raising=False)
    return tmp_path


@pytest.mark.parametrize("name", sorted(CASES))
def test_clusters_run_on_poly_and_match_the_reference(name, cache_dir):
    model, feed = CASES[name]
    want = framework.InferenceSession(model, jit_level="O0").run(None, feed)[0]
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    got = sess.run(None, feed)[0]
    assert sess.stats["backends"].get("poly", 0) >= 1 and not sess.stats["fallbacks"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(want))))


def test_second_session_compiles_nothing(cache_dir, monkeypatch):
    model, feed = CASES["layer_norm"]
    before = build.COMPILES["count"]
    first = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    assert build.COMPILES["count"] == before + 1  # one translation unit for the whole graph
    assert first.stats["compile_ms"]["poly"] > 0
    out1 = first.run(None, feed)[0]

    def no_scheduling(*a, **k):
        raise AssertionError("a warm session must not schedule")
    monkeypatch.setattr(scheduler, "schedule", no_scheduling)
    second = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    assert build.COMPILES["count"] == before + 1  # disk cache hit
    np.testing.assert_array_equal(second.run(None, feed)[0], out1)


def test_auto_gives_poly_what_the_dvm_declines(cache_dir):
    model, feed = CASES["transpose_reduce"]  # the DVM encoder declines a reduce over a transposed view
    want = framework.InferenceSession(model, jit_level="O0").run(None, feed)[0]
    sess = framework.InferenceSession(model, jit_level="O1")
    assert sess.stats["backends"].get("poly", 0) == 1 and "dvm" not in sess.stats["backends"]
    np.testing.assert_allclose(sess.run(None, feed)[0], want, rtol=1e-5, atol=1e-5)
    softmax = framework.InferenceSession(CASES["softmax"][0], jit_level="O1")
    assert softmax.stats["backends"].get("dvm", 0) >= 1 and "poly" not in softmax.stats["backends"]


def test_dvm_generator_flag_skips_poly(cache_dir):
    model, feed = CASES["softmax"]
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags="--kernel_generator=dvm")
    assert "poly" not in sess.stats["backends"]


@pytest.mark.parametrize("cc,why", [("msgx-no-such-compiler", "not installed"), ("false", "rejected")])
def test_missing_or_failing_compiler_falls_back_to_dvm_with_reason(cc, why, cache_dir, monkeypatch):
    monkeypatch.setenv("MSGX_CC", cc)
    model, feed = CASES["softmax"]
    want = framework.InferenceSession(model, jit_level="O0").run(None, feed)[0]
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    got = sess.run(None, feed)[0]
    reasons = list(sess.stats["fallbacks"].values())
    assert reasons and why in reasons[0] and "poly backend" in reasons[0], reasons
    assert "dvm" in reasons[0] or sess.stats["backends"].get("dvm")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_erf_matches_libm_to_float_precision(cache_dir):
    """msgx_erff (a rational function on [-4, 4]) against math.erf in float64, the edges included: +-inf
    saturate to +-1, NaN stays NaN; the relative error stays below 1e-6 down to tiny arguments."""
    import math
    x = np.concatenate([np.linspace(-6, 6, 4001), [1e-30, -1e-20, 0.0, 3.9999, 4.5, np.inf, -np.inf, np.nan]])
    x = x.astype(np.float32)
    # Mul by 1 gives the fuser a cluster of two ops (a lone Erf is not outlined)
    model = _model([n("Mul", ["x", "one"], ["t"]), n("Erf", ["t"], ["y"])], [("x", [x.size])],
                   [("one", np.ones(1, np.float32))])
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    got = sess.run(None, {"x": x})[0].astype(np.float64)
    assert sess.stats["backends"].get("poly", 0) == 1
    want = np.array([math.erf(v) if not math.isnan(v) else math.nan for v in x.astype(np.float64)])
    assert np.isnan(got[-1]) and np.all(np.isfinite(got[:-1]))
    rel = np.abs(got[:-1] - want[:-1]) / np.maximum(np.abs(want[:-1]), 1e-37)
    assert float(np.max(rel)) < 1e-6, float(np.max(rel))


def test_exp_matches_libm_to_float_precision(cache_dir):
    """msgx_expf against math.exp in float64 over the float32 range: relative error below 1e-6 from x = -86.9
    (exp 1.8e-38) up to the overflow at 88.72, 0 or within 1e-6 just above FLT_MIN (results below 2^-125.5
    flush to 0), 0 from -87.5 down (to -inf), +inf from 88.73 up, NaN stays NaN."""
    import math
    accurate = np.linspace(-86.9, 88.72, 20001)
    edge = [-87.0, -87.2, -87.3, -87.33]
    x = np.concatenate([accurate, [-1e-30, 0.0, 1e-30, 88.5, 88.7], edge, [-87.5, -87.6, -88.1, -1e30, -np.inf],
                        [88.73, 100, 1e30, np.inf, np.nan]]).astype(np.float32)
    model = _model([n("Mul", ["x", "one"], ["t"]), n("Exp", ["t"], ["y"])], [("x", [x.size])],
                   [("one", np.ones(1, np.float32))])
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    got = sess.run(None, {"x": x})[0].astype(np.float64)
    assert sess.stats["backends"].get("poly", 0) == 1
    k = 20001 + 5
    want = np.array([math.exp(v) for v in x[:k + len(edge)].astype(np.float64)])
    rel = np.abs(got[:k + len(edge)] - want) / want
    assert float(np.max(rel[:k])) < 1e-6, float(np.max(rel[:k]))
    assert np.all((got[k:k + len(edge)] == 0.0) | (rel[k:k + len(edge)] < 1e-6)), got[k:k + len(edge)]
    assert np.all(got[k + len(edge):-5] == 0.0) and np.all(got[-5:-1] == np.inf) and np.isnan(got[-1])


@pytest.mark.parametrize("cols", [50, 200])  # a remainder only; three blocks of split partial results and one
def test_softmax_exp_of_x_minus_its_max_and_special_rows(cols, cache_dir):
    """Softmax lowers its exp(x - max x) to msgx_expf_nonpos (no overflow select); rows with a NaN of either
    sign are NaN throughout, -inf entries weigh 0, an all -inf row is NaN (0/0), huge and tiny values are
    numpy's in float64. A Sub of another array's max keeps the general exp. Softmax's row max passes over
    NaN (msgx_max_any: its sum is NaN anyway); an exp(x - max) that is itself the output keeps msgx_max."""
    from framework.onnx_frontend import import_model
    from graph_kernel.expand import expand_composites
    from polyhedral.lower import lower

    x = _r(8, cols) * 4
    x[0, 3] = np.nan
    x[1, cols - 2] = -np.nan
    x[2, ::3] = -np.inf
    x[3] = -np.inf
    x[4, 5], x[5] = 1e30, np.linspace(-200, 0, cols)
    with np.errstate(invalid="ignore", over="ignore"):
        x64 = x.astype(np.float64)
        e = np.exp(x64 - x64.max(axis=1, keepdims=True))
        want = e / e.sum(axis=1, keepdims=True)
    model = _model([n("Softmax", ["x"], ["y"], axis=-1)], [("x", [8, cols])])
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    got = sess.run(None, {"x": x})[0]
    assert sess.stats["backends"].get("poly", 0) == 1 and not sess.stats["fallbacks"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-30)
    assert np.isnan(got[[0, 1, 3]]).all() and (got[2, ::3] == 0).all()
    direct = _model([n("ReduceMax", ["x"], ["m"], axes=[1], keepdims=1), n("Sub", ["x", "m"], ["d"]),
                     n("Exp", ["d"], ["y"])], [("x", [8, cols])], opset=17)
    other = _model([n("ReduceMax", ["z"], ["m"], axes=[1], keepdims=1), n("Sub", ["x", "m"], ["d"]),
                    n("Exp", ["d"], ["y"])], [("x", [8, cols]), ("z", [8, cols])], opset=17)
    for m, fn in ((direct, "msgx_expf_nonpos("), (other, "msgx_expf(")):
        text = "".join(st.body for st in lower(import_model(m)).scop.statements)
        assert fn in text and (fn == "msgx_expf_nonpos(" or "nonpos" not in text), text
        assert "msgx_max(" in text and "msgx_max_any(" not in text, text
    softmax = [st.body for st in lower(expand_composites(import_model(model))).scop.statements]
    assert any("msgx_max_any(" in b for b in softmax) and not any("msgx_max(" in b for b in softmax), softmax
    with np.errstate(invalid="ignore"):  # x - max in float32, as the kernel rounds it
        want = np.exp((x - x.max(axis=1, keepdims=True)).astype(np.float64))
    sess = framework.InferenceSession(direct, jit_level="O1", graph_kernel_flags=POLY)
    got = sess.run(None, {"x": x})[0]
    assert sess.stats["backends"].get("poly", 0) == 1 and not sess.stats["fallbacks"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # exp's own NaN, of either sign
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-37)


def test_strided_and_contiguous_inputs_give_the_same_result(cache_dir):
    """The kernel takes C-contiguous float32 arrays as they are and converts any other (here a strided view of
    the same values): both calls match the reference."""
    model, feed = CASES["softmax"]
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    ref = framework.InferenceSession(model, jit_level="O0")
    (name, x), = feed.items()
    wide = np.zeros((x.shape[0], 2 * x.shape[1]), np.float32)
    wide[:, ::2] = x
    want = ref.run(None, feed)[0]
    for value in (x, wide[:, ::2]):
        np.testing.assert_allclose(sess.run(None, {name: value})[0], want, rtol=1e-5, atol=1e-7)
    assert sess.stats["backends"].get("poly", 0) == 1 and not sess.stats["fallbacks"]


@pytest.mark.parametrize("name", ["matmul_bias_relu", "softmax"])
def test_kept_buffers_never_leak_into_returned_outputs(name, cache_dir):
    """Temporaries and BLAS products are reused across calls; outputs are fresh arrays: a second call with
    other inputs leaves the first call's result untouched, and both match the reference."""
    model, feed = CASES[name]
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    ref = framework.InferenceSession(model, jit_level="O0")
    other = {k: v[::-1].copy() for k, v in feed.items()}
    first = sess.run(None, feed)[0]
    kept = first.copy()
    second = sess.run(None, other)[0]
    np.testing.assert_array_equal(first, kept)
    for got, inputs in ((first, feed), (second, other)):
        want = ref.run(None, inputs)[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(want))))


def test_instances_with_transcendental_calls_count_more_towards_threads():
    """An n x n erf nest with half of Config.min_parallel_work instances, each a call, reaches the threshold
    by codegen.CALL_COST and runs on threads; the same nest of additions stays serial."""
    from polyhedral import backend, codegen
    from polyhedral.stmt import Array, Scop, Statement
    n = int((backend.CLUSTER_CONFIG.min_parallel_work / 2) ** 0.5)
    assert n * n < backend.CLUSTER_CONFIG.min_parallel_work <= n * n * (1 + codegen.CALL_COST)

    def nest(body):
        scop = Scop("s", (), (Array("x", (n, n), "in"), Array("y", (n, n), "out")), (Statement(
            "S0", ("i", "j"), f"0 <= i < {n} and 0 <= j < {n}", body, (0, "i", 0, "j", 0)),), dtype="float")
        return codegen.function(scop, {}, scheduler.schedule(scop, {}, backend.CLUSTER_CONFIG), "k")
    assert "msgx_parallel(" in nest("y[i][j] = msgx_erff(x[i][j])")
    assert "msgx_parallel(" not in nest("y[i][j] = x[i][j] + 1.0f")


@pytest.mark.parametrize("shapes", [((3, 6, 8), (8, 5)), ((3, 6, 8), (3, 8, 5)), ((6, 8), (3, 8, 5))])
def test_host_products_of_every_batch_layout(shapes, cache_dir):
    """A matmul feeding an epilogue, with rows against one matrix (one sgemm), equal batches and a broadcast
    left operand, computed into the product kept from the previous call: all match O0."""
    sa, sb = shapes
    model = _model([n("MatMul", ["x", "w"], ["t"]), n("Relu", ["t"], ["y"])],
                   [("x", list(sa)), ("w", list(sb))])
    feed = {"x": _r(*sa), "w": _r(*sb)}
    want = framework.InferenceSession(model, jit_level="O0").run(None, feed)[0]
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    for _ in range(2):  # the second call reuses the kept product
        got = sess.run(None, feed)[0]
        assert sess.stats["backends"].get("poly", 0) == 1
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(want))))


def test_products_go_to_the_host_gemm_when_it_takes_them(cache_dir, monkeypatch):
    """The cluster's matmul goes to framework.ops.gemm.matmul and to BLAS when that declines (returns None);
    both results match O0 on every call."""
    from framework.ops import gemm
    calls = []

    def fake(a, b, out, take):
        calls.append((a.shape, b.shape))
        if not take:
            return None
        product = (a.astype(np.float64) @ b).astype(np.float32)
        if out is None:
            return product
        out[...] = product  # the kept buffer of the previous call
        return out
    model, feed = CASES["matmul_bias_relu"]
    want = framework.InferenceSession(model, jit_level="O0").run(None, feed)[0]
    for take in (True, False):
        calls.clear()
        monkeypatch.setattr(gemm, "matmul", lambda a, b, out=None, take=take: fake(a, b, out, take))
        sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
        for _ in range(2):
            np.testing.assert_allclose(sess.run(None, feed)[0], want, rtol=1e-5, atol=1e-5)
        assert calls == [((24, 40), (40, 36))] * 2


_SHARED_POOL_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {root!r})
from tests.polyhedral.test_backend import _model, n
import framework

def count():
    return int(next(line for line in open('/proc/self/status') if line.startswith('Threads:')).split()[1])

x = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
model = _model([n("MatMul", ["x", "W"], ["t"]), n("Softmax", ["t"], ["y"], axis=-1)], [("x", [512, 1024])],
               [("W", np.eye(1024, dtype=np.float32))])
poly = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags="--kernel_generator=poly")
assert poly.stats["backends"].get("poly", 0) == 1, poly.stats
before = count()
got = poly.run(None, {{"x": x}})[0]
e = np.exp(x - x.max(-1, keepdims=True))
np.testing.assert_allclose(got, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
sys.exit(0 if count() - before == 2 else 10 + count() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="counts threads in /proc/self/status")
def test_generated_loops_and_gemm_share_the_vm_pool(cache_dir):
    """A session's poly library runs its parallel loops on the DVM's pool, where its GEMMs run: 3 threads
    add 2 workers to the process, not 2 per pool."""
    proc = subprocess.run([sys.executable, "-c", _SHARED_POOL_SCRIPT.format(root=os.getcwd())], timeout=120,
                          capture_output=True, text=True, env={**os.environ, "MSGX_NUM_THREADS": "3"})
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


def test_softmax_sums_its_exponentials_in_the_loop_that_computes_them(cache_dir):
    """codegen fuses the exp loop into the sum after it (the sum reads each exponential in the iteration
    that writes it): every call of the exp statement sits in the sum's loop, and the result matches O0."""
    from polyhedral import codegen
    from polyhedral.backend import CLUSTER_CONFIG
    from polyhedral.lower import lower

    model, feed = CASES["softmax"]
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    fused = next(n for n in sess.graph.nodes if n.op == "Fused")
    scop = lower(fused.attrs["body"], "softmax").scop
    text = codegen.function(scop, {}, scheduler.schedule(scop, {}, CLUSTER_CONFIG), "k")
    exp_stmt = next(st.name for st in scop.statements if "msgx_expf" in st.body)
    calls = [line for line in text.splitlines() if f"{exp_stmt}(" in line and not line.startswith("#")]
    assert calls and all("acc = " in line or "msgx_part[msgx_k] = msgx_part[msgx_k] +" in line
                         for line in calls), text
    want = framework.InferenceSession(model, jit_level="O0").run(None, feed)[0]
    np.testing.assert_allclose(sess.run(None, feed)[0], want, rtol=1e-5, atol=1e-7)


def test_row_reductions_prefetch_the_next_row_of_their_inputs():
    """In a row-parallel softmax the split reductions over a row (max, then exp and sum) prefetch the same
    columns of the next row of the input, into L2 from the first and into L1 from the second; a reduction
    that is not directly in the parallel loop's body (a matrix product's, inside the loop over columns)
    prefetches nothing, nor does atax's one pass over each row of A."""
    from polyhedral import codegen, config, polybench
    from polyhedral.backend import CLUSTER_CONFIG
    from polyhedral.lower import lower
    from polyhedral.stmt import Array, Scop, Statement

    model, _ = CASES["softmax"]
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    scop = lower(next(n for n in sess.graph.nodes if n.op == "Fused").attrs["body"], "softmax").scop
    text = codegen.function(scop, {}, scheduler.schedule(scop, {}, CLUSTER_CONFIG), "k")
    fetches = [line.strip() for line in text.splitlines() if "__builtin_prefetch(" in line]
    x = next(a.name for a in scop.arrays if a.role == "in")
    assert [f.split("__builtin_prefetch(")[1] for f in fetches] == [
        f"&{x}[(c0)+(1)][msgx_b+msgx_q], 0, {hint});" for hint in (2, 3)], text
    arrays = (Array("A", (96, 96), "in"), Array("B", (96, 96), "in"), Array("C", (96, 96), "out"))
    mm = Scop("mm", (), arrays, (
        Statement("S0", ("i", "j"), "0 <= i < 96 and 0 <= j < 96", "C[i][j] = 0.0f", (0, "i", 0, "j", 0)),
        Statement("S1", ("i", "j", "k"), "0 <= i < 96 and 0 <= j < 96 and 0 <= k < 96",
                  "C[i][j] = C[i][j] + A[i][k] * B[j][k]", (0, "i", 1, "j", "k"))), dtype="float")
    text = codegen.function(mm, {}, scheduler.schedule(mm, {}, CLUSTER_CONFIG), "k")
    assert "msgx_part" in text and "__builtin_prefetch(" not in text, text   # a split sum, no prefetch
    atax = polybench.SCOPS["atax"]
    text = codegen.function(atax, atax.sizes["large"], scheduler.schedule(
        atax, atax.sizes["large"], config.preset("cpu-contiguity")), "k")
    assert "msgx_part" in text and "__builtin_prefetch(" not in text, text


@pytest.mark.parametrize("read", ["t[i]", "t[199 - i]"])
def test_producer_fused_into_a_reduction_only_when_it_reads_the_same_element(read, cache_dir):
    """s = sum(t) after t[i] = x[i] * 2, t read at i or reversed. Reversed, the scheduler leaves the loops
    apart and codegen must not fuse them (the sum would read elements not yet written); either way the
    result is numpy's."""
    from polyhedral import codegen
    from polyhedral.backend import CLUSTER_CONFIG
    from polyhedral.stmt import Array, Scop, Statement
    scop = Scop("p", (), (Array("x", (200,), "in"), Array("t", (200,), "temp"), Array("s", (1,), "out")), (
        Statement("S0", ("i",), "0 <= i < 200", "t[i] = x[i] * 2.0f", (0, "i", 0)),
        Statement("S1", ("z",), "0 <= z < 1", "s[z] = 0.0f", (1, "z", 0)),
        Statement("S2", ("i",), "0 <= i < 200", f"s[0] = s[0] + {read}", (2, "i", 0))), dtype="float")
    res = scheduler.schedule(scop, {}, CLUSTER_CONFIG)
    if read != "t[i]":
        text = codegen.function(scop, {}, res, "k")
        assert not any("S0(" in line and ("acc" in line or "msgx_part" in line) for line in text.splitlines())
    k = build.compile_scops([(scop, {}, res, "k")])[0]
    x = _r(200)
    arrays = {"x": x, "t": np.zeros(200, np.float32), "s": np.zeros(1, np.float32)}
    k(arrays)
    np.testing.assert_allclose(arrays["s"][0], np.sum(x * 2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c", [3.0, -0.1, 1e-39, 0.0, 3e38, np.inf])
def test_division_by_a_constant_is_a_product_only_where_the_reciprocal_is_normal(c, cache_dir):
    """x / c compiles to x * (1 / c) where c and 1 / c are normal float32 values (within an ulp of the
    quotient); a subnormal, zero, huge or infinite c keeps the division (inf, NaN and signed zeros as
    numpy gives them)."""
    from polyhedral.lower import lower
    x = np.concatenate([_r(64) * 10, [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-38, 3e38]]).astype(np.float32)
    model = _model([n("Mul", ["x", "one"], ["t"]), n("Div", ["t", "c"], ["y"])], [("x", [x.size])],
                   [("one", np.ones(1, np.float32)), ("c", np.array([c], np.float32))])
    sess = framework.InferenceSession(model, jit_level="O1", graph_kernel_flags=POLY)
    assert sess.stats["backends"].get("poly", 0) == 1
    fused = next(s.node for s in sess._executor.steps if s.node.op == "Fused")
    text = repr(lower(fused.attrs["body"], "c").scop)
    normal = c in (3.0, -0.1)
    assert ("/" not in text.split("=", 1)[1]) == normal, text
    got = sess.run(None, {"x": x})[0]
    with np.errstate(all="ignore"):
        want = x / np.float32(c)
    if normal:  # within an ulp of the quotient
        finite = np.isfinite(want)
        assert np.all(np.abs(got[finite] - want[finite]) <= np.spacing(np.abs(want[finite])))
        np.testing.assert_array_equal(got[~finite], want[~finite])
    else:
        np.testing.assert_array_equal(got, want)
