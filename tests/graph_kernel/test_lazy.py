"""PyNative runtime (lazy) fusion: same results as plain PyNative; each DVM flush rule; fused-kernel cache."""
import numpy as np
import pytest

import onnx_models
from framework.executor import PyNativeExecutor
from framework.ir import Graph, Node, TensorType, Value, print_graph, symbol, verify
from framework.onnx_frontend import import_model
from graph_kernel.lazy import FlushRecord, LazyFusionExecutor

F32 = np.float32


class _Builder:
    """A tiny graph builder: values by name, nodes at opset 17."""

    def __init__(self):
        self.inputs, self.nodes, self.consts, self.values = [], [], {}, {}

    def input(self, name, shape, dtype=F32):
        v = self.values[name] = Value(TensorType(dtype, shape), name)
        self.inputs.append(v)
        return v

    def const(self, name, array):
        v = self.values[name] = Value(TensorType(array.dtype, array.shape), name)
        self.consts[v] = array
        return v

    def __call__(self, op, *ins, n_out=1, **attrs):
        outs = tuple(Value(TensorType(F32, None), f"{op}{len(self.nodes)}_{k}") for k in range(n_out))
        self.nodes.append(Node(op, tuple(ins), outs, attrs, "", 17, f"n{len(self.nodes)}"))
        return outs[0] if n_out == 1 else outs

    def graph(self, *outputs):
        g = Graph(tuple(self.inputs), tuple(outputs), tuple(self.nodes), self.consts, "t")
        verify(g)
        return g


def _feed(g, shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shapes[v.name]).astype(v.type.dtype) for v in g.inputs]


def _check(g, inputs, **kw):
    """Run lazily and plainly; results must be equal. Returns the lazy executor's records of that run."""
    lazy = LazyFusionExecutor(g, **kw)
    got = lazy.run(inputs)
    want = PyNativeExecutor(g).run(inputs)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    return lazy, [(r.ops, r.reason) for r in lazy.records]


# ---------------------------------------------------------------- bundled models


MODEL_SHAPES = {
    "tiny_gpt": [{"batch": 1, "seq": 1}, {"batch": 2, "seq": 7}, {"batch": 3, "seq": 16}],
    "mobilenet": [{"batch": 1, "height": 16, "width": 16}, {"batch": 2, "height": 32, "width": 24},
                  {"batch": 1, "height": 9, "width": 13}],
    "mlp": [{"batch": 1}, {"batch": 5}, {"batch": 64}],
}


@pytest.mark.parametrize("name", sorted(MODEL_SHAPES))
def test_bundled_models_match_pynative(name):
    g = import_model(onnx_models.build(name))
    lazy, plain = LazyFusionExecutor(g), PyNativeExecutor(g)
    for dims in MODEL_SHAPES[name]:
        feed = onnx_models.example_inputs(name, dims, seed=3)
        inputs = [feed[v.name] for v in g.inputs]
        want = plain.run(inputs)
        for _ in range(2):  # the first run decides the groups, the second replays them as straight-line code
            for got, w in zip(lazy.run(inputs), want):
                np.testing.assert_allclose(got, w, rtol=1e-5, atol=0)
            assert any(len(r.ops) > 1 for r in lazy.records), "something must fuse"
    stats = lazy.stats
    assert stats["groups"] > 0 and stats["fused_ops"] >= 2 * stats["groups"]
    assert stats["kernel_cache_hits"] > 0
    assert sum(stats["flush_reasons"].values()) == stats["groups"] + stats["single_ops"]


def test_model_stats_are_stable_across_runs():
    g = import_model(onnx_models.build("mlp"))
    feed = onnx_models.example_inputs("mlp", {"batch": 4})
    lazy = LazyFusionExecutor(g)
    lazy.run([feed[v.name] for v in g.inputs])
    first = (lazy.stats, list(lazy.records))
    lazy.run([feed[v.name] for v in g.inputs])
    assert [(r.ops, r.reason) for r in lazy.records] == [(r.ops, r.reason) for r in first[1]]
    assert lazy.stats["groups"] == 2 * first[0]["groups"]
    assert lazy.stats["kernel_builds"] == first[0]["kernel_builds"]  # second run: cache hits only


# ---------------------------------------------------------------- flush rules


def test_elementwise_chain_is_one_group_flushed_by_host_read_and_cached():
    b = _Builder()
    x, y = b.input("x", (4, 8)), b.input("y", (4, 8))
    out = b("Relu", b("Mul", b("Add", x, y), y))
    g = b.graph(out)
    inputs = _feed(g, {"x": (4, 8), "y": (4, 8)})
    lazy, groups = _check(g, inputs)
    assert groups == [(("Add", "Mul", "Relu"), "host_read")]
    assert lazy.records[0] == FlushRecord(("Add", "Mul", "Relu"), "host_read", "elemwise", False)
    assert lazy.stats["kernel_builds"] == 1 and lazy.stats["kernel_cache_hits"] == 0
    lazy.run(inputs)
    assert lazy.records[0].cached
    assert lazy.stats["kernel_builds"] == 1 and lazy.stats["kernel_cache_hits"] == 1
    lazy.run(_feed(g, {"x": (4, 8), "y": (4, 8)}, seed=1))  # new data, same structure: still a hit
    assert lazy.stats["kernel_cache_hits"] == 2 and lazy.stats["groups"] == 3 and lazy.stats["fused_ops"] == 9


def test_fused_body_is_a_valid_graph_reading_only_its_inputs():
    b = _Builder()
    x = b.input("x", (2, 3))
    half = b.const("half", np.array(0.5, F32))
    out = b("Tanh", b("Mul", x, half))
    g = b.graph(out)
    lazy, _ = _check(g, _feed(g, {"x": (2, 3)}))
    (kernel, node), = lazy.fused_cache.values()
    body = node.attrs["body"]
    verify(body)  # no outer values: constants come in as node inputs
    assert node.op == "Fused" and node.domain == "msgx" and node.attrs["kind"] == "elemwise"
    assert len(body.inputs) == len(node.inputs) == 2 and not body.constants
    assert "Mul(%0, %1)" in print_graph(body) and "Tanh" in print_graph(body)


def test_host_read_by_a_non_fusable_op_and_unsupported_op():
    b = _Builder()
    x, y = b.input("x", (3, 5)), b.input("y", (3, 5))
    a = b("Neg", b("Add", x, y))
    s = b("Softmax", a, axis=-1)  # OPAQUE, reads the pending value: a host read
    t = b("Exp", b("Abs", s))
    u = b("Softmax", y, axis=-1)  # OPAQUE, reads nothing pending: an unsupported op flushes anyway
    out = b("Add", t, u)
    g = b.graph(out)
    lazy, groups = _check(g, _feed(g, {"x": (3, 5), "y": (3, 5)}))
    assert groups == [(("Add", "Neg"), "host_read"), (("Abs", "Exp"), "unsupported"), (("Add",), "host_read")]
    assert lazy.stats["flush_reasons"] == {"host_read": 2, "unsupported": 1}


def test_unrelated_op_flushes():
    b = _Builder()
    x, y = b.input("x", (6,)), b.input("y", (6,))
    a = b("Neg", b("Relu", x))
    c = b("Exp", y)  # no data dependence on the live group
    out = b("Add", a, c)
    g = b.graph(out)
    _, groups = _check(g, _feed(g, {"x": (6,), "y": (6,)}))
    assert groups == [(("Relu", "Neg"), "unrelated"), (("Exp", "Add"), "host_read")]


def test_size_threshold():
    b = _Builder()
    v = b.input("x", (5,))
    for _ in range(10):
        v = b("Neg", v)
    g = b.graph(v)
    lazy, groups = _check(g, _feed(g, {"x": (5,)}), max_ops=4)
    assert [(len(o), r) for o, r in groups] == [(4, "size"), (4, "size"), (2, "host_read")]
    # the two chains of 4 share one kernel
    assert lazy.stats["kernel_builds"] == 2 and lazy.stats["kernel_cache_hits"] == 1


def test_dominant_shape_change_flushes():
    b = _Builder()
    x, y, z = b.input("x", (4, 8)), b.input("y", (4, 8)), b.input("z", (3, 4, 8))
    a = b("Sigmoid", b("Add", x, y))
    c = b("Mul", a, z)  # broadcasts up to [3,4,8]: another dominant shape
    out = b("Relu", c)
    g = b.graph(out)
    _, groups = _check(g, _feed(g, {"x": (4, 8), "y": (4, 8), "z": (3, 4, 8)}))
    assert groups == [(("Add", "Sigmoid"), "shape"), (("Mul", "Relu"), "host_read")]


def test_dominant_shape_is_compared_at_run_time():
    A, B = symbol("A"), symbol("B")
    b = _Builder()
    x, y, z = b.input("x", (A,)), b.input("y", (A,)), b.input("z", (B,))
    out = b("Mul", b("Add", x, y), z)  # one group exactly when A == B at run time
    g = b.graph(out)
    _, same = _check(g, _feed(g, {"x": (4,), "y": (4,), "z": (4,)}))
    assert same == [(("Add", "Mul"), "host_read")]
    _, differ = _check(g, _feed(g, {"x": (1,), "y": (1,), "z": (4,)}))
    assert differ == [(("Add",), "shape"), (("Mul",), "host_read")]


def test_ops_after_a_reduce_join_its_group_and_internal_values_are_exported():
    b = _Builder()
    x = b.input("x", (4, 8))
    axes = b.const("axes", np.array([1], np.int64))
    sq = b("Mul", x, x)
    r = b("ReduceSum", b("Exp", sq), axes, keepdims=1)  # joins (input has the dominant shape)
    out = b("Add", b("Log", r), sq)  # Log: the reduced shape [4,1]; Add: the dominant [4,8]; both join
    g = b.graph(out, sq)  # sq, inside the group, is also read by the host: it must be exported
    lazy, groups = _check(g, _feed(g, {"x": (4, 8)}))
    assert groups == [(("Mul", "Exp", "ReduceSum", "Log", "Add"), "host_read")]
    assert lazy.records[0].kind == "reduce"
    (_, node), = lazy.fused_cache.values()
    assert len(node.outputs) == 2  # out and sq


def test_a_second_reduce_to_another_shape_closes_the_sequence():
    b = _Builder()
    x = b.input("x", (4, 8))
    rows = b("ReduceSum", b("Exp", x), b.const("a1", np.array([1], np.int64)), keepdims=1)
    cols = b("ReduceMax", b("Sub", x, rows), axes=[0], keepdims=1)
    g = b.graph(cols)
    _, groups = _check(g, _feed(g, {"x": (4, 8)}))
    # reduces of one kernel share one output shape: [1,8] is not the group's [4,1]
    assert groups == [(("Exp", "ReduceSum", "Sub"), "shape"), (("ReduceMax",), "host_read")]


def test_reduce_of_another_shape_does_not_join():
    b = _Builder()
    x = b.input("x", (4, 8))
    e = b("Exp", x)
    r = b("ReduceMax", b("Reshape", e, b.const("s", np.array([2, 16], np.int64))), axes=[0], keepdims=0)
    g = b.graph(r)
    _, groups = _check(g, _feed(g, {"x": (4, 8)}))
    # Reshape is absorbed (same element count); the reduce's input [2,16] is not the dominant [4,8]
    assert groups == [(("Exp", "Reshape"), "shape"), (("ReduceMax",), "host_read")]


def test_matmul_starts_a_group_and_absorbs_its_epilogue():
    b = _Builder()
    x, w, bias = b.input("x", (2, 5, 8)), b.input("w", (8, 16)), b.input("bias", (16,))
    m = b("MatMul", x, w)
    h = b("Relu", b("Add", m, bias))
    m2 = b("MatMul", h, b.input("w2", (16, 4)))  # a second matmul starts its own group
    out = b("Tanh", m2)
    g = b.graph(out)
    lazy, groups = _check(g, _feed(g, {"x": (2, 5, 8), "w": (8, 16), "bias": (16,), "w2": (16, 4)}))
    assert groups == [(("MatMul", "Add", "Relu"), "matmul"), (("MatMul", "Tanh"), "host_read")]
    assert {r.kind for r in lazy.records} == {"matmul_epilogue"}


def test_matmul_after_pointwise_flushes_and_its_epilogue_may_reduce():
    b = _Builder()
    x, w = b.input("x", (3, 4)), b.input("w", (4, 6))
    axes = b.const("axes", np.array([1], np.int64))
    m = b("Gemm", b("Neg", x), w, transB=0)
    r = b("ReduceSum", b("Sigmoid", m), axes)
    g = b.graph(r)
    _, groups = _check(g, _feed(g, {"x": (3, 4), "w": (4, 6)}))
    assert groups == [(("Neg",), "matmul"), (("Gemm", "Sigmoid", "ReduceSum"), "host_read")]


def test_reshape_absorbed_then_a_pointwise_op_of_the_new_shape_flushes():
    b = _Builder()
    x = b.input("x", (4, 6))
    shape = b.const("shape", np.array([2, 12], np.int64))
    r = b("Reshape", b("Relu", x), shape)
    out = b("Neg", r)
    g = b.graph(out)
    _, groups = _check(g, _feed(g, {"x": (4, 6)}))
    assert groups == [(("Relu", "Reshape"), "shape"), (("Neg",), "host_read")]


def test_non_reshape_injective_and_random_ops_flush():
    b = _Builder()
    x = b.input("x", (4, 6))
    t = b("Transpose", b("Abs", x), perm=[1, 0])  # INJECTIVE but not reshape-like: needs its input now
    out = b("Add", b("Neg", t), b("RandomUniformLike", t, seed=1.0))
    g = b.graph(out)
    lazy = LazyFusionExecutor(g)
    lazy.run(_feed(g, {"x": (4, 6)}))
    assert [(r.ops, r.reason) for r in lazy.records] == [
        (("Abs",), "host_read"), (("Neg",), "unsupported"), (("Add",), "host_read")]


def test_pending_shape_input_is_materialised_first():
    b = _Builder()
    x = b.input("x", (2, 6))
    s = b.input("s", (2,), np.int64)
    target = b("Mul", b("Abs", s), b.const("one", np.array(1, np.int64)))
    r = b("Reshape", x, target)  # target still pending: flush, then run the Reshape (nothing to absorb)
    g = b.graph(r)
    got = LazyFusionExecutor(g)
    out = got.run([np.arange(12, dtype=F32).reshape(2, 6), np.array([3, -4], np.int64)])
    assert out[0].shape == (3, 4)
    assert [(r.ops, r.reason) for r in got.records] == [(("Abs", "Mul"), "host_read")]


def test_replayed_kernel_choices_stay_correct_when_values_change_shapes_inside():
    """Same input signature, different Reshape target values: the replay must still give PyNative's answer."""
    from onnx import TensorProto, helper

    import framework
    nodes = [helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Reshape", ["e", "s"], ["r"]),
             helper.make_node("Add", ["r", "r"], ["a"]), helper.make_node("ReduceSum", ["a"], ["y"], keepdims=0)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6]),
                                       helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    lazy = framework.InferenceSession(m, mode="pynative", jit_level="O1")
    plain = framework.InferenceSession(m, mode="pynative")
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    for target in ([4, 6], [3, 8], [24, 1], [4, 6], [2, 12]):
        feed = {"x": x, "s": np.array(target, np.int64)}
        want = plain.run(None, feed)[0]
        got = lazy.run(None, feed)[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_replay_errors_are_typed():
    """A bad Reshape target on a replayed run (same input signature) raises the kernel's typed error."""
    from onnx import TensorProto, helper

    import framework
    from framework.errors import ShapeError
    nodes = [helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Reshape", ["e", "s"], ["r"], name="bad"),
             helper.make_node("Add", ["r", "r"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6]),
                                       helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    lazy = framework.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
                                      mode="pynative", jit_level="O1")
    x = np.ones((4, 6), np.float32)
    for _ in range(2):
        lazy.run(None, {"x": x, "s": np.array([3, 8], np.int64)})
    with pytest.raises(ShapeError, match="cannot reshape"):
        lazy.run(None, {"x": x, "s": np.array([5, 5], np.int64)})


def test_pure_consumers_move_up_to_their_producers():
    b = _Builder()
    x, wq, wk = b.input("x", (3, 4)), b.input("wq", (4, 4)), b.input("wk", (4, 4))
    q, k = b("MatMul", x, wq), b("MatMul", x, wk)  # both matmuls first, then their epilogues
    out = b("Add", b("Tanh", q), b("Tanh", k))
    g = b.graph(out)
    lazy, groups = _check(g, _feed(g, {"x": (3, 4), "wq": (4, 4), "wk": (4, 4)}))
    assert [n.op for n in lazy.graph.nodes] == ["MatMul", "Tanh", "MatMul", "Tanh", "Add"]
    assert groups == [(("MatMul", "Tanh"), "unrelated"), (("MatMul", "Tanh", "Add"), "host_read")]


def test_nodes_that_are_not_pure_keep_their_place():
    b = _Builder()
    x = b.input("x", (3, 4))
    y = b("Neg", x)
    e = b("Exp", x)
    r = b("RandomUniformLike", y, seed=1.0)  # ready right after Neg, but a random draw does not move
    t = b("Tanh", y)  # pure: moves up to Neg
    g = b.graph(b("Add", b("Add", r, t), e))
    lazy = LazyFusionExecutor(g)
    assert [n.op for n in lazy.graph.nodes] == ["Neg", "Tanh", "Exp", "RandomUniformLike", "Add", "Add"]
