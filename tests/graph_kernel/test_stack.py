"""Stacking independent fused kernels into one launch (DVM's Parallel stacking)."""
import numpy as np
from onnx import TensorProto, helper

import framework
from framework.ir import print_graph


def _model():
    """Two independent chains on the same input, and a third that depends on the first."""
    nodes = [helper.make_node("Exp", ["x"], ["a1"]), helper.make_node("Neg", ["a1"], ["a"]),
             helper.make_node("Sin", ["x"], ["b1"]), helper.make_node("Abs", ["b1"], ["b"]),
             helper.make_node("Relu", ["a"], ["c1"]), helper.make_node("Sqrt", ["c1"], ["c"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info(v, TensorProto.FLOAT, None) for v in ("b", "c")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_independent_kernels_stack_and_results_match():
    s = framework.InferenceSession(_model(), jit_level="O1", check_ir=True,
                                   graph_kernel_flags="--disable_pass=gk_expand")
    (node,) = s.graph.nodes
    assert node.attrs["kind"] == "stack" and node.attrs["members"] == ("elemwise", "elemwise")
    assert [n.op for n in node.attrs["body"].nodes] == ["Sin", "Abs", "Exp", "Neg", "Relu", "Sqrt"]
    assert "msgx::Fused(%0) {body=<graph stack>, kind='stack'" in print_graph(s.graph)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    want = framework.InferenceSession(_model()).run(None, {"x": x})
    for got, w in zip(s.run(None, {"x": x}), want):
        np.testing.assert_allclose(got, w, rtol=1e-6)


def test_dependent_kernels_do_not_stack():
    nodes = [helper.make_node("Exp", ["x"], ["a1"]), helper.make_node("Neg", ["a1"], ["a"]),
             helper.make_node("Transpose", ["a"], ["t"]),  # opaque to the partition: splits the chain
             helper.make_node("Sin", ["t"], ["b1"]), helper.make_node("Abs", ["b1"], ["b"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                          [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])
    s = framework.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]),
                                   jit_level="O1", check_ir=True)
    assert [n.attrs.get("kind") for n in s.graph.nodes if n.op == "Fused"] == ["elemwise", "elemwise"]
