"""PolyBackend in O1 sessions: fused clusters vs the O0 reference, one build per graph, cache hits in a second
session (no compiler run), and a missing or failing compiler handing clusters to the DVM with the reason."""
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
