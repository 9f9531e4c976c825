"""Must-show 3: a custom-domain op registered with only a numpy reference and a model-local function run in
graph O1 through agent kernels and match the reference; a second session takes them from the registry."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import framework
from framework.custom_ops import CUSTOM_OPS, CustomOpError
from kernel_agent import registry
from kernel_agent.backend import AgentBackend


OPSETS = [helper.make_opsetid("", 18)]


def _swish(x, beta=1.0):
    return x / (1.0 + np.exp(-beta * x))


@pytest.fixture(scope="module", autouse=True)
def swish_op():
    if ("test.agent", "Swish") not in CUSTOM_OPS:
        framework.register_custom_op("Swish", "test.agent", _swish)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path / "cache"))


def custom_op_model():
    rng = np.random.default_rng(3)
    w = helper.make_tensor("w", TensorProto.FLOAT, [128, 128],
                           (rng.standard_normal(128 * 128) * 0.1).astype(np.float32))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Swish", ["h"], ["s"], domain="test.agent", beta=1.5),
             helper.make_node("Add", ["s", "x"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 128])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 128])], [w])
    return helper.make_model(g, opset_imports=OPSETS + [helper.make_opsetid("test.agent", 1)])


def local_function_model():
    body = [helper.make_node("Sin", ["a"], ["s"]), helper.make_node("Mul", ["s", "a"], ["m"]),
            helper.make_node("Exp", ["m"], ["b"])]
    fn = helper.make_function("local.fn", "SinGate", ["a"], ["b"], body, [helper.make_opsetid("", 18)])
    g = helper.make_graph([helper.make_node("SinGate", ["x"], ["y"], domain="local.fn")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 128])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 128])])
    return helper.make_model(g, opset_imports=OPSETS + [helper.make_opsetid("local.fn", 1)],
                             functions=[fn])


def _agent_backend(sess):
    return next(b for b in sess._backends if isinstance(b, AgentBackend))


@pytest.mark.parametrize("build,reference", [
    (custom_op_model, lambda m, x: _swish(x @ m, 1.5) + x),
    (local_function_model, lambda m, x: np.exp(np.sin(x) * x)),
], ids=["custom_op", "local_function"])
def test_model_runs_on_agent_kernels_then_from_registry(build, reference):
    model = build().SerializeToString()
    x = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)
    inits = build().graph.initializer
    w = numpy_helper.to_array(inits[0]).astype(np.float64) if inits else None
    expected = reference(w, x.astype(np.float64))
    before = dict(registry.COUNTS)
    first = framework.InferenceSession(model, jit_level="O1")
    (y,) = first.run(None, {"x": x})
    assert first.stats["backends"].get("agent") == 1
    assert _agent_backend(first).generated == 1
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    second = framework.InferenceSession(model, jit_level="O1")
    (y2,) = second.run(None, {"x": x})
    agent = _agent_backend(second)
    assert second.stats["backends"].get("agent") == 1
    assert agent.generated == 0 and agent.from_registry == 1
    assert registry.COUNTS["hits"] == before["hits"] + 1
    np.testing.assert_array_equal(y, y2)


def test_agent_off_leaves_the_reference(monkeypatch):
    monkeypatch.setenv("MSGX_AGENT", "off")
    s = framework.InferenceSession(custom_op_model().SerializeToString(), jit_level="O1")
    assert "agent" not in s.stats["backends"]


def test_custom_op_registration_errors():
    with pytest.raises(CustomOpError, match="reserved"):
        framework.register_custom_op("Foo", "", _swish)
    with pytest.raises(CustomOpError, match="already registered"):
        framework.register_custom_op("Swish", "test.agent", _swish)
    with pytest.raises(CustomOpError, match="callable"):
        framework.register_custom_op("Bar", "test.agent", 3)


def test_untraceable_custom_op_is_declined_with_reason():
    def sorted_ref(x):
        return np.sort(x, axis=-1)
    if ("test.agent", "Sorted") not in CUSTOM_OPS:
        framework.register_custom_op("Sorted", "test.agent", sorted_ref)
    g = helper.make_graph([helper.make_node("Sorted", ["x"], ["y"], domain="test.agent")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 128])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 128])])
    m = helper.make_model(g, opset_imports=OPSETS + [helper.make_opsetid("test.agent", 1)])
    s = framework.InferenceSession(m.SerializeToString(), jit_level="O1")
    x = np.random.default_rng(1).standard_normal((64, 128)).astype(np.float32)
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], np.sort(x, axis=-1))
    assert s.stats["backends"] == {"numpy": 1}
    assert "np.sort is not traceable" in " ".join(_agent_backend(s).shape_fallbacks.values())
