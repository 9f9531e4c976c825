"""O0 passes: symbolic inference through exported shape chains, constant folding, DCE, CSE."""
import numpy as np
import sympy
from onnx import TensorProto, helper, numpy_helper

import framework
from framework.compile import run_passes
from framework.onnx_frontend import import_model


def _i64(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def _reshape_heads_model(batch="batch", seq="seq"):
    """The exporter's Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain splitting heads."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
        helper.make_node("Gather", ["s", "i1"], ["t"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]),
        helper.make_node("Unsqueeze", ["t", "ax0"], ["t1"]),
        helper.make_node("Concat", ["b1", "t1", "heads"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [_i64("i0", 0), _i64("i1", 1), _i64("ax0", [0]), _i64("heads", [4, 16])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, seq, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_symbolic_reshape_keeps_dim_names():
    g = import_model(_reshape_heads_model())
    shape = g.outputs[0].type.shape
    assert [str(d) for d in shape] == ["batch", "seq", "4", "16"]


def test_shape_chain_folds_when_static():
    g = run_passes(import_model(_reshape_heads_model(2, 8)), "O0", check=True)
    assert [n.op for n in g.nodes] == ["Reshape"]
    assert g.outputs[0].type.shape == (2, 8, 4, 16)


def test_shape_chain_kept_when_dynamic_and_runs_at_several_shapes():
    s = framework.InferenceSession(_reshape_heads_model(), check_ir=True)
    assert "Shape" in [n.op for n in s.graph.nodes]
    for b, t in ((1, 3), (2, 5), (3, 7)):
        x = np.random.default_rng(0).standard_normal((b, t, 64)).astype(np.float32)
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], x.reshape(b, t, 4, 16))


def test_derived_dims_are_expressions():
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Concat", ["x", "x"], ["y"], axis=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17)])
    (y,) = import_model(m).outputs
    assert y.type.shape[1] == 2 * sympy.Symbol("seq", integer=True, positive=True)


def test_cse_and_dce():
    nodes = [
        helper.make_node("Exp", ["x"], ["a"]),
        helper.make_node("Exp", ["x"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["y"]),
        helper.make_node("Sin", ["x"], ["unused"]),
    ]
    m = helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])]),
                          opset_imports=[helper.make_opsetid("", 17)])
    s = framework.InferenceSession(m, check_ir=True)
    assert [n.op for n in s.graph.nodes] == ["Exp", "Add"]
    x = np.array([0.0, 1.0, 2.0], np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], 2 * np.exp(x), rtol=1e-6)
    assert framework.InferenceSession(m, mode="pynative").stats["nodes"] == 4


def test_constant_subgraph_folds_into_a_constant():
    nodes = [helper.make_node("Add", ["c", "c"], ["d"]), helper.make_node("Mul", ["x", "d"], ["y"])]
    c = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "c")
    m = helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [c]),
                          opset_imports=[helper.make_opsetid("", 17)])
    g = run_passes(import_model(m), check=True)
    assert [n.op for n in g.nodes] == ["Mul"]
    (folded,) = [a for a in g.constants.values()]
    np.testing.assert_array_equal(folded, [2.0, 4.0])


def test_shape_computations_cached_per_input_shape_and_correct_when_shapes_alternate():
    s = framework.InferenceSession(_reshape_heads_model())
    ex = s._executor
    assert 0 < len(ex.shape_steps) < len(ex.steps)  # Shape/Gather/Concat steps are skippable
    rng = np.random.default_rng(0)
    for b, t in [(1, 3), (2, 5), (1, 3), (2, 5), (4, 1)] + [(1, k) for k in range(1, 20)]:
        x = rng.standard_normal((b, t, 64)).astype(np.float32)
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], x.reshape(b, t, 4, 16))
    from framework.executor import SHAPE_CACHE_SIZE
    assert len(ex._shape_cache) <= SHAPE_CACHE_SIZE


def test_shape_of_data_dependent_value_is_never_cached():
    """NonZero's output length depends on data, so Shape of it must run every time."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]), helper.make_node("Shape", ["nz"], ["s"])]
    m = helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                                            [helper.make_tensor_value_info("s", TensorProto.INT64, None)]),
                          opset_imports=[helper.make_opsetid("", 17)])
    s = framework.InferenceSession(m)
    for x, n in (([1, 0, 0, 0], 1), ([1, 1, 1, 0], 3), ([0, 0, 0, 0], 0)):
        np.testing.assert_array_equal(s.run(None, {"x": np.array(x, np.float32)})[0], [1, n])


def _conv_model(activation_nodes, extra_inits=()):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "scale"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "bias"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "mean"),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "var"), *extra_inits]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["bn"]),
             *activation_nodes]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_conv_batchnorm_activation_fold_into_one_kernel_and_match_pynative():
    lo = numpy_helper.from_array(np.array(0.0, np.float32), "lo")
    hi = numpy_helper.from_array(np.array(0.5, np.float32), "hi")
    for act, inits in (([helper.make_node("Relu", ["bn"], ["y"])], ()),
                       ([helper.make_node("Clip", ["bn", "lo", "hi"], ["y"])], (lo, hi))):
        m = _conv_model(act, inits)
        graph = framework.InferenceSession(m, check_ir=True)
        assert [n.op for n in graph.graph.nodes] == ["FusedConv"]
        x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
        want = framework.InferenceSession(m, mode="pynative").run(None, {"x": x})[0]
        np.testing.assert_allclose(graph.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5)


def test_conv_with_second_consumer_is_not_fused():
    nodes = [helper.make_node("Relu", ["bn"], ["r"]), helper.make_node("Add", ["r", "c"], ["y"])]
    g = framework.InferenceSession(_conv_model(nodes)).graph
    assert [n.op for n in g.nodes] == ["Conv", "BatchNormalization", "Relu", "Add"]


def _f32(name, a):
    return numpy_helper.from_array(np.asarray(a, np.float32), name)


def _affine_model(first, tail_nodes, tail_inits, channels=4):
    """`first` ("conv" or "bn") on x (n, 3, 8, 8), then tail_nodes reading its output "c"."""
    rng = np.random.default_rng(0)
    bn = [_f32("scale", rng.uniform(0.5, 1.5, 3)), _f32("bias", rng.standard_normal(3)),
          _f32("mean", rng.standard_normal(3)), _f32("var", rng.uniform(0.5, 1.5, 3))]
    if first == "conv":
        head = [helper.make_node("Conv", ["x", "w", "wb"], ["c"], pads=[1, 1, 1, 1])]
        inits = [_f32("w", rng.standard_normal((channels, 3, 3, 3))),
                 _f32("wb", rng.standard_normal(channels))]
    else:
        head = [helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["c"])]
        inits = bn
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph(head + tail_nodes, "g", [x], [y], inits + tail_inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _folded_ops_and_check(m):
    """The graph's ops after O0, its output checked against the unfolded model run op by op."""
    sess = framework.InferenceSession(m, check_ir=True)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = framework.InferenceSession(m, mode="pynative").run(None, {"x": x})[0]
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5)
    return [n.op for n in sess.graph.nodes]


def test_per_channel_mul_add_sub_fold_into_conv_and_batch_norm():
    rng = np.random.default_rng(2)
    for first, channels in (("conv", 4), ("bn", 3)):
        c = channels
        tail = [helper.make_node("Mul", ["k", "c"], ["m"]),            # constant on the left, shape (C, 1, 1)
                helper.make_node("Add", ["m", "d"], ["a"]),            # (1, C, 1, 1)
                helper.make_node("Sub", ["a", "e"], ["s"]),            # a scalar
                helper.make_node("Relu", ["s"], ["y"])]
        inits = [_f32("k", rng.standard_normal((c, 1, 1))), _f32("d", rng.standard_normal((1, c, 1, 1))),
                 _f32("e", 0.25)]
        ops = _folded_ops_and_check(_affine_model(first, tail, inits, channels))
        assert ops == (["FusedConv"] if first == "conv" else ["BatchNormalization", "Relu"]), ops


def test_constants_that_vary_off_the_channel_axis_or_lead_a_sub_do_not_fold():
    rng = np.random.default_rng(3)
    for node, shape in ((helper.make_node("Add", ["c", "k"], ["y"]), (1, 4, 8, 8)),   # varies over space
                        (helper.make_node("Mul", ["c", "k"], ["y"]), (8,)),           # over the last axis
                        (helper.make_node("Sub", ["k", "c"], ["y"]), (4, 1, 1))):     # k - conv: not conv + k
        ops = _folded_ops_and_check(_affine_model("conv", [node], [_f32("k", rng.standard_normal(shape))]))
        assert ops == ["Conv", node.op_type], ops


def _chunk_model():
    """torch.chunk's export with a dynamic dim: (w + 2) / 3 is an int64 Div of a shape value (a 1-D object
    array holding the static width 6) feeding Slices and a Concat: k = 8 // 3 = 2 (true division gave 8/3,
    and a false ShapeError at the Concat)."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "one"], ["w"], axis=0),
             helper.make_node("Add", ["w", "two"], ["w2"]), helper.make_node("Div", ["w2", "three"], ["k"]),
             helper.make_node("Mul", ["k", "two"], ["k2"]),
             helper.make_node("Slice", ["x", "zero", "k", "one"], ["a"]),
             helper.make_node("Slice", ["x", "k", "k2", "one"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["y"], axis=0)]
    inits = [_i64("one", [1]), _i64("two", [2]), _i64("three", [3]), _i64("zero", [0])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_integer_div_of_shape_values_truncates_as_onnx_int64_does():
    import onnxruntime as ort
    m = _chunk_model()
    x = np.arange(18, dtype=np.float32).reshape(3, 6)
    peer = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    want = peer.run(None, {"x": x})[0]
    for level in ("O0", "O1"):
        s = framework.InferenceSession(m, jit_level=level)
        assert [str(d) for d in s.get_outputs()[0].shape] == ["2*n", "2"]
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], want)


def test_symbolic_int_div_rounds_toward_zero_on_ints_and_floors_dims():
    from framework.ops.elementwise import _div
    n = sympy.Symbol("n", integer=True, positive=True)
    got = _div(np.array([7, -7, 7, -6, n + 2], dtype=object), np.array([2, 2, -2, 3, 3], dtype=object))
    assert list(got[:4]) == [3, -3, -3, -2] and got[4] == sympy.floor((n + 2) / 3)


def test_reshape_of_unknown_rank_to_a_full_target_is_that_shape():
    """Reshape(x, s) with a run-time s has an unknown rank; reshaping that to [2, 3] gives [2, 3], not an
    error about a scalar."""
    g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["u"]), helper.make_node("Reshape", ["u", "t"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6]),
         helper.make_tensor_value_info("s", TensorProto.INT64, ["k"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_i64("t", [2, 3])])
    s = framework.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert s.get_outputs()[0].shape == [2, 3]
    x = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(s.run(None, {"x": x, "s": np.array([3, 2], np.int64)})[0], x.reshape(2, 3))


def test_onnx_inference_sees_big_weights_as_typed_inputs_and_types_are_unchanged():
    """ONNX's shape inference gets the model without big float weights (it serializes what it is given);
    shape operands keep their data, and the imported types are the same as with the weights."""
    from framework.onnx_frontend import INFERENCE_DATA_ELEMS, _typed_view
    w = np.random.default_rng(0).standard_normal((2048, 6)).astype(np.float32)
    assert w.size > INFERENCE_DATA_ELEMS
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Reshape", ["m", "shape"], ["y"])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-1, 3], np.int64), "shape"),
             numpy_helper.from_array(np.float32([0.5]), "small")]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 2048])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits))
    view = _typed_view(model)
    assert [t.name for t in view.graph.initializer] == ["shape", "small"]
    assert [(i.name, [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim])
            for i in view.graph.input] == [("x", ["b", 2048]), ("w", [2048, 6])]
    g = import_model(model)
    (y,) = g.outputs
    assert y.type.dtype == np.float32 and len(y.type.shape) == 2 and y.type.shape[1] == 3
    x = np.ones((2, 2048), np.float32)
    (out,) = framework.InferenceSession(model).run(None, {"x": x})
    np.testing.assert_allclose(out, (x @ w).reshape(-1, 3), rtol=1e-5)
