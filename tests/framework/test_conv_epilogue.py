"""O0's fuse_conv_epilogue: Conv -> Add of a residual -> Relu / Clip as one msgx::FusedConv, on every C conv
path, bit for bit as the ops run one by one (PyNative), and the cases it must leave alone."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import framework
from framework.ops import nn_ckernels

# (x shape, w shape, strides, pads, group): one geometry per C plan, named as conv2d_plan names them
GEOMETRIES = {
    "depthwise": ((1, 8, 12, 12), (8, 1, 3, 3), 1, 1, 8),
    "direct_conv": ((1, 3, 10, 10), (4, 3, 3, 3), 1, 1, 1),
    "implicit_gemm": ((1, 32, 24, 24), (32, 32, 3, 3), 1, 1, 1),
    "batched": ((2, 64, 32, 32), (128, 64, 1, 1), 2, 0, 1),
    "im2col_gemm": ((1, 64, 20, 20), (128, 64, 1, 1), 1, 0, 1),
}


def _out_shape(x_shape, w_shape, stride, pad):
    return (x_shape[0], w_shape[0]) + tuple((s + 2 * pad - k) // stride + 1
                                            for s, k in zip(x_shape[2:], w_shape[2:]))


def _model(x_shape, w_shape, stride, pad, group, *, bias=True, act="Relu", z_first=False, z_shape=None,
           batch=None):
    """x -> Conv -> Add(., r) (r first when z_first) -> act (None: no activation) -> y; r is a graph input."""
    rng = np.random.default_rng(0)
    out = _out_shape(x_shape, w_shape, stride, pad)
    inits = [numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "w")]
    conv_in = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(w_shape[0]).astype(np.float32), "b"))
        conv_in.append("b")
    nodes = [helper.make_node("Conv", conv_in, ["c"], strides=[stride] * 2, pads=[pad] * 4, group=group),
             helper.make_node("Add", ["r", "c"] if z_first else ["c", "r"], ["s" if act else "y"])]
    if act == "Relu":
        nodes.append(helper.make_node("Relu", ["s"], ["y"]))
    elif act == "Clip":
        inits += [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", -0.5), ("hi", 0.5))]
        nodes.append(helper.make_node("Clip", ["s", "lo", "hi"], ["y"]))
    lead = [batch] if batch else [x_shape[0]]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, lead + list(x_shape[1:])),
              helper.make_tensor_value_info("r", TensorProto.FLOAT,
                                            z_shape or (lead + list(out[1:])))]
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _feed(x_shape, r_shape, seed=1):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal(x_shape).astype(np.float32),
            "r": rng.standard_normal(r_shape).astype(np.float32)}


def _ops_and_check(model, feed):
    """The O0 graph's ops; its output checked bit for bit against the same model run op by op."""
    sess = framework.InferenceSession(model, check_ir=True)
    want = framework.InferenceSession(model, mode="pynative").run(None, feed)[0]
    np.testing.assert_array_equal(sess.run(None, feed)[0], want)
    return [n.op for n in sess.graph.nodes]


@pytest.mark.skipif(not nn_ckernels.available(), reason="the C kernels (framework._ckernels) are not built")
@pytest.mark.parametrize("path", sorted(GEOMETRIES))
def test_conv_add_activation_fuse_on_every_c_path(path):
    x_shape, w_shape, stride, pad, group = GEOMETRIES[path]
    out = _out_shape(x_shape, w_shape, stride, pad)
    plan = nn_ckernels.conv2d_plan(x_shape, w_shape, (np.float32,) * 3, group, [stride] * 2, [1, 1], [pad] * 2,
                                   out[2:], "Relu")
    assert plan.__name__ == path   # the geometry exercises the path it is named after
    for i, act in enumerate(("Relu", "Clip", None)):
        model = _model(x_shape, w_shape, stride, pad, group, bias=i != 1, act=act, z_first=i == 2)
        assert _ops_and_check(model, _feed(x_shape, out)) == ["FusedConv"], (path, act)


def test_symbolic_batch_fuses_and_runs_every_batch():
    x_shape, w_shape, stride, pad, group = GEOMETRIES["direct_conv"]
    model = _model(x_shape, w_shape, stride, pad, group, batch="n")
    for n in (1, 3):
        xs = (n,) + x_shape[1:]
        assert _ops_and_check(model, _feed(xs, _out_shape(xs, w_shape, stride, pad))) == ["FusedConv"]


def test_broadcast_residual_and_shared_conv_output_are_not_fused():
    x_shape, w_shape, stride, pad, group = GEOMETRIES["direct_conv"]
    # r broadcasts along the channels and the plane: Add's output has the conv's shape, r does not
    model = _model(x_shape, w_shape, stride, pad, group, z_shape=[1, 1, 1, 1])
    assert _ops_and_check(model, _feed(x_shape, (1, 1, 1, 1))) == ["Conv", "Add", "Relu"]
    # the conv's output is also a graph output: nothing after it may be folded in
    model = _model(x_shape, w_shape, stride, pad, group)
    model.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
    feed = _feed(x_shape, _out_shape(x_shape, w_shape, stride, pad))
    sess = framework.InferenceSession(model)
    assert [n.op for n in sess.graph.nodes] == ["Conv", "Add", "Relu"]
    for got, want in zip(sess.run(None, feed), framework.InferenceSession(model, mode="pynative").run(None, feed)):
        np.testing.assert_array_equal(got, want)


def test_sum_that_is_a_graph_output_keeps_its_activation_apart():
    x_shape, w_shape, stride, pad, group = GEOMETRIES["direct_conv"]
    model = _model(x_shape, w_shape, stride, pad, group)
    model.graph.output.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, None))
    feed = _feed(x_shape, _out_shape(x_shape, w_shape, stride, pad))
    sess = framework.InferenceSession(model)
    fused = sess.graph.nodes[0]
    assert [n.op for n in sess.graph.nodes] == ["FusedConv", "Relu"] and fused.attrs["activation"] == ""
    for got, want in zip(sess.run(None, feed), framework.InferenceSession(model, mode="pynative").run(None, feed)):
        np.testing.assert_array_equal(got, want)
