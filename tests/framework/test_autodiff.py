"""Reverse-mode autodiff: every registry op with a `grad` rule against float64 central differences (generated
from the registry; SPECS is the only per-op code), plus accumulation, symbolic shapes and ONNX's Gradient op."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import framework
from framework import ops
from framework.autodiff import grad_graph
from framework.compile import run_passes
from framework.errors import UnsupportedOpError
from framework.executor import GraphExecutor
from framework.graph_builder import Builder
from framework.ir import Graph, TensorType, Value, verify
from framework.onnx_frontend import import_model

F64 = np.dtype(np.float64)


class Pos(tuple):
    """A shape whose random values are positive (Log, Sqrt, Pow's base, Div's divisor)."""


class Unit(tuple):
    """A shape whose random values lie in (-0.8, 0.8) (Asin, Acos, Atanh)."""


class Above1(tuple):
    """A shape whose random values lie in (1.5, 3) (Acosh)."""


def i64(*v):
    return np.array(v, np.int64)


U = [((2, 3),), ((4,),)]  # plain unary cases
BIN = [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1, 4), (3, 1)), ((), (2, 2))]
COND = np.array([[True, False, True], [False, False, True]])

# op -> cases; a case is (inputs, attrs[, tolerance overrides]); an input is a shape (random float64,
# differentiated), a Pos shape, an array (a constant, not differentiated) or None (omitted); (op, since) keys
# pick one version where versions take different inputs
SPECS = {
    **{name: [(c, {}) for c in U] for name in ("Neg", "Exp", "Abs", "Tanh", "Sigmoid", "Relu", "Erf", "Identity")},
    "Log": [((Pos((2, 3)),), {})], "Sqrt": [((Pos((2, 3)),), {})],
    **{name: [(c, {}) for c in BIN] for name in ("Add", "Sub", "Mul")},
    "Div": [((a, Pos(b)), {}) for a, b in BIN],
    "Pow": [((Pos((2, 3)), (3,)), {}), ((Pos((2, 3)), np.array(3.0)), {}), ((Pos((3,)), i64(2)), {})],
    "Sum": [(((2, 3), (3,), (1, 3)), {}), (((4,),), {})],
    "Mean": [(((2, 3), (3,), (1, 3)), {})],
    "Max": [(((2, 3), (3,)), {}), (((2, 3), (2, 3), (3,)), {})],
    "Min": [(((2, 3), (3,)), {}), (((2, 1), (2, 3), (3,)), {})],
    "Where": [((COND, (2, 3), (3,)), {}), ((COND[0], (2, 3), ()), {})],
    "MatMul": [(((2, 3), (3, 4)), {}), (((2, 2, 3), (3, 4)), {}), (((2, 1, 2, 3), (3, 3, 2)), {}),
               (((3,), (3, 4)), {}), (((2, 3), (3,)), {}), (((3,), (3,)), {}), (((2, 3), (2, 3, 2)), {})],
    "Gemm": [(((2, 3), (3, 4), (4,)), {}), (((3, 2), (4, 3), (1, 4)), {"transA": 1, "transB": 1, "alpha": 0.5,
                                                                       "beta": 2.0}),
             (((3, 2), (3, 4)), {"transA": 1}), (((2, 3), (4, 3), ()), {"transB": 1, "beta": -1.5})],
    ("Reshape", 1): [(((2, 3),), {"shape": (3, 2)})],
    ("Reshape", 5): [(((2, 3), i64(3, -1)), {}), (((2, 3, 4), i64(0, -1)), {})],
    "Transpose": [(((2, 3, 4),), {"perm": (1, 2, 0)}), (((2, 3),), {})],
    **{(name, 1): [(((2, 3, 4),), {"axes": (1,), "keepdims": 0}), (((2, 3),), {}),
                   (((2, 3, 4),), {"axes": (0, -1)})] for name in ("ReduceSum", "ReduceMean")},
    **{(name, v): [(((2, 3, 4), i64(0, 2)), {}), (((2, 3), i64(-1)), {"keepdims": 0}), (((2, 3),), {}),
                   (((2, 3),), {"noop_with_empty_axes": 1})] for name, v in (("ReduceSum", 13), ("ReduceMean", 18))},
    **{(name, 1): [(((2, 3, 4),), {"axis": 1}), (((3, 4),), {})] for name in ("Softmax", "LogSoftmax")},
    **{(name, 13): [(((2, 3, 4),), {"axis": 1}), (((3, 4),), {})] for name in ("Softmax", "LogSoftmax")},
    "Cast": [(((2, 3),), {"to": TensorProto.DOUBLE}),
             (((2, 3),), {"to": TensorProto.FLOAT}, {"eps": 1e-2, "rtol": 1e-4})],  # float32 rounds steps
    "Concat": [(((2, 3), (2, 1), (2, 2)), {"axis": 1}), (((1, 3), (2, 3)), {"axis": 0}), (((2,), (3,)), {})],
    "Gather": [(((5, 3), i64(0, 2, 2, -1)), {}), (((2, 4, 3), np.array([[1, 3], [0, 1]])), {"axis": 1}),
               (((4,), np.array(2)), {}), (((2, 3), i64(1, 1)), {"axis": -1})],
    # rules attached in framework/ops/grads_nn.py
    **{name: [(c, {}) for c in U] for name in ("Sin", "Cos", "Sinh", "Cosh", "Atan", "Softplus", "Softsign")},
    "Tan": [((Pos((2, 3)),), {})], "Reciprocal": [((Pos((2, 3)),), {})],
    "LeakyRelu": [(((2, 3),), {"alpha": 0.1})], "Gelu": [(((2, 3),), {})],
    ("Clip", 1): [(((2, 3),), {"min": -0.5, "max": 0.5}), (((2, 3),), {})],
    ("Clip", 11): [(((2, 3), np.array(-0.5), np.array(0.5)), {}), (((2, 3), np.array(0.2)), {}),
                   (((2, 3), None, np.array(0.2)), {})],
    ("Unsqueeze", 1): [(((2, 3),), {"axes": (0, 3)})], ("Unsqueeze", 13): [(((2, 3), i64(1)), {})],
    ("Squeeze", 1): [(((2, 1, 3),), {"axes": (1,)})],
    ("Squeeze", 13): [(((2, 1, 3), i64(1)), {}), (((1, 3, 1),), {})],
    "Flatten": [(((2, 3, 4),), {"axis": 2}), (((2, 3),), {"axis": 0})],
    "Expand": [(((3, 1), i64(2, 3, 4)), {}), (((3,), i64(2, 1)), {})],
    ("Slice", 10): [(((4, 5), i64(1, 0), i64(3, 5), i64(0, 1), i64(1, 2)), {}),
                    (((6,), i64(-1), i64(-7), i64(0), i64(-2)), {}), (((3, 4), i64(1), i64(100)), {})],
    "LayerNormalization": [(((2, 3, 4), (4,), (4,)), {}), (((2, 3, 4), (3, 4), (3, 4)), {"axis": 1}),
                           (((3, 4), (4,)), {"epsilon": 1e-3}), (((2, 3, 4), (1,), (4,)), {})],
    "Conv": [(((2, 3, 5, 5), (4, 3, 3, 3), (4,)), {"pads": (1, 1, 1, 1)}),
             (((1, 4, 6, 5), (4, 2, 3, 2)), {"strides": (2, 1), "group": 2, "pads": (0, 1, 1, 0)}),
             (((1, 2, 7, 7), (3, 2, 3, 3)), {"dilations": (2, 2), "auto_pad": "SAME_UPPER"}),
             (((1, 2, 5, 5), (2, 2, 1, 1)), {"strides": (2, 2)})],
    "MaxPool": [(((2, 3, 5, 5),), {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)}),
                (((1, 2, 4, 4),), {"kernel_shape": (2, 2), "strides": (2, 2)}),
                (((1, 1, 5, 5),), {"kernel_shape": (2, 2), "ceil_mode": 1, "strides": (2, 2)})],
    "AveragePool": [(((2, 3, 5, 5),), {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)}),
                    (((1, 2, 5, 5),), {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1), "count_include_pad": 1}),
                    (((1, 1, 4, 4),), {"kernel_shape": (2, 2), "strides": (2, 2)})],
    # rules attached in framework/ops/grads_math.py
    **{name: [((Unit((2, 3)),), {})] for name in ("Asin", "Acos", "Atanh")},
    "Asinh": [(((2, 3),), {})], "Acosh": [((Above1((2, 3)),), {})],
    **{name: [(c, {}) for c in U] for name in ("Elu", "Selu", "Celu", "HardSwish", "Mish")},
    "ThresholdedRelu": [(((2, 3),), {"alpha": 0.3})],
    "HardSigmoid": [(((2, 3),), {"alpha": 0.3, "beta": 0.4})],
    "Swish": [(((2, 3),), {"alpha": 0.7})],
    "PRelu": [(((2, 3), (3,)), {}), (((2, 3, 4), (3, 1)), {})],
    **{(name, 1): [(((2, 3, 4),), {"axes": (1,), "keepdims": 0}), (((2, 3),), {})]
       for name in ("ReduceSumSquare", "ReduceL1", "ReduceLogSumExp", "ReduceMax", "ReduceMin")},
    **{(name, 18): [(((2, 3, 4), i64(0, 2)), {}), (((2, 3), i64(-1)), {"keepdims": 0})]
       for name in ("ReduceSumSquare", "ReduceL1", "ReduceLogSumExp", "ReduceMax", "ReduceMin")},
    ("ReduceL2", 1): [(((2, 3, 4),), {"axes": (1,), "keepdims": 0})],
    ("ReduceL2", 18): [(((2, 3), i64(1)), {})],
    ("ReduceLogSum", 1): [((Pos((2, 3)),), {"axes": (1,)})], ("ReduceLogSum", 18): [((Pos((2, 3)),), {})],
    "CastLike": [(((2, 3), np.zeros(1, np.float32)), {}, {"eps": 1e-2, "rtol": 1e-4})],
    "Tile": [(((2, 3), i64(2, 1)), {}), (((2, 1, 3), i64(1, 3, 2)), {})],
    "CumSum": [(((2, 3), i64(1)), {}), (((4,), i64(0)), {"reverse": 1, "exclusive": 1})],
}

# every registry op without a gradient rule, with the reason (the test below keeps this table complete)
_NOT = {
    "outputs are integers, booleans, strings or sizes (nothing to differentiate)": [
        "And", "ArgMax", "ArgMin", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor",
        "BitCast",
        "Equal", "Greater", "GreaterOrEqual", "IsInf", "IsNaN", "Less", "LessOrEqual", "Not", "Or", "Xor",
        "NonZero", "Shape", "Size", "NonMaxSuppression", "RegexFullMatch", "StringConcat", "StringNormalizer",
        "StringSplit", "TfIdfVectorizer", "ImageDecoder", "ai.onnx.ml::ArrayFeatureExtractor",
        "ai.onnx.ml::Binarizer", "ai.onnx.ml::LabelEncoder", "ai.onnx.ml::TreeEnsemble"],
    "creation ops: the output depends only on sizes or constants": [
        "ConstantOfShape", "EyeLike", "Range", "OneHot", "BlackmanWindow", "HammingWindow", "HannWindow",
        "MelWeightMatrix"],
    "piecewise constant: the gradient is zero almost everywhere": [
        "Ceil", "Floor", "Round", "Sign", "Hardmax"],
    "random sampling": ["Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform",
                        "RandomUniformLike"],
    "quantized integer arithmetic": ["ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul",
                                     "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"],
    "control flow and sequence/optional values: grad_graph does not differentiate through subgraphs": [
        "If", "Loop", "Scan", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
        "SequenceInsert", "SequenceLength", "SequenceMap", "SplitToSequence", "ConcatFromSequence",
        "Optional", "OptionalGetElement", "OptionalHasElement"],
    "optimizer updates (they consume gradients)": ["ai.onnx.preview.training::Adagrad",
                                                   "ai.onnx.preview.training::Adam",
                                                   "ai.onnx.preview.training::Momentum"],
    "msgx internal: fused kernels form after autodiff; gradient kernels are not differentiated again": [
        "msgx::Fused", "msgx::FusedConv", "msgx::ConvGradW", "msgx::ConvGradX", "msgx::MaxPoolGrad",
        "msgx::AveragePoolGrad", "msgx::SliceGrad", "msgx::GatherGrad"],
    "training uses differentiable primitives instead (framework.ops: batch_norm, dropout, cross_entropy)": [
        "BatchNormalization", "Dropout", "NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"],
    "differentiable, rule not written yet": [
        "AffineGrid", "Attention", "CausalConvWithState", "CenterCropPad", "Col2Im", "Compress",
        "ConvTranspose",
        "CumProd", "DFT", "DeformConv", "DepthToSpace", "Det", "Einsum", "GRU", "GatherElements", "GatherND",
        "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "GridSample", "GroupNormalization",
        "InstanceNormalization", "LRN", "LSTM", "LinearAttention", "LpNormalization", "LpPool", "MaxUnpool",
        "MeanVarianceNormalization", "Mod", "Pad", "RMSNormalization", "RNN", "ReduceProd", "Resize",
        "ReverseSequence", "RoiAlign", "RotaryEmbedding", "STFT", "Scatter", "ScatterElements", "ScatterND",
        "Shrink", "SpaceToDepth", "Split", "SwiGLU", "TensorScatter", "TopK", "Trilu", "Unique", "Upsample",
        "ai.onnx.preview::FlexAttention"],
}
NOT_DIFFERENTIABLE = {name: why for why, names in _NOT.items() for name in names}


def _grad_ops():
    return sorted((d for d in ops.all_ops() if d.grad is not None), key=lambda d: (d.domain, d.name, d.since))


def _cases():
    for d in _grad_ops():
        for i, case in enumerate(SPECS.get((d.name, d.since), SPECS.get(d.name, []))):
            yield pytest.param(d, case, id=f"{d.name}-{d.since}-{i}")


def test_every_grad_rule_has_a_spec():
    missing = [f"{d.name} (since {d.since})" for d in _grad_ops() if (d.name, d.since) not in SPECS
               and d.name not in SPECS]
    assert not missing, f"grad rules without a finite-difference spec: {missing}"


def _qualified(d):
    return f"{d.domain}::{d.name}" if d.domain else d.name


def test_every_op_without_a_rule_is_listed_with_a_reason():
    with_rule = {_qualified(d) for d in ops.all_ops() if d.grad is not None}
    without = {_qualified(d) for d in ops.all_ops()} - with_rule
    assert not sorted(without - set(NOT_DIFFERENTIABLE)), "ops with no gradient rule and no reason listed"
    assert not sorted(set(NOT_DIFFERENTIABLE) & with_rule), "listed as not differentiable but has a rule"
    assert not sorted(set(NOT_DIFFERENTIABLE) - without), "listed ops that are not registered"


def _build(opdef, specs, attrs, rng):
    """One node of `opdef`'s version over the spec'd inputs: (graph, differentiated inputs, their arrays)."""
    ins, xs, feeds, consts = [], [], [], {}
    for k, s in enumerate(specs):
        if s is None:
            ins.append(None)
        elif isinstance(s, np.ndarray):
            v = Value(TensorType(s.dtype, s.shape), f"c{k}")
            consts[v] = s
            ins.append(v)
        else:
            v = Value(TensorType(F64, tuple(s)), f"x{k}")
            a = {Pos: lambda: rng.uniform(0.5, 2.0, s), Unit: lambda: rng.uniform(-0.8, 0.8, s),
                 Above1: lambda: rng.uniform(1.5, 3.0, s)}.get(type(s), lambda: rng.standard_normal(s))()
            ins.append(v), xs.append(v), feeds.append(np.asarray(a, F64))
    b = Builder(consts, opset=opdef.since, name="fwd")
    y = b.op(opdef.name, *ins, domain=opdef.domain, **attrs)
    return Graph(tuple(xs), (y,), tuple(b.nodes), consts), xs, feeds


@pytest.mark.parametrize("opdef, case", list(_cases()))
def test_grad_matches_finite_differences(opdef, case):
    specs, attrs, tol = case if len(case) == 3 else (*case, {})
    rng = np.random.default_rng(0)
    fwd, xs, feeds = _build(opdef, specs, attrs, rng)
    (y,) = fwd.outputs
    w = Value(y.type, "seed")
    nodes, consts, grads = grad_graph(fwd, [y], xs, seeds=[w])
    full = Graph(fwd.inputs + (w,), tuple(grads), fwd.nodes + tuple(nodes), {**fwd.constants, **consts})
    verify(full)
    seed = rng.standard_normal(y.type.shape)
    got = GraphExecutor(run_passes(full, "O0", check=True)).run(feeds + [seed])
    forward = GraphExecutor(fwd)

    def loss(arrays):
        return float(np.sum(np.asarray(forward.run(arrays)[0], F64) * seed))
    for k, (x, g) in enumerate(zip(feeds, got)):
        assert g.shape == x.shape and g.dtype == F64
        want = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            eps = tol.get("eps", 1e-6) * max(1.0, abs(x[i]))
            hi, lo = [a.copy() for a in feeds], [a.copy() for a in feeds]
            hi[k][i] += eps
            lo[k][i] -= eps
            want[i] = (loss(hi) - loss(lo)) / (2 * eps)
        rtol = tol.get("rtol", 1e-6)
        np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * max(1.0, np.abs(want).max(initial=0)),
                                   err_msg=f"d/d input {k}")


# ---------------------------------------------------------------- grad_graph behaviour

def _value(shape, name):
    return Value(TensorType(F64, shape), name)


def _run(graph, ys, xs, feeds, seeds=None):
    nodes, consts, grads = grad_graph(graph, ys, xs, seeds)
    full = Graph(graph.inputs, tuple(grads), graph.nodes + tuple(nodes), {**graph.constants, **consts})
    verify(full)
    return GraphExecutor(full).run(feeds)


def test_values_used_twice_accumulate_and_unrelated_inputs_get_zeros():
    x, z = _value((3,), "x"), _value((2,), "z")
    b = Builder(name="f")
    y = b.op("Add", b.op("Mul", x, x), b.op("Exp", x))  # y = x^2 + e^x
    g = Graph((x, z), (y,), tuple(b.nodes))
    xv = np.array([0.5, -1.0, 2.0])
    dx, dz = _run(g, [y], [x, z], [xv, np.ones(2)])
    np.testing.assert_allclose(dx, 2 * xv + np.exp(xv))
    np.testing.assert_array_equal(dz, np.zeros(2))


def test_missing_rule_names_the_op():
    x = _value((3, 3), "x")
    b = Builder(name="f")
    y = b.op("Trilu", x)
    with pytest.raises(UnsupportedOpError, match="Trilu.*no gradient rule"):
        grad_graph(Graph((x,), (y,), tuple(b.nodes)), [y], [x])


# ---------------------------------------------------------------- ONNX Gradient op, symbolic shapes

def _gradient_model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                               helper.make_opsetid("ai.onnx.preview.training", 1)])


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.DOUBLE, shape)


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_gradient_op_with_symbolic_batch(mode):
    """loss = sum(tanh(x @ W + b)): dW, db, dx at several batch sizes, one compiled session."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["s"]),
             helper.make_node("Tanh", ["s"], ["t"]), helper.make_node("ReduceSum", ["t"], ["loss"], keepdims=0),
             helper.make_node("Gradient", ["W", "b", "x"], ["dW", "db", "dx"], domain="ai.onnx.preview.training",
                              xs=["W", "b", "x"], y="loss")]
    m = _gradient_model(nodes, [_vi("x", ["batch", 3]), _vi("W", [3, 4]), _vi("b", [4])],
                        [_vi("dW", None), _vi("db", None), _vi("dx", None)])
    s = framework.InferenceSession(m, mode=mode, check_ir=True)
    rng = np.random.default_rng(1)
    W, bias = rng.standard_normal((3, 4)), rng.standard_normal(4)
    for n in (1, 2, 5):
        x = rng.standard_normal((n, 3))
        dW, db, dx = s.run(None, {"x": x, "W": W, "b": bias})
        d = 1 - np.tanh(x @ W + bias) ** 2
        np.testing.assert_allclose(dW, x.T @ d)
        np.testing.assert_allclose(db, d.sum(0))
        np.testing.assert_allclose(dx, d @ W.T)


def test_gradient_op_broadcast_dims_that_may_be_one():
    """x [n, 3] + y [m, 3]: whether n or m is 1 is known only at run time."""
    nodes = [helper.make_node("Mul", ["x", "y"], ["p"]), helper.make_node("ReduceSum", ["p"], ["loss"], keepdims=0),
             helper.make_node("Gradient", ["x", "y"], ["dx", "dy"], domain="ai.onnx.preview.training",
                              xs=["x", "y"], y="loss")]
    m = _gradient_model(nodes, [_vi("x", ["n", 3]), _vi("y", ["m", 3])], [_vi("dx", None), _vi("dy", None)])
    s = framework.InferenceSession(m, check_ir=True)
    rng = np.random.default_rng(2)
    for n, k in ((1, 4), (4, 1), (4, 4), (1, 1)):
        x, y = rng.standard_normal((n, 3)), rng.standard_normal((k, 3))
        dx, dy = s.run(None, {"x": x, "y": y})
        np.testing.assert_allclose(dx, np.broadcast_to(y, (max(n, k), 3)).sum(0, keepdims=True) if n == 1
                                   else np.broadcast_to(y, (n, 3)))
        np.testing.assert_allclose(dy, np.broadcast_to(x, (max(n, k), 3)).sum(0, keepdims=True) if k == 1
                                   else np.broadcast_to(x, (k, 3)))


def test_gradient_op_at_other_points_and_zs_held_constant():
    """Gradient(xs=[H], zs=[Z], y=Y) fed H_1: dY/dH evaluated at H_1, Z not differentiated."""
    nodes = [helper.make_node("Mul", ["w", "w"], ["H"]), helper.make_node("Mul", ["H", "Z"], ["Y0"]),
             helper.make_node("Mul", ["Y0", "H"], ["Y"]),  # Y = H^2 Z
             helper.make_node("Gradient", ["H1", "Z"], ["dH"], domain="ai.onnx.preview.training",
                              xs=["H"], zs=["Z"], y="Y")]
    m = _gradient_model(nodes, [_vi("w", [2]), _vi("Z", [2]), _vi("H1", [2])], [_vi("Y", None), _vi("dH", None)])
    s = framework.InferenceSession(m, check_ir=True)
    w, z, h1 = np.array([1.0, 2.0]), np.array([3.0, -1.0]), np.array([0.5, 4.0])
    y, dh = s.run(None, {"w": w, "Z": z, "H1": h1})
    np.testing.assert_allclose(y, w ** 4 * z)
    np.testing.assert_allclose(dh, 2 * h1 * z)
    assert not any(n.domain for n in import_model(m).nodes)


def test_symbolic_shapes_give_the_static_gradients():
    """Concat, Gather, ReduceMean, Reshape, Softmax, MatMul rules on [n, 4] inputs match the static-shape graph."""
    def model(n):
        nodes = [helper.make_node("Concat", ["x", "z"], ["c"], axis=0),
                 helper.make_node("Gather", ["c", "idx"], ["g"], axis=0),
                 helper.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=0),
                 helper.make_node("Mul", ["g", "m"], ["p"]),
                 helper.make_node("Softmax", ["c"], ["s"], axis=0),
                 helper.make_node("Reshape", ["s", "flat"], ["r"]),
                 helper.make_node("MatMul", ["r", "r"], ["q"]),
                 helper.make_node("ReduceSum", ["p"], ["ps"], keepdims=0),
                 helper.make_node("Add", ["ps", "q"], ["loss"]),
                 helper.make_node("Gradient", ["x", "z"], ["dx", "dz"], domain="ai.onnx.preview.training",
                                  xs=["x", "z"], y="loss")]
        inits = [helper.make_tensor("idx", TensorProto.INT64, [3], [0, -1, 1]),
                 helper.make_tensor("flat", TensorProto.INT64, [1], [-1])]
        return _gradient_model(nodes, [_vi("x", [n, 4]), _vi("z", [2, 4])], [_vi("dx", None), _vi("dz", None)],
                               inits)
    rng = np.random.default_rng(3)
    dynamic = framework.InferenceSession(model("n"), check_ir=True)
    for n in (1, 3):
        feed = {"x": rng.standard_normal((n, 4)), "z": rng.standard_normal((2, 4))}
        want = framework.InferenceSession(model(n), check_ir=True).run(None, feed)
        for got, w in zip(dynamic.run(None, feed), want):
            np.testing.assert_allclose(got, w, rtol=1e-12)
