"""The symbol engine proves dim equalities from the graph's facts and never guesses."""
import numpy as np
import sympy

from framework.ir import Graph, Node, TensorType, Value, symbol
from framework.passes import infer_shapes
from graph_kernel.builder import Builder
from graph_kernel.symbols import SymbolEngine

B, S, S2, T, K = (symbol(n) for n in ("b", "s", "s2", "t", "k"))


def f32(*shape, name="x"):
    return Value(TensorType(np.float32, shape), name)


def engine_of(inputs, outputs, b: Builder) -> SymbolEngine:
    g = Graph(tuple(inputs), tuple(outputs), tuple(b.nodes), dict(b.constants), "t")
    return SymbolEngine.from_graph(infer_shapes(g))


def round_trip():
    """x[b,s,4] -> flat[4*b*s] -> Reshape(flat, runtime shape) typed [b,s2,4] (as ONNX leaves it) -> Add."""
    x, shp = f32(B, S, 4), Value(TensorType(np.int64, (3,)), "shape")
    b = Builder(name="rt")
    flat = b.op("Reshape", x, b.const(np.array([-1], np.int64)))
    y = f32(B, S2, 4, name="y")  # the builder cannot infer a runtime target; ONNX gives a fresh dim
    b.nodes.append(Node("Reshape", (flat, shp), (y,), {}, "", 18, "rt/Reshape2"))
    z = b.op("Add", x, y)
    return [x, shp], [z], b


def test_reshape_round_trip_proves_seq_equal_to_itself():
    inputs, outputs, b = round_trip()
    assert not SymbolEngine().equal(S2, S)  # no facts, no proof
    e = engine_of(inputs, outputs, b)
    assert e.describe() == "s2 = s"
    assert e.equal(S2, S) and e.equal(sympy.Max(S, S2), S)
    assert e.same_shape((B, S, 4), (B, sympy.Max(S, S2), 4))
    assert e.numel((B, S2, 4)) == 4 * B * S


def test_symbols_that_merely_might_be_equal_are_not_equal():
    x, y = f32(B, S), f32(B, T, name="y")
    b = Builder(name="mb")
    z = b.op("Add", x, y)
    assert z.type.shape == (B, sympy.Max(S, T))
    e = engine_of([x, y], [z], b)
    assert e.describe() == ""
    assert not e.equal(S, T) and not e.equal(sympy.Max(S, T), S)
    assert not e.same_shape(x.type.shape, z.type.shape)
    assert e.equal(S * T, T * S) and e.equal(B * (S + 1), B * S + B)


def test_matmul_and_concat_dims_must_agree():
    x, w, c = f32(B, K), f32(T, 8, name="w"), f32(S, 8, name="c")
    b = Builder(name="mm")
    y = b.op("MatMul", x, w)
    z = b.op("Concat", y, c, axis=0)
    e = engine_of([x, w, c], [z], b)
    assert e.equal(K, T) and e.describe() == "k = t"
    assert e.equal(z.type.shape[0], B + S)


def test_broadcast_equality_needs_both_dims_proved_at_least_two():
    x, y = f32(2 * S), f32(T + 1, name="y")
    b = Builder(name="bc")
    z = b.op("Mul", x, y)
    e = engine_of([x, y], [z], b)
    assert e.describe() == "t = 2*s - 1"
    assert e.equal(T + 1, 2 * S) and e.equal(z.type.shape[0], 2 * S)


def test_broadcast_against_a_static_dim_bounds_the_range_only():
    x, y = f32(S), f32(5, name="y")
    b = Builder(name="rg")
    b.op("Add", x, y)
    e = engine_of([x, y], [], b)
    assert e.describe() == "s in [1, 5]"
    assert not e.equal(S, 5)  # s may be 1
    assert e.canon(sympy.Max(S, 5)) == 5  # but never exceeds 5


def test_divisibility_from_fractional_dims():
    x = f32(S / 4, 4)
    e = engine_of([x], [], Builder())
    assert e.describe() == "4 | s"
    assert e.lower(S) == 4 and e.lower(S / 4) == 1


def test_learned_products_cancel_common_factors():
    e = SymbolEngine(frozenset({B, S}))
    assert e.learn_equal(B * S * 64, B * T * 64)
    assert e.equal(T, S) and e.describe() == "t = s"
    assert not e.learn_equal(4, 5)  # contradictions are not facts
    assert not e.learn_equal(B * S, 12) and "b*s - 12 = 0" in e.describe()
    assert not e.equal(S, 12)


def test_dims_with_floor_are_recorded_not_solved():
    """A strided pool's floor(h/2) concatenated with a free dim: the equality is kept as a relation (sympy
    cannot solve for a symbol inside floor) and O1 compiles and runs."""
    import framework
    from onnx import TensorProto, helper
    g = helper.make_graph(
        [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Concat", ["p", "y"], ["r"], axis=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, "H", 4]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "K", 2])],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, None)])
    s = framework.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
                                   jit_level="O1")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 7, 4), dtype=np.float32)
    y = rng.standard_normal((1, 3, 3, 2), dtype=np.float32)
    pooled = x[:, :, :6].reshape(1, 2, 3, 2, 2, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(s.run(None, {"x": x, "y": y})[0], np.concatenate([pooled, y], axis=1))
