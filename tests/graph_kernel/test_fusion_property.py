"""Property: on random graphs (static and symbolic dims) graph O1 computes what O0 computes, and no kernel
treats two sizes as equal that are equal only if two different symbols happen to be equal."""
import numpy as np
import sympy
from hypothesis import event, given, settings, strategies as st

from framework.compile import passes_for, run_passes
from framework.executor import GraphExecutor
from framework.ir import Graph, Node, TensorType, Value, symbol
from graph_kernel.builder import Builder
from graph_kernel.partition import partition
from graph_kernel.symbols import SymbolEngine

B, S, S2, T = (symbol(n) for n in ("b", "s", "s2", "t"))
UNARY = ("Tanh", "Neg", "Abs", "Sigmoid", "Relu", "Sin")
BINARY = ("Add", "Sub", "Mul", "Max", "Min")
REDUCE = ("ReduceSum", "ReduceMax", "ReduceMin")
STEPS = ("unary", "binary", "bias", "reduce", "reshape", "transpose", "slice", "matmul", "concat", "where",
         "maybe_equal", "round_trip", "expand")


def _same(a, b) -> bool:
    return a.type.shape == b.type.shape


def _fits(small, big) -> bool:
    """Structurally broadcastable (each aligned dim 1 or the identical expression)."""
    s, g = small.type.shape, big.type.shape
    return len(s) <= len(g) and all(d == 1 or d == g[len(g) - len(s) + i] for i, d in enumerate(s))


def build(recipe, symbolic: bool, outs: int) -> Graph:
    b_, s_, t_ = (B, S, T) if symbolic else (2, 3, 3)
    f = lambda *shape, name: Value(TensorType(np.float32, shape), name)  # noqa: E731
    x0, x1, z = f(b_, s_, 4, name="x0"), f(b_, s_, 4, name="x1"), f(b_, t_, 4, name="z")
    shp = Value(TensorType(np.int64, (3,)), "shape")
    bld = Builder(name="p")
    i64 = lambda *v: bld.const(np.array(v, np.int64))  # noqa: E731
    pool = [x0, x1]
    for k, (step, i, j) in enumerate(recipe):
        a = pool[i % len(pool)]
        rank, shape = len(a.type.shape), a.type.shape
        same = [v for v in pool if _same(v, a)]
        other = same[j % len(same)]
        small = [v for v in pool if _fits(v, a)]
        v = None
        if step == "unary":
            v = bld.op(UNARY[j % len(UNARY)], a)
        elif step == "binary":
            v = bld.op(BINARY[i % len(BINARY)], a, small[j % len(small)])
        elif step == "bias":
            v = bld.op("Add", a, bld.const(np.linspace(-1, 1, shape[-1] if isinstance(shape[-1], int) else 1,
                                                       dtype=np.float32)))
        elif step == "reduce":
            v = bld.reduce(REDUCE[j % len(REDUCE)], a, [rank - 1 - (j % 2 if rank > 1 else 0)], True)
        elif step == "reshape" and rank == 3 and shape[-1] == 4:
            v = bld.op("Reshape", a, i64(0, 0, 2, 2))
        elif step == "reshape" and rank == 4 and shape[-2:] == (2, 2):
            v = bld.op("Reshape", a, i64(0, 0, 4))
        elif step == "transpose" and rank >= 2:
            v = bld.op("Transpose", a, perm=[1, 0, *range(2, rank)])
        elif step == "slice" and isinstance(shape[-1], int) and shape[-1] >= 2:
            v = bld.op("Slice", a, i64(j % 2), i64(shape[-1]), i64(rank - 1))
        elif step == "matmul" and isinstance(shape[-1], int):
            w = np.random.default_rng(k).standard_normal((shape[-1], 4)).astype(np.float32) / 2
            v = bld.op("MatMul", a, bld.const(w))
        elif step == "concat":
            v = bld.op("Concat", a, other, axis=rank - 1)
        elif step == "where":
            v = bld.op("Where", bld.op("Greater", a, other), a, other)
        elif step == "expand" and rank == 3:  # a reduced [.., 1] broadcast back to 4 columns, else a no-op
            v = bld.op("Expand", a, i64(1, 1, 4 if shape[-1] == 1 else 1))
        elif step == "maybe_equal" and shape == (b_, s_, 4):
            v = bld.op("Add", a, z)  # [b, max(s, t), 4]: s and t might be equal; nothing proves it
        elif step == "round_trip" and shape == (b_, s_, 4):
            flat = bld.op("Reshape", a, i64(-1))
            if symbolic:  # the target is runtime data, so ONNX-style inference gives a fresh dim s2
                y = f(B, S2, 4, name="rt")
                bld.nodes.append(Node("Reshape", (flat, shp), (y,), {}, "", 18, f"p/rt{k}"))
            else:
                y = bld.op("Reshape", flat, i64(b_, s_, 4))
            v = bld.op("Mul", bld.op("Tanh", y), a)  # equal to a's shape only by deduction (s2 = s)
        if v is not None:
            pool.append(v)
    made = pool[2:] or [bld.op("Neg", x0)]
    used = {v for n in bld.nodes for v in n.inputs}
    sinks = [v for v in made if v not in used]  # every result is observed; `outs` intermediates too
    outputs = list(dict.fromkeys(sinks + made[: outs]))
    return Graph((x0, x1, z, shp), tuple(outputs), tuple(bld.nodes), dict(bld.constants), "random")


def feeds(symbolic: bool):
    rng = np.random.default_rng(0)
    dims = [(2, 3, 3), (1, 4, 1), (3, 1, 1)] if symbolic else [(2, 3, 3)]
    for b, s, t in dims:
        x = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
        yield [x(b, s, 4), x(b, s, 4), x(b, t, 4), np.array([b, s, 4], np.int64)]


def before_clustering(g: Graph) -> Graph:
    for name, fn in passes_for("O1"):
        if name == "gk_cluster":
            return g
        g = fn(g)
    raise AssertionError("no gk_cluster pass at O1")


def assert_no_guessed_equality(g: Graph) -> None:
    """Within a kernel, sizes not proved equal must stay different even when t == s."""
    engine = SymbolEngine.from_graph(g)
    for c in partition(g, engine):
        sizes = {engine.numel(v.type.shape) for n in c.nodes for v in n.outputs}
        for a in sizes:
            for b in sizes:
                if not engine.equal(a, b):
                    assert sympy.simplify((a - b).subs(T, S)) != 0, (c.kind, [n.op for n in c.nodes], a, b)


recipes = st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 50), st.integers(0, 50)), min_size=1,
                   max_size=10)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(recipe=recipes, symbolic=st.booleans(), outs=st.integers(0, 2))
def test_random_graphs_o1_matches_o0(recipe, symbolic, outs):
    g = build(recipe, symbolic, outs)
    g0, g1 = run_passes(g, "O0", check=True), run_passes(g, "O1", check=True)
    assert_no_guessed_equality(before_clustering(g))
    for n in g1.nodes:
        if n.op == "Fused":
            event(f"{'symbolic' if symbolic else 'static'} {n.attrs['kind']}")
    e0, e1 = GraphExecutor(g0), GraphExecutor(g1)
    for args in feeds(symbolic):
        for a, b in zip(e0.run(args), e1.run(args), strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_the_generator_covers_fusion_and_the_symbol_cases():
    """The recipes above reach clusters, the deduced seq and the maybe-equal symbols."""
    recipe = [("round_trip", 0, 0), ("maybe_equal", 1, 0), ("unary", 3, 0), ("reduce", 2, 0),
              ("binary", 2, 1), ("matmul", 0, 0), ("unary", 7, 0)]
    g = before_clustering(build(recipe, True, 0))
    clusters = partition(g)
    assert [(c.kind, "+".join(n.op for n in c.nodes)) for c in clusters] == [
        ("sequence", "Reshape+Reshape+Tanh+Mul+ReduceSum+Mul"),  # s2 = s by deduction: one kernel
        ("elemwise", "Add+Tanh"),  # max(s, t): kept apart from the s-sized kernels
        ("matmul_epilogue", "MatMul+Tanh")]
    assert_no_guessed_equality(g)
