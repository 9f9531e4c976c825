"""Function inlining: model-local functions and spec function bodies for ops without a kernel."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import framework
from framework.errors import ModelError


def _model_with_function(body_nodes, fn_inputs=("a",), fn_outputs=("b",), attributes=(), call_attrs=None):
    fn = helper.make_function("local", "Scaled", list(fn_inputs), list(fn_outputs), body_nodes,
                              [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                              attributes=list(attributes))
    call = helper.make_node("Scaled", ["x"], ["y"], domain="local", **(call_attrs or {}))
    g = helper.make_graph([call], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                             functions=[fn])


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_model_local_function_with_attribute_reference(mode):
    alpha = helper.make_attribute_ref("alpha", TensorProto.FLOAT)
    body = [helper.make_node("LeakyRelu", ["a"], ["t"]), helper.make_node("Neg", ["t"], ["b"])]
    body[0].attribute.append(alpha)
    m = _model_with_function(body, attributes=["alpha"], call_attrs={"alpha": 0.5})
    s = framework.InferenceSession(m, mode=mode)
    x = np.array([-2.0, 3.0], np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], [1.0, -3.0])


def test_recursive_function_is_refused():
    m = _model_with_function([helper.make_node("Scaled", ["a"], ["b"], domain="local")])
    with pytest.raises(ModelError, match="recursive"):
        framework.InferenceSession(m)
