"""Outputs never alias the caller's feeds or the model's constants (InferenceSession.run copies those)."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import framework


def _model():
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Identity", ["x"], ["same"]),
             helper.make_node("Reshape", ["x", "flat"], ["view"]),
             helper.make_node("Identity", ["w"], ["const"]),
             helper.make_node("Add", ["x", "w"], ["fresh"])]
    inits = [numpy_helper.from_array(np.array([-1], np.int64), "flat"),
             numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")]
    outs = [helper.make_tensor_value_info(n, f, None) for n in ("same", "view", "const", "fresh")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", f, [2, 3])], outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("jit_level", ["O0", "O1"])
@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_outputs_are_copies_of_feeds_and_constants(mode, jit_level):
    sess = framework.InferenceSession(_model(), mode=mode, jit_level=jit_level)
    x = np.ones((2, 3), np.float32)
    for _ in range(3):  # the first run checks the feed, later ones take the checked-signature path
        same, view, const, fresh = sess.run(None, {"x": x})
        for out in (same, view, const, fresh):
            assert not np.shares_memory(out, x)
        np.testing.assert_array_equal(view, x.reshape(-1))
        const += 100  # changing a returned constant must not change the model
        same[...] = 7  # nor the caller's feed
        np.testing.assert_array_equal(x, 1)
    np.testing.assert_array_equal(sess.run(["const"], {"x": x})[0], np.arange(6, dtype=np.float32).reshape(2, 3))
