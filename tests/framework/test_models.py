"""Bundled models match onnxruntime in graph O0 and PyNative at several shapes."""
import numpy as np
import pytest

import framework
import onnx_models

ort = pytest.importorskip("onnxruntime")

SHAPES = {
    "tiny_gpt": [{"batch": 1, "seq": 5}, {"batch": 2, "seq": 16}, {"batch": 3, "seq": 33}],
    "mobilenet": [{"batch": 1, "height": 32, "width": 32}, {"batch": 2, "height": 48, "width": 40},
                  {"batch": 3, "height": 17, "width": 29}],
    "mlp": [{"batch": 1}, {"batch": 4}, {"batch": 7}],
}


def ort_session(model):
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("mode,jit_level", [("graph", "O0"), ("pynative", "O0"), ("graph", "O1"), ("pynative", "O1")])
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_bundled_model_matches_onnxruntime(name, mode, jit_level):
    model = onnx_models.build(name)
    ours = framework.InferenceSession(model, mode=mode, jit_level=jit_level, check_ir=True)
    peer = ort_session(model)
    for dims in SHAPES[name]:
        feed = onnx_models.example_inputs(name, dims)
        for got, want in zip(ours.run(None, feed), peer.run(None, feed)):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_symbolic_inputs_and_outputs_reported():
    s = framework.InferenceSession(onnx_models.build("tiny_gpt"))
    (i,) = s.get_inputs()
    assert (i.name, i.shape, i.type) == ("ids", ["batch", "seq"], "tensor(int64)")
    (o,) = s.get_outputs()
    assert o.shape == ["batch", "seq", 256] and o.type == "tensor(float)"
    assert s.stats["backends"] == {"numpy": s.stats["nodes"]}
