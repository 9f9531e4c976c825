"""DvmBackend: which Fused nodes it takes, and whole models run through it against the reference."""
from __future__ import annotations

import numpy as np
import pytest

import onnx_models
from dvm_runtime import encoder
from dvm_runtime.backend import DvmBackend
from framework.backends import NUMPY
from framework.errors import MsgxError
from framework.executor import GraphExecutor
from framework.ir import Graph, Node, TensorType, Value
from framework.session import InferenceSession

from .test_pyvm import SHAPES

VMS = ["numpy"] + (["c"] if DvmBackend().vm == "c" else [])


def _graph(name):
    return InferenceSession(onnx_models.build(name), jit_level="O1").graph


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_supports_every_bundled_cluster(name):
    fused = [n for n in _graph(name).nodes if n.op == "Fused"]
    taken = [n for n in fused if DvmBackend("numpy").supports(n)]
    print(f"{name}: dvm takes {len(taken)}/{len(fused)} fused nodes")
    assert len(taken) == len(fused) > 0


@pytest.mark.parametrize("vm", VMS)
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_models_match_reference(name, vm):
    graph = _graph(name)
    dvm = DvmBackend(vm)
    ours = GraphExecutor(graph, backends=(dvm, NUMPY))
    ref = GraphExecutor(graph)
    assert sum(st.backend == "dvm" for st in ours.steps) == sum(n.op == "Fused" for n in graph.nodes)
    for dims in SHAPES[name] + SHAPES[name][:1]:  # the repeat hits the bytecode cache
        feeds = onnx_models.example_inputs(name, dims)
        args = [feeds[v.name] for v in graph.inputs]
        for o, r in zip(ours.run(args), ref.run(args)):
            np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(r).max())))
    kernels = [st.kernel for st in ours.steps if st.backend == "dvm"]
    assert all(len(k.cache) == len(SHAPES[name]) for k in kernels)
    assert len(dvm.encode_times) == len(kernels) * len(SHAPES[name])


def test_declines_what_it_cannot_encode():
    x, y = Value(TensorType(np.float32, (4, 8))), Value(TensorType(np.float32, (4, 8)))
    soft = Node("Fused", (x,), (y,), {"body": Graph((x,), (y,), (Node("Softmax", (x,), (y,), {}, "", 13),)),
                                       "kind": "elemwise"}, "msgx")
    assert not DvmBackend("numpy").supports(soft)
    assert not DvmBackend("numpy").supports(Node("Add", (x, x), (y,), {}, "", 14))
    f64 = Value(TensorType(np.float64, (4,)))
    o64 = Value(TensorType(np.float64, (4,)))
    body = Graph((f64,), (o64,), (Node("Exp", (f64,), (o64,), {}, "", 13),))
    assert not DvmBackend("numpy").supports(Node("Fused", (f64,), (o64,), {"body": body}, "msgx"))
    assert issubclass(encoder.UnsupportedError, MsgxError)


def test_vm_choice():
    with pytest.raises(ValueError):
        DvmBackend("gpu")
    assert DvmBackend("numpy").vm == "numpy"
    assert DvmBackend("auto").vm in ("c", "numpy")


def test_a_shape_the_encoder_declines_runs_on_the_reference_and_is_reported():
    """A softmax row longer than a tile register cannot be encoded; that shape falls back, visibly."""
    from onnx import TensorProto, helper

    import framework
    from dvm_runtime import isa
    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "m"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    s = framework.InferenceSession(model, jit_level="O1")
    assert s.stats["backends"].get("dvm") == 1
    rng = np.random.default_rng(0)
    for cols in (16, isa.MAX_TILE_ELEMS + 7):
        x = rng.standard_normal((2, cols)).astype(np.float32)
        want = np.exp(x - x.max(-1, keepdims=True))
        want /= want.sum(-1, keepdims=True)
        np.testing.assert_allclose(s.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-7)
    (reason,) = s.stats["fallbacks"].values()
    assert "ran on the reference" in reason


def test_session_setup_encodes_each_symbol_pattern_so_serving_only_refills():
    """Graph O1 with a dynamic dim: setup encodes every fused body for the dim being 1 and more than 1, so the
    first call at a new length refills a template instead of a full encode (which took milliseconds)."""
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["s"], axis=-1),
                           helper.make_node("Mul", ["s", "x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])])
    s = InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), jit_level="O1")
    (body,) = [n.attrs["body"] for n in s.graph.nodes if n.op == "Fused"]
    templates = encoder._STATIC[id(body)].templates
    assert len(templates) == 2  # n == 1 and n > 1
    rng = np.random.default_rng(0)
    for n in (1, 37, 5):
        x = rng.standard_normal((n, 8), dtype=np.float32)
        e = np.exp(x - x.max(1, keepdims=True))
        want = e / e.sum(1, keepdims=True) * x
        np.testing.assert_allclose(s.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-6)
    assert len(templates) == 2


@pytest.mark.parametrize("vm", VMS)
def test_float16_chains_round_every_result_as_op_by_op_execution_does(vm):
    """Registers hold float32; each float16 result is rounded, so a fused chain gives op-by-op's exact bits
    (+ - * / of float16 values rounded once from float32 are correctly rounded)."""
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Mul", ["x", "y"], ["m"]), helper.make_node("Add", ["m", "x"], ["a"]),
             helper.make_node("Add", ["y", "three"], ["d"]), helper.make_node("Div", ["a", "d"], ["q"]),
             helper.make_node("Sub", ["q", "x"], ["z"])]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT16, [64, 37]) for n in ("x", "y")]
    three = helper.make_tensor("three", TensorProto.FLOAT16, [], [3.0])
    model = helper.make_model(helper.make_graph(nodes, "f16", vi, [helper.make_tensor_value_info(
        "z", TensorProto.FLOAT16, [64, 37])], [three]), opset_imports=[helper.make_opsetid("", 17)])
    graph = InferenceSession(model, jit_level="O1").graph
    assert [n.op for n in graph.nodes] == ["Fused"]
    rng = np.random.default_rng(0)
    x, y = (rng.uniform(0.5, 4, (64, 37)).astype(np.float16) for _ in range(2))
    (z,) = GraphExecutor(graph, backends=(DvmBackend(vm), NUMPY)).run([x, y])
    three = np.float16(3)
    np.testing.assert_array_equal(z, (x * y + x) / (y + three) - x)


@pytest.mark.parametrize("vm", VMS)
def test_expand_of_inputs_and_computed_values_broadcasts_into_the_kernel(vm):
    """Expand is a move whose operand loads broadcast; its shape operand is a constant or a kernel input whose
    values key the program (two shapes of a symbolic model)."""
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("Expand", ["x", "heads"], ["xe"]), helper.make_node("Exp", ["x"], ["ex"]),
             helper.make_node("Expand", ["ex", "heads"], ["ee"]), helper.make_node("Mul", ["xe", "y"], ["m"]),
             helper.make_node("Add", ["m", "ee"], ["z"])]
    model = helper.make_model(helper.make_graph(
        nodes, "expand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 1, "s"]),
                          helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4, "s"])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([1, 4, 1], np.int64), "heads")]),
        opset_imports=[helper.make_opsetid("", 17)])
    graph = InferenceSession(model, jit_level="O1").graph
    ex = GraphExecutor(graph, backends=(DvmBackend(vm), NUMPY))
    assert [st.backend for st in ex.steps if st.node.op == "Fused"] == ["dvm"]
    rng = np.random.default_rng(0)
    for b, s in [(2, 5), (1, 7)]:
        x, y = rng.standard_normal((b, 1, s)).astype(np.float32), rng.standard_normal((b, 4, s)).astype(np.float32)
        (z,) = ex.run([x, y])
        np.testing.assert_allclose(z, x * y + np.exp(x), rtol=1e-6, atol=1e-6)
        assert z.shape == (b, 4, s)
