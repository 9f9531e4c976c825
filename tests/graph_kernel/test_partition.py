"""Partition + outline on small graphs, checked as printed IR: the patterns, the proofs, the cycle check."""
import numpy as np

from framework.ir import Graph, Node, TensorType, Value, print_graph, symbol, verify
from framework.passes import eliminate_dead_code, infer_shapes
from graph_kernel.builder import Builder
from graph_kernel.outline import outline
from graph_kernel.partition import PartitionOptions, _Partitioner, partition
from graph_kernel.symbols import SymbolEngine

B, S, S2, T = (symbol(n) for n in ("b", "s", "s2", "t"))


def f32(*shape, name="x"):
    return Value(TensorType(np.float32, shape), name)


def graph(inputs, outputs, b: Builder, consts=None) -> Graph:
    g = Graph(tuple(inputs), tuple(outputs), tuple(b.nodes), {**b.constants, **(consts or {})}, "t")
    return infer_shapes(g)


def fuse(g: Graph, **options) -> Graph:
    out = eliminate_dead_code(outline(g, partition(g, options=PartitionOptions(**options))))
    verify(out)
    return out


def summary(g: Graph, **options) -> list[str]:
    """One line per cluster: kind and op types."""
    return [f"{c.kind}: {'+'.join(n.op for n in c.nodes)}"
            for c in partition(g, options=PartitionOptions(**options))]


def test_elementwise_depth_and_width_with_symbolic_dims():
    x, y = f32(B, S), f32(B, S, name="y")
    b = Builder(name="t")
    e = b.op("Exp", x)
    u = b.op("Add", e, y)  # depth
    v = b.op("Neg", e)  # width: a second consumer of e of the same size
    g = graph([x, y], [u, v], b)
    assert print_graph(fuse(g)) == """\
graph t(
  %0: f32[b,s]  # x
  %1: f32[b,s]  # y
) {
  %2: f32[b,s], %3: f32[b,s] = msgx::Fused(%0, %1) {body=<graph fused_0>, kind='elemwise'}
    graph fused_0(
      %0: f32[b,s]  # x
      %1: f32[b,s]  # y
    ) {
      %2: f32[b,s] = Exp(%0)
      %3: f32[b,s] = Add(%2, %1)
      %4: f32[b,s] = Neg(%2)
      return %3, %4
    }
  return %2, %3
}"""


def test_symbols_that_might_be_equal_do_not_fuse():
    x, y = f32(B, S), f32(B, T, name="y")
    b = Builder(name="t")
    u = b.op("Add", b.op("Exp", x), y)  # b*max(s,t) elements vs b*s: not proved equal
    g = graph([x, y], [b.op("Relu", u)], b)
    assert summary(g) == ["elemwise: Add+Relu"]


def test_seq_equal_only_by_deduction_after_reshape_round_trip_fuses():
    x, shp = f32(B, S, 4), Value(TensorType(np.int64, (3,)), "shape")
    b = Builder(name="t")
    e = b.op("Exp", x)
    flat = b.op("Reshape", x, b.const(np.array([-1], np.int64)))
    y = f32(B, S2, 4, name="y")
    b.nodes.append(Node("Reshape", (flat, shp), (y,), {}, "", 18, "t/Reshape2"))
    g = graph([x, shp], [b.op("Mul", e, y)], b)
    assert g.outputs[0].type.shape[1].has(S2)  # inference alone leaves max(s, s2)
    assert SymbolEngine.from_graph(g).describe() == "s2 = s"
    assert summary(g) == ["elemwise: Exp+Reshape+Reshape+Mul"]  # the reshapes are absorbed too


def test_matmul_epilogue_takes_the_softmax_of_its_rows():
    """Attention scores: the matmul's output feeds a row softmax; the reduces join the epilogue (one kernel,
    the scores never go back to memory between the two)."""
    x, w = f32(B, S, 8), f32(8, 8, name="w")
    b = Builder(name="t")
    h = b.op("Relu", b.op("Add", b.op("MatMul", x, w), b.const(np.ones(8, np.float32))))
    m = b.reduce("ReduceMax", h, [2], True)
    ex = b.op("Exp", b.op("Sub", h, m))
    y = b.op("Div", ex, b.reduce("ReduceSum", ex, [2], True))
    g = graph([x], [y], b, {w: np.ones((8, 8), np.float32)})
    assert summary(g) == ["matmul_epilogue: MatMul+Add+Relu+ReduceMax+Sub+Exp+ReduceSum+Div"]


def test_conv_epilogue_does_not_reduce():
    x, w = f32(B, 4, 6, 6), f32(8, 4, 3, 3, name="w")
    b = Builder(name="t")
    y = b.reduce("ReduceSum", b.op("Relu", b.op("Conv", x, w)), [2, 3], True)
    assert summary(graph([x], [y], b, {w: np.ones((8, 4, 3, 3), np.float32)})) == ["conv_epilogue: Conv+Relu"]


def test_large_constants_stay_node_inputs():
    x, w = f32(B, 16), f32(16, 16, name="w")
    b = Builder(name="t")
    y = b.op("Tanh", b.op("MatMul", x, w))
    out = fuse(graph([x], [y], b, {w: np.ones((16, 16), np.float32)}))
    (fused,) = out.nodes
    assert fused.inputs == (x, w) and not fused.attrs["body"].constants


def test_broadcast_backward_into_all_consumers():
    x, p = f32(B, 8), f32(8, name="p")
    b = Builder(name="t")
    bias = b.op("Sigmoid", p)  # 8 elements, broadcast by its only consumer
    y = b.op("Relu", b.op("Add", x, bias))
    assert summary(graph([x, p], [y], b)) == ["elemwise: Sigmoid+Add+Relu"]
    assert summary(graph([x, p], [y, bias], b)) == ["elemwise: Add+Relu"]  # also an output: stays out


def test_reduces_in_one_kernel_share_one_output_shape():
    x = f32(B, S)
    b = Builder(name="t")
    e = b.op("Exp", x)
    rows = b.reduce("ReduceSum", e, [1], True)  # [b,1]
    cols = b.reduce("ReduceSum", e, [0], True)  # [1,s]
    sq = b.reduce("ReduceSum", b.op("Mul", e, e), [1], True)  # [b,1]
    g = graph([x], [rows, cols, sq], b)
    assert summary(g) == ["reduce: Exp+ReduceSum+Mul+ReduceSum"]


def test_slice_into_elementwise_but_not_after_a_producer_inside():
    x = f32(B, 8)
    b = Builder(name="t")
    sl = b.op("Slice", x, b.const(np.array([0], np.int64)), b.const(np.array([4], np.int64)),
              b.const(np.array([1], np.int64)))
    y = b.op("Exp", sl)
    assert summary(graph([x], [y], b)) == ["elemwise: Slice+Exp"]
    b = Builder(name="t")
    sl = b.op("Slice", b.op("Neg", x), b.const(np.array([0], np.int64)), b.const(np.array([4], np.int64)),
              b.const(np.array([1], np.int64)))
    assert summary(graph([x], [b.op("Exp", sl)], b)) == ["elemwise: Slice+Exp"]


def test_cycle_check_keeps_clusters_acyclic():
    x = f32(B, 8)
    b = Builder(name="t")
    e = b.op("Exp", x)
    h = b.op("Hardmax", e)  # opaque, between e and its second use
    y = b.op("Add", e, h)
    g = graph([x], [y], b)
    p = _Partitioner(g, SymbolEngine.from_graph(g), PartitionOptions())
    exp, _, add = g.nodes
    assert p.valid([exp, add]) and not p.try_merge(exp, add)
    assert summary(g) == []


def test_fused_node_moves_before_an_outside_user_that_preceded_the_last_member():
    x = f32(B, 8)
    b = Builder(name="t")
    e = b.op("Exp", x)
    h = b.op("Hardmax", e)  # reads the cluster's first value, stands before its last member
    n = b.op("Neg", e)
    out = fuse(graph([x], [h, n], b))
    assert [m.op for m in out.nodes] == ["Fused", "Hardmax"]
    assert out.nodes[1].inputs[0] is out.nodes[0].outputs[0] is e

def test_opaque_control_flow_and_shape_computations_never_fuse():
    x = f32(B, S)
    b = Builder(name="t")
    n = b.op("Shape", x)
    m = b.op("Mul", n, b.const(np.array(2, np.int64)))  # host shape math: folded at static shapes
    e = b.op("Exp", x)
    z = Value(TensorType(np.float32, (2 * B, 2 * S)), "z")
    b.nodes.append(Node("ConstantOfShape", (m,), (z,), {}, "", 18, "t/ConstantOfShape"))
    y = b.op("Relu", b.op("LRN", e, size=3))
    g = graph([x], [y, z, b.op("Neg", e)], b)
    assert summary(g) == ["elemwise: Exp+Neg"]
    assert summary(g, disable_ops=frozenset({"Neg"})) == []


def test_split_bounds_ops_and_live_buffers():
    x = f32(B, 8)
    b = Builder(name="t")
    v = x
    for op in ("Exp", "Neg", "Abs", "Sqrt", "Exp", "Neg", "Abs", "Sqrt", "Exp", "Neg"):
        v = b.op(op, v)
    g = graph([x], [v], b)
    assert [len(c.nodes) for c in partition(g)] == [10]
    assert [len(c.nodes) for c in partition(g, options=PartitionOptions(max_ops=4))] == [4, 4, 2]
    ins = [f32(B, 8, name=f"x{i}") for i in range(6)]
    b = Builder(name="t")
    es = [b.op("Exp", v) for v in ins]  # six temporaries live at once before the sums
    acc = es[0]
    for v in es[1:]:
        acc = b.op("Add", acc, v)
    g = graph(ins, [acc], b)
    p = _Partitioner(g, SymbolEngine.from_graph(g), PartitionOptions(max_live=4))
    (whole,) = p.run()
    assert len(whole) == 11 and p.live_peak(whole) == 7
    pieces = p.split(whole)
    assert [len(c) for c in pieces] == [3, 3, 5] and all(p.live_peak(c) <= 4 for c in pieces)
    out = fuse(g, max_live=4)
    assert [n.op for n in out.nodes] == ["Fused"] * 3


# ---------------------------------------------------------------- the O1 pass list and its flags

def o1(g: Graph, flags: str = "") -> Graph:
    from graph_kernel import o1_passes
    for _, fn in o1_passes(flags):
        g = fn(g)
    verify(g)
    return g


def concat_relu():
    x, y = f32(B, 4), f32(B, 4, name="y")
    b = Builder(name="t")
    out = b.op("Tanh", b.op("Relu", b.op("Concat", x, y, axis=1)))
    return graph([x, y], [out], b)


def test_o1_passes_honour_opt_level_disable_pass_and_cluster_ops():
    from graph_kernel import o1_passes
    assert o1_passes("--opt_level=0") == ()
    names = [n for n, _ in o1_passes("")]
    assert names == ["gk_expand", "gk_infer_shapes", "gk_cluster", "gk_stack", "gk_eliminate_dead_code"]
    assert [n for n, _ in o1_passes("--disable_pass=cluster,gk_expand,stack")] == [
        "gk_infer_shapes", "gk_eliminate_dead_code"]
    g = concat_relu()
    assert [n.op for n in o1(g).nodes] == ["Concat", "Fused"]
    assert [n.op for n in o1(g, "--enable_cluster_ops=Concat").nodes] == ["Fused"]
    assert [n.op for n in o1(g, "--disable_cluster_ops=Tanh").nodes] == ["Concat", "Relu", "Tanh"]


def test_dump_as_text_writes_each_pass(tmp_path):
    from framework.compile import O0_PASSES, run_passes
    run_passes(concat_relu(), "O1", graph_kernel_flags=f"--dump_as_text={tmp_path}")
    names = [n for n, _ in O0_PASSES] + ["gk_expand", "gk_infer_shapes", "gk_cluster", "gk_stack",
                                          "gk_eliminate_dead_code"]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["00_input.txt"] + [f"{i:02d}_{n}.txt" for i, n in enumerate(names, start=1)]
    cluster_file = f"{names.index('gk_cluster') + 1:02d}_gk_cluster.txt"
    assert "msgx::Fused" in (tmp_path / cluster_file).read_text()
    assert "msgx::Fused" not in (tmp_path / "00_input.txt").read_text()
