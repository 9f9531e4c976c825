"""The nine model-zoo architectures shipped with onnx, with seeded random weights, match onnxruntime."""
import numpy as np
import pytest

import framework
from benchmarks.zoo import random_feed, randomize_weights, zoo_models

ort = pytest.importorskip("onnxruntime")
ZOO = zoo_models()


def test_all_nine_architectures_present():
    assert len(ZOO) == 9, sorted(ZOO)


@pytest.fixture(scope="module")
def prepared():
    cache = {}

    def get(name):
        if name not in cache:
            import onnx
            model = randomize_weights(onnx.load(ZOO[name]), seed=0)
            so = ort.SessionOptions()
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            peer = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            feed = random_feed(model, seed=1)
            cache[name] = model, feed, peer.run(None, feed)
        return cache[name]
    return get


@pytest.mark.parametrize("mode,jit_level", [("graph", "O0"), ("pynative", "O0"), ("graph", "O1"), ("pynative", "O1")])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_matches_onnxruntime(name, mode, jit_level, prepared):
    model, feed, want = prepared(name)
    got = framework.InferenceSession(model, mode=mode, jit_level=jit_level).run(None, feed)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert np.abs(w).max() > 0  # random weights must give a non-trivial output to compare
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(w).max())))
