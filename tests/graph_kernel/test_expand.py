"""Expander: each expansion against the op's reference kernel (random inputs, several shapes and dtypes),
printed-IR expectations, the rules for when not to expand, and the Builder."""
import math

import numpy as np
import pytest

import onnx_models
from framework import ops
from framework.compile import run_passes
from framework.errors import ContextError, ShapeError
from framework.executor import GraphExecutor
from framework.ir import Graph, Node, TensorType, Value, print_graph, symbol, verify
from framework.onnx_frontend import import_model
from framework.passes import infer_shapes
from graph_kernel.builder import Builder
from graph_kernel.expand import EXPANDERS, active_ops, default_ops, expand_composites, expand_pass
from graph_kernel.flags import parse_flags

F16, F32, F64 = np.float16, np.float32, np.float64
PRIMITIVES = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Tanh", "Erf", "Reciprocal", "Neg",
              "Abs", "Max", "Min", "Where", "Greater", "GreaterOrEqual", "Less", "ReduceSum", "ReduceMax",
              "Cast", "Unsqueeze", "Squeeze", "Identity"}
TOL = {F32: dict(rtol=1e-5, atol=1e-7), F16: dict(rtol=2e-3, atol=2e-3), F64: dict(rtol=1e-12, atol=1e-15)}


def single(op, shape, dtype, attrs=None, opset=18, extra=(), n_out=1):
    """A one-node graph op(x, *extra) with the extra inputs as constants (None = omitted)."""
    x = Value(TensorType(dtype, shape), "x")
    ins, consts = [x], {}
    for i, arr in enumerate(extra):
        if arr is None:
            ins.append(None)
            continue
        v = Value(TensorType(arr.dtype, arr.shape), f"c{i}")
        consts[v] = arr
        ins.append(v)
    outs = tuple(Value(TensorType(None, None), f"y{i}") for i in range(n_out))
    node = Node(op, tuple(ins), outs, dict(attrs or {}), "", opset, op)
    return infer_shapes(Graph((x,), outs, (node,), consts))


def reference(g, x):
    """The original op's registry kernel, called directly."""
    n = g.nodes[0]
    opdef = ops.get(n.op, "", n.opset)
    args = [x] + [None if v is None else g.constants[v] for v in n.inputs[1:]]
    with np.errstate(all="ignore"):  # the kernel's own overflow warnings (exp of -30 in float16)
        return opdef.ref(ops.Ctx({**opdef.attrs, **n.attrs}, 1, n.opset, n.name), *args)


def sample(shape, dtype, seed):
    """Normal data spread over [-10, 10] plus edge values (0, tiny, large of both signs)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    edge = [0.0, -1e-6, 1e-6, -30.0, 30.0, -1e-3, 5.0, -5.0]
    k = min(len(edge), x.size // 2)  # small shapes stay mostly random
    x.reshape(-1)[:k] = edge[:k]
    return x.astype(dtype)


def _ln(d):
    return lambda rng, dt: (rng.standard_normal(d).astype(dt), rng.standard_normal(d).astype(dt))


def _bn(rng, dt):
    return tuple(rng.standard_normal(3).astype(dt) for _ in range(3)) + (rng.random(3).astype(dt) + 0.5,)


def _axes(*a):
    return lambda rng, dt: (np.array(a, np.int64),)


def _clip(rng, dt):
    return np.array(-0.5, dt), np.array(0.7, dt)


def _two_broadcast(rng, dt):
    return rng.standard_normal(1).astype(dt), np.array(rng.standard_normal(), dt)


# id: (op, attrs, opset, extra inputs (rng, dtype) -> arrays, shapes, dtypes)
S3, S4 = [(7,), (3, 5), (2, 3, 4, 6)], [(3, 6), (2, 3, 4, 6)]
CASES = {
    "gelu_erf": ("Gelu", {}, 20, None, S3, (F32, F16, F64)),
    "gelu_tanh": ("Gelu", {"approximate": "tanh"}, 20, None, S3, (F32, F16, F64)),
    "softmax13": ("Softmax", {}, 13, None, S3, (F32, F16, F64)),
    "softmax13_axis0": ("Softmax", {"axis": 0}, 13, None, S4, (F32,)),
    "softmax11_flatten": ("Softmax", {"axis": 1}, 11, None, S4, (F32, F16)),
    "log_softmax": ("LogSoftmax", {"axis": -2}, 13, None, S4, (F32, F16)),
    "layer_norm": ("LayerNormalization", {}, 17, _ln(6), S4, (F32, F16, F64)),
    "layer_norm_axis1": ("LayerNormalization", {"axis": 1, "epsilon": 1e-3}, 17,
                         lambda rng, dt: (rng.standard_normal((3, 4, 6)).astype(dt),), [(2, 3, 4, 6)],
                         (F32, F16)),
    "layer_norm_f64_stash": ("LayerNormalization", {"stash_type": 11}, 17, _ln(6), S4, (F32, F16)),
    "rms_norm": ("RMSNormalization", {}, 23, lambda rng, dt: (rng.standard_normal(6).astype(dt),), S4,
                 (F32, F16, F64)),
    "batch_norm": ("BatchNormalization", {"epsilon": 1e-3}, 15, _bn, [(2, 3), (2, 3, 5), (2, 3, 4, 5)],
                   (F32, F16, F64)),
    "hard_swish": ("HardSwish", {}, 14, None, S3, (F32, F16)),
    "hard_sigmoid": ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 6, None, S3, (F32, F16)),
    "swish": ("Swish", {"alpha": 1.5}, 24, None, S3, (F32, F16)),
    "mish": ("Mish", {}, 18, None, S3, (F32, F16, F64)),
    "softplus": ("Softplus", {}, 1, None, S3, (F32, F16, F64)),
    "elu": ("Elu", {"alpha": 0.7}, 6, None, S3, (F32, F16, F64)),
    "selu": ("Selu", {}, 6, None, S3, (F32, F16)),
    "softsign": ("Softsign", {}, 1, None, S3, (F32, F16)),
    "clip11": ("Clip", {}, 13, _clip, S3, (F32, F16)),
    "clip11_max_only": ("Clip", {}, 13, lambda rng, dt: (None, np.array(0.7, dt)), S3, (F32,)),
    "clip6": ("Clip", {"min": -0.25}, 6, None, S3, (F32, F64)),
    "reduce_mean18": ("ReduceMean", {"keepdims": 0}, 18, _axes(1, -1), S4, (F32, F16, F64)),
    "reduce_mean13_keep": ("ReduceMean", {"axes": [0]}, 13, None, S4, (F32, F16)),
    "reduce_mean_all": ("ReduceMean", {}, 18, None, S3, (F32,)),
    "reduce_l2": ("ReduceL2", {"keepdims": 0}, 18, _axes(-1), S4, (F32, F16)),
    "reduce_sum_square": ("ReduceSumSquare", {}, 18, _axes(0, 1), S4, (F32, F16)),
    "reduce_log_sum_exp": ("ReduceLogSumExp", {"keepdims": 0}, 18, _axes(1), S4, (F32, F16, F64)),
    "reduce_log_sum_exp13": ("ReduceLogSumExp", {"axes": [-1]}, 13, None, S4, (F32,)),
    "sum1": ("Sum", {}, 13, None, S3, (F32,)),
    "sum3_broadcast": ("Sum", {}, 13, _two_broadcast, S3, (F32, F16, F64)),
    "mean3_broadcast": ("Mean", {}, 13, _two_broadcast, S3, (F32, F16, F64)),
    "max3_broadcast": ("Max", {}, 13, _two_broadcast, S3, (F32, F16)),
    "min3_broadcast": ("Min", {}, 13, _two_broadcast, S3, (F32,)),
    "max1": ("Max", {}, 13, None, S3, (F32,)),
    "cast_like_f16": ("CastLike", {}, 15, lambda rng, dt: (np.zeros(1, F16),), S3, (F32, F64)),
    "cast_like_i64": ("CastLike", {}, 15, lambda rng, dt: (np.zeros(1, np.int64),), S3, (F32,)),
}
PARAMS = [pytest.param(k, shape, dt, id=f"{k}-{'x'.join(map(str, shape))}-{np.dtype(dt).name}")
          for k, (_, _, _, _, shapes, dts) in CASES.items() for shape in shapes for dt in dts]


@pytest.mark.parametrize("case,shape,dtype", PARAMS)
def test_expansion_matches_reference_kernel(case, shape, dtype):
    op, attrs, opset, extra, _, _ = CASES[case]
    rng = np.random.default_rng(len(case))
    g = single(op, shape, dtype, attrs, opset, extra(rng, dtype) if extra else ())
    e = expand_composites(g, enabled=set())
    verify(e)
    assert {n.op for n in e.nodes} <= PRIMITIVES, [n.op for n in e.nodes]
    assert e.outputs == g.outputs  # the last node writes the original output Value
    exe = GraphExecutor(e)
    for seed in range(3):
        x = sample(shape, dtype, seed)
        want = np.asarray(reference(g, x))
        got = exe.run([x])[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got.astype(F64), want.astype(F64), **TOL[dtype])


@pytest.mark.parametrize("op,attrs", [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Sigmoid", {})])
def test_opt_in_expansions_are_exact(op, attrs):
    g = single(op, (4, 5), F32, attrs, 16)
    assert expand_composites(g) is g  # kept as primitives by default
    e = expand_composites(g, enabled={op})
    assert op not in {n.op for n in e.nodes}
    x = sample((4, 5), F32, 0)
    np.testing.assert_array_equal(GraphExecutor(e).run([x])[0], reference(g, x))


def test_softplus_and_elu_stay_accurate_near_zero_and_far_out():
    """log1p/expm1 have no primitive: the rewrites must not cancel where log(1+u) and exp(y)-1 would."""
    x = np.array([-80, -30, -17, -1e-4, -1e-7, 0, 1e-7, 1e-4, 17, 30, 80, np.inf, -np.inf], F32)
    for op in ("Softplus", "Elu"):
        g = single(op, x.shape, F32, {}, 6)
        got = GraphExecutor(expand_composites(g)).run([x])[0]
        np.testing.assert_allclose(got, reference(g, x), rtol=1e-6, atol=0)


def test_softmax_ir():
    b, s = symbol("batch"), symbol("seq")
    e = expand_composites(single("Softmax", (b, s, 8), F32, {}, 13))
    assert print_graph(e) == """graph graph(
  %0: f32[batch,seq,8]  # x
) {
  %1: i64[1] = const i64[2]
  %2: f32[batch,seq,1] = ReduceMax(%0, %1) {keepdims=1}
  %3: f32[batch,seq,8] = Sub(%0, %2)
  %4: f32[batch,seq,8] = Exp(%3)
  %5: f32[batch,seq,1] = ReduceSum(%4, %1) {keepdims=1}
  %6: f32[batch,seq,1] = Reciprocal(%5)
  %7: f32[batch,seq,8] = Mul(%4, %6)
  return %7
}"""


def test_layer_norm_ir_float16_computes_in_stash_type():
    b, s = symbol("batch"), symbol("seq")
    g = single("LayerNormalization", (b, s, 8), F16, {}, 17, (np.ones(8, F16), np.zeros(8, F16)))
    assert print_graph(expand_composites(g)) == """graph graph(
  %0: f16[batch,seq,8]  # x
) {
  %1: f16[8] = const f16[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
  %2: f16[8] = const f16[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
  %3: i64[1] = const i64[2]
  %4: f32[] = const f32[9.999999747378752e-06]
  %5: f32[] = const f32[8.0]
  %6: f32[batch,seq,8] = Cast(%0) {to=1}
  %7: f32[batch,seq,1] = ReduceSum(%6, %3) {keepdims=1}
  %8: f32[batch,seq,1] = Div(%7, %5)
  %9: f32[batch,seq,8] = Sub(%6, %8)
  %10: f32[batch,seq,8] = Mul(%9, %9)
  %11: f32[batch,seq,1] = ReduceSum(%10, %3) {keepdims=1}
  %12: f32[batch,seq,1] = Div(%11, %5)
  %13: f32[batch,seq,1] = Add(%12, %4)
  %14: f32[batch,seq,1] = Sqrt(%13)
  %15: f32[batch,seq,1] = Reciprocal(%14)
  %16: f32[batch,seq,8] = Mul(%9, %15)
  %17: f16[batch,seq,8] = Cast(%16) {to=10}
  %18: f16[batch,seq,8] = Mul(%17, %1)
  %19: f16[batch,seq,8] = Add(%18, %2)
  return %19
}"""


def test_symbolic_dims_expand_and_run_at_any_shape():
    b, s = symbol("batch"), symbol("seq")
    g = single("LayerNormalization", (b, s, 6), F32, {}, 17, _ln(6)(np.random.default_rng(0), F32))
    exe = GraphExecutor(expand_composites(g))
    for shape in ((1, 1, 6), (3, 7, 6)):
        x = sample(shape, F32, 1)
        np.testing.assert_allclose(exe.run([x])[0], reference(g, x), rtol=1e-5, atol=1e-7)


def test_reduce_mean_over_symbolic_dims_stays():
    report = []
    g = single("ReduceMean", (symbol("batch"), 4), F32, {}, 18, (np.array([0], np.int64),))
    assert expand_composites(g, report=report) is g
    assert report[0][1] == "reduced dims are symbolic"


def test_layer_norm_expands_only_when_statistics_are_unused():
    g = single("LayerNormalization", (2, 6), F32, {}, 17, _ln(6)(np.random.default_rng(0), F32), n_out=3)
    assert expand_composites(g) is g  # Mean and InvStdDev are graph outputs
    unused = g.replace(outputs=g.outputs[:1])
    e = expand_composites(unused)
    assert "LayerNormalization" not in {n.op for n in e.nodes}
    verify(e)


def test_batch_norm_with_statistics_outputs_is_training_and_stays():
    g = single("BatchNormalization", (2, 3), F32, {}, 9, _bn(np.random.default_rng(0), F32), n_out=3)
    assert expand_composites(g.replace(outputs=g.outputs[:1])).nodes == g.nodes


def test_batch_norm_constant_parameters_fold_to_one_mul_and_add():
    params = _bn(np.random.default_rng(0), F32)
    e = expand_composites(single("BatchNormalization", (2, 3, 4, 5), F32, {}, 15, params))
    assert [n.op for n in e.nodes] == ["Mul", "Add"]
    assert all(e.constants[v].shape == (3, 1, 1) for v in e.nodes[0].inputs[1:] + e.nodes[1].inputs[1:])


def test_unknown_rank_is_left_alone_and_reported():
    x, y = Value(TensorType(F32, None), "x"), Value(TensorType(F32, None), "y")
    g = Graph((x,), (y,), (Node("Gelu", (x,), (y,), {}, "", 20),))
    report = []
    assert expand_composites(g, report=report) is g
    assert "unknown rank" in report[0][1]


def test_enable_disable_and_recursion():
    g = single("Mish", (3, 4), F32, {}, 18)
    assert "Softplus" not in {n.op for n in expand_composites(g).nodes}
    kept = expand_composites(g, disabled={"Softplus"})
    assert [n.op for n in kept.nodes] == ["Softplus", "Tanh", "Mul"]
    assert expand_composites(g, disabled={"Mish"}) is g
    ln = single("LayerNormalization", (2, 6), F32, {}, 17, _ln(6)(np.random.default_rng(0), F32))
    assert "ReduceMean" in {n.op for n in expand_composites(ln, disabled={"ReduceMean"}).nodes}
    with pytest.raises(ContextError, match="no expander for Conv"):
        expand_composites(g, enabled={"Conv"})
    assert active_ops({"Relu"}, {"Gelu"}) == (default_ops() | {"Relu"}) - {"Gelu"}
    assert {"Relu", "LeakyRelu", "Sigmoid"}.isdisjoint(default_ops()) and set(default_ops()) < set(EXPANDERS)


def test_expand_pass_from_flags():
    g = single("Relu", (3,), F32, {}, 14)
    assert [n.op for n in expand_pass(parse_flags("--enable_expand_ops=Relu"))(g).nodes] == ["Max"]
    with pytest.raises(ContextError):
        expand_pass(parse_flags("--disable_expand_ops=NotAnOp"))


def _torch_gelu_graph(order):
    """PyTorch's exported erf-GELU, x * 0.5 * (1 + erf(x / sqrt(2))), with the operands in either order."""
    x = Value(TensorType(F32, (4, 8)), "x")
    c = {k: Value(TensorType(F32, ()), k) for k in ("sqrt2", "one", "half")}
    vals = [Value(TensorType(F32, (4, 8)), f"t{i}") for i in range(5)]
    sw = (lambda a, b: (b, a)) if order else (lambda a, b: (a, b))
    nodes = (Node("Div", (x, c["sqrt2"]), (vals[0],), opset=17),
             Node("Erf", (vals[0],), (vals[1],), opset=17),
             Node("Add", sw(vals[1], c["one"]), (vals[2],), opset=17),
             Node("Mul", sw(x, vals[2]), (vals[3],), opset=17),
             Node("Mul", sw(vals[3], c["half"]), (vals[4],), opset=17))
    consts = {c["sqrt2"]: np.array(math.sqrt(2), F32), c["one"]: np.array(1, F32),
              c["half"]: np.array(0.5, F32)}
    return Graph((x,), (vals[4],), nodes, consts)


@pytest.mark.parametrize("order", [0, 1])
def test_pytorch_erf_gelu_chain_passes_through_and_matches_gelu(order):
    g = _torch_gelu_graph(order)
    assert expand_composites(g) is g  # already primitives
    x = sample((4, 8), F32, 0)
    gelu = single("Gelu", (4, 8), F32, {}, 20)
    np.testing.assert_allclose(GraphExecutor(g).run([x])[0], reference(gelu, x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["tiny_gpt", "mlp", "mobilenet"])
def test_bundled_models_unchanged_by_expansion(name):
    g = run_passes(import_model(onnx_models.build(name)), "O0")
    e = expand_composites(g)
    verify(e)
    composites = {"LayerNormalization", "Softmax", "Gelu", "ReduceMean"}
    assert not composites & {n.op for n in e.nodes}
    feed = onnx_models.example_inputs(name)
    args = [feed[v.name] for v in g.inputs]
    for want, got in zip(GraphExecutor(g).run(args), GraphExecutor(e).run(args)):
        # the expansion reorders float32 sums (a mean as ReduceSum then Div), so an element near zero that
        # comes from values of order one carries their rounding: absolute error in units of the output scale
        scale = float(np.max(np.abs(want)))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6 * max(scale, 1.0))


# ---------------------------------------------------------------- Builder


def test_builder_infers_types_dedups_constants_and_folds():
    b = Builder(opset=18)
    x = Value(TensorType(F32, (symbol("n"), 3)), "x")
    y = b.op("Mul", x, b.scalar(2, F32))
    assert y.type == TensorType(F32, (symbol("n"), 3)) and b.scalar(2, F32) is b.nodes[0].inputs[1]
    s = b.reduce("ReduceSum", y, [1], keepdims=False)
    assert s.type.shape == (symbol("n"),)
    folded = b.op("Add", b.const(np.array([1, 2], F32)), b.scalar(1, F32))
    np.testing.assert_array_equal(b.constants[folded], [2, 3])
    assert [n.op for n in b.nodes] == ["Mul", "ReduceSum"]
    assert b.cast(x, F32) is x and b.cast(x, F16).type.dtype == F16


def test_builder_out_keeps_original_value_and_checks_dtype():
    b = Builder()
    x, y = Value(TensorType(F32, (3,)), "x"), Value(TensorType(F32, (3,)), "y")
    assert b.op("Neg", x, out=y) is y and b.nodes[-1].outputs == (y,)
    with pytest.raises(ShapeError, match="gives float16"):
        b.op("Cast", x, to=10, out=y)
