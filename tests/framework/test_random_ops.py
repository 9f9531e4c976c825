"""Random ops: conformance cannot compare their draws, so their distributions and seeding are checked here."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import framework


def _session(node, inputs, mode="graph"):
    g = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
    return framework.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), mode=mode)


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_bernoulli_mean_matches_probability_and_seed_repeats(mode):
    p = np.full((200, 200), 0.3, np.float32)
    p[:, :100] = 0.8
    seeded = _session(helper.make_node("Bernoulli", ["p"], ["y"], seed=3.0),
                      [helper.make_tensor_value_info("p", TensorProto.FLOAT, [200, 200])], mode)
    a, b = seeded.run(None, {"p": p})[0], seeded.run(None, {"p": p})[0]
    assert a.dtype == np.float32 and set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, b)  # a seeded node draws the same values every run
    assert abs(a[:, :100].mean() - 0.8) < 0.02 and abs(a[:, 100:].mean() - 0.3) < 0.02
    unseeded = _session(helper.make_node("Bernoulli", ["p"], ["y"]),
                        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [200, 200])], mode)
    assert not np.array_equal(unseeded.run(None, {"p": p})[0], unseeded.run(None, {"p": p})[0])


def test_random_uniform_and_normal_moments():
    u = _session(helper.make_node("RandomUniform", [], ["y"], shape=[100000], low=-2.0, high=6.0, seed=1.0), [])
    x = u.run(None, {})[0]
    assert x.dtype == np.float32 and x.min() >= -2 and x.max() < 6 and abs(x.mean() - 2.0) < 0.05
    n = _session(helper.make_node("RandomNormal", [], ["y"], shape=[100000], mean=1.5, scale=0.5, seed=2.0), [])
    y = n.run(None, {})[0]
    assert abs(y.mean() - 1.5) < 0.01 and abs(y.std() - 0.5) < 0.01


def test_multinomial_frequencies_follow_the_logits():
    probs = np.array([[0.1, 0.6, 0.3]], np.float32)
    m = _session(helper.make_node("Multinomial", ["x"], ["y"], sample_size=20000, seed=5.0),
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])])
    draws = m.run(None, {"x": np.log(probs)})[0]
    assert draws.shape == (1, 20000) and draws.dtype == np.int32
    np.testing.assert_allclose(np.bincount(draws[0], minlength=3) / 20000, probs[0], atol=0.015)
