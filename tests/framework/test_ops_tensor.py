"""Tensor, cast and sequence op families: symbolic inference, dtype semantics, kernels vs naive loops."""
import math

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper

import framework
from framework import ops
from framework.ir import UNKNOWN, Graph, Node, TensorType, Value, symbol
from framework.passes import infer_shapes

B, S = symbol("batch"), symbol("seq")


def run(name, *inputs, opset=21, num_outputs=1, **attrs):
    """Call a registered kernel directly, defaults merged in as the backend does."""
    d = ops.get(name, "", opset)
    return d.ref(ops.Ctx({**d.attrs, **attrs}, num_outputs, opset), *inputs)


class _G:
    """Tiny IR graph builder for inference tests: outputs start UNKNOWN, so only our rules type them."""

    def __init__(self, *inputs):
        self.inputs, self.nodes, self.consts = inputs, [], {}

    def const(self, arr):
        arr = np.asarray(arr)
        v = Value(TensorType(arr.dtype, arr.shape), f"c{len(self.consts)}")
        self.consts[v] = arr
        return v

    def __call__(self, op, *ins, nout=1, opset=17, **attrs):
        outs = tuple(Value(UNKNOWN, f"{op}{len(self.nodes)}_{i}") for i in range(nout))
        self.nodes.append(Node(op, ins, outs, attrs, "", opset, f"n{len(self.nodes)}"))
        return outs if nout > 1 else outs[0]

    def types(self, *outs):
        g = infer_shapes(Graph(tuple(self.inputs), outs, tuple(self.nodes), self.consts))
        return [v.type for v in g.outputs]


def _x(shape=(B, S, 64), dtype=np.float32):
    return Value(TensorType(dtype, shape), "x")


# ---------------------------------------------------------------- symbolic inference

def test_transformer_reshape_chain_is_symbolic():
    x = _x()
    g = _G(x)
    shape = g("Shape", x)
    dims = [g("Unsqueeze", g("Gather", shape, g.const(np.array(i))), g.const(np.array([0]))) for i in (0, 1)]
    target = g("Concat", *dims, g.const(np.array([4])), g.const(np.array([16])), axis=0)
    heads = g("Reshape", x, target)
    perm = g("Transpose", heads, perm=(0, 2, 1, 3))
    merged = g("Reshape", perm, g.const(np.array([0, 0, -1])))
    t = g.types(heads, perm, merged, target)
    assert t[0] == TensorType(np.float32, (B, S, 4, 16))
    assert t[1].shape == (B, 4, S, 16)
    assert t[2].shape == (B, 4, 16 * S)
    assert t[3] == TensorType(np.int64, (4,))


def test_symbolic_slice_range_expand_flatten_split():
    x = _x()
    g = _G(x)
    shape = g("Shape", x)
    seq = g("Gather", shape, g.const(np.array(1)))
    tail = g("Slice", x, g.const([1]), g.const([2 ** 63 - 1]), g.const([1]))
    rev = g("Slice", x, g.const([-1]), g.const([-2 ** 63]), g.const([1]), g.const([-1]))
    upto = g("Slice", x, g.const([0, 0, 0]), g("Sub", shape, g.const([1])), g.const([0, 1, 2]))
    rng = g("Range", g.const(np.array(0)), seq, g.const(np.array(1)))
    ex = g("Expand", g.const(np.ones((1, 1, 64), np.float32)), shape)
    cos = g("ConstantOfShape", shape)
    flat = g("Flatten", x, axis=-1)
    halves = g("Split", x, nout=2, axis=2)
    sq = g("Squeeze", g("Unsqueeze", x, g.const([-1])), g.const([3]))
    tile = g("Tile", x, g.const([2, 1, 1]))
    cast = g("Cast", shape, to=TensorProto.FLOAT)
    t = g.types(tail, rev, upto, rng, ex, cos, flat, *halves, sq, tile, cast)
    assert [tt.shape for tt in t] == [
        (B, S - 1, 64), (B, S, 64), (B - 1, S - 1, 63), (S,), (B, S, 64), (B, S, 64), (B * S, 64),
        (B, S, 32), (B, S, 32), (B, S, 64), (2 * B, S, 64), (3,)]
    assert t[3].dtype == np.int64 and t[5].dtype == np.float32 and t[11].dtype == np.float32


def test_shape_start_end_and_gather_types():
    x = _x((B, S, 8, 2))
    g = _G(x)
    a = g("Shape", x, start=1, end=-1, opset=21)
    gathered = g("Gather", x, g.const(np.array([[0, 1], [1, 0]])), axis=2)
    t = g.types(a, gathered)
    assert t[0] == TensorType(np.int64, (2,))
    assert t[1].shape == (B, S, 2, 2, 2)


def test_shape_op_kernels_on_sympy_object_arrays():
    dims = np.array([B, S, 64], dtype=object)
    assert list(run("Gather", dims, np.array([1, 0]))) == [S, B]
    assert list(run("Concat", dims[:2], np.array([4, 16]), axis=0)) == [B, S, 4, 16]
    assert run("Unsqueeze", np.array(S, dtype=object), np.array([0])).shape == (1,)
    assert list(run("Slice", dims, np.array([1]), np.array([3]))) == [S, 64]
    assert list(run("Cast", dims, to=TensorProto.INT64)) == [B, S, 64]
    assert run("Squeeze", dims[:1], np.array([0])).shape == ()


def test_reshape_errors_are_shape_errors():
    with pytest.raises(framework.errors.ShapeError):
        run("Reshape", np.zeros((2, 3)), np.array([4, -1]))
    with pytest.raises(framework.errors.ShapeError):
        run("Reshape", np.zeros((2, 3)), np.array([-1, -1]))


def test_reshape_allowzero():
    x = np.zeros((0, 3), np.float32)
    assert run("Reshape", x, np.array([3, 0]), allowzero=1).shape == (3, 0)
    assert run("Reshape", np.zeros((2, 3)), np.array([0, 3])).shape == (2, 3)


# ---------------------------------------------------------------- Cast semantics

F8 = {"e4m3fn": (TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn),
      "e4m3fnuz": (TensorProto.FLOAT8E4M3FNUZ, ml_dtypes.float8_e4m3fnuz),
      "e5m2": (TensorProto.FLOAT8E5M2, ml_dtypes.float8_e5m2),
      "e5m2fnuz": (TensorProto.FLOAT8E5M2FNUZ, ml_dtypes.float8_e5m2fnuz)}


@pytest.mark.parametrize("name", sorted(F8))
def test_cast_float8_saturate(name):
    code, dt = F8[name]
    x = np.array([1e6, -1e6, np.inf, -np.inf, np.nan, 0.3], np.float32)
    big = float(ml_dtypes.finfo(dt).max)
    y = run("Cast", x, to=code).astype(np.float32)
    assert y.dtype == np.float32 and list(y[:4]) == [big, -big, big, -big] and np.isnan(y[4])
    z = run("Cast", x, to=code, saturate=0).astype(np.float32)
    if name == "e5m2":
        assert list(z[:4]) == [np.inf, -np.inf, np.inf, -np.inf]
    else:
        assert np.isnan(z[:4]).all()


def test_cast_int_wrap_float_trunc_bool_bf16():
    assert run("Cast", np.array([200, -200], np.int16), to=TensorProto.INT8).tolist() == [-56, 56]
    assert run("Cast", np.array([2.7, -2.7], np.float32), to=TensorProto.INT32).tolist() == [2, -2]
    flags = run("Cast", np.array([0.0, -0.0, 0.1, np.nan]), to=TensorProto.BOOL)
    assert flags.tolist() == [False, False, True, True]
    y = run("Cast", np.array([1.0, 3.0078125], np.float32), to=TensorProto.BFLOAT16)
    assert y.dtype == ml_dtypes.bfloat16 and y.astype(np.float32).tolist() == [1.0, 3.0]
    assert run("Cast", np.array([1, 2], np.int64), to=TensorProto.FLOAT16).dtype == np.float16


def test_cast_sub_byte_types():
    # float -> int4 out of range is undefined by ONNX; its reference (and ours) gives 0 there
    x = np.arange(-9, 16).astype(np.float32)
    u4 = run("Cast", x, to=TensorProto.UINT4)
    assert u4.dtype == ml_dtypes.uint4 and u4.astype(np.int64).tolist() == [v if v >= 0 else 0 for v in range(-9, 16)]
    i4 = run("Cast", x, to=TensorProto.INT4).astype(np.int64)
    assert i4.tolist() == [v if -8 <= v <= 7 else 0 for v in range(-9, 16)]
    # integer -> int4 keeps the low bits (two's complement), as the spec says for fixed -> fixed
    i4 = run("Cast", np.arange(-9, 16).astype(np.int32), to=TensorProto.INT4).astype(np.int64)
    assert i4.tolist() == [((v + 8) % 16) - 8 for v in range(-9, 16)]
    f4 = run("Cast", np.array([0.48, 9.0, -np.inf], np.float32), to=TensorProto.FLOAT4E2M1)
    assert f4.astype(np.float32).tolist() == [0.5, 6.0, -6.0]


def test_cast_strings():
    s = np.array(["1.5", "-INF", "+inf", "NaN", "1e3"], dtype=object)
    f = run("Cast", s, to=TensorProto.FLOAT)
    assert f.dtype == np.float32 and f[0] == 1.5 and f[1] == -np.inf and f[2] == np.inf and np.isnan(f[3])
    assert run("Cast", np.array(["7", "-3"], dtype=object), to=TensorProto.INT64).tolist() == [7, -3]
    out = run("Cast", np.array([0.5, 2.0], np.float32), to=TensorProto.STRING)
    assert out.dtype == object and out.tolist() == ["0.5", "2.0"]


def test_cast_e8m0_rounding():
    x = np.array([0.0, 0.124, 1.1, 2.0, 3.0], np.float32)
    up = run("Cast", x, to=TensorProto.FLOAT8E8M0, round_mode="up").astype(np.float32)
    assert up[1:].tolist() == [0.125, 2.0, 2.0, 4.0]
    down = run("Cast", x, to=TensorProto.FLOAT8E8M0, round_mode="down").astype(np.float32)
    assert down[1:].tolist() == [0.0625, 1.0, 2.0, 2.0]


def test_castlike_and_bitcast():
    y = run("CastLike", np.array([1.7], np.float64), np.zeros(0, np.int32))
    assert y.dtype == np.int32 and y.tolist() == [1]
    b = run("BitCast", np.array([1.0], np.float32), to=TensorProto.INT32)
    assert b.tolist() == [0x3F800000]


# ---------------------------------------------------------------- kernels vs naive loops

def _naive_resize_1d(v, out_len, scale, mode, ctm, a=-0.75, nearest="round_prefer_floor"):
    n = len(v)
    out = []
    for i in range(out_len):
        if ctm == "half_pixel":
            x = (i + 0.5) / scale - 0.5
        elif ctm == "align_corners":
            x = 0.0 if out_len == 1 else i * (n - 1) / (out_len - 1)
        else:
            x = i / scale
        if mode == "nearest":
            f = math.floor(x)
            up = (x - f > 0.5) if nearest == "round_prefer_floor" else (x - f >= 0.5)
            out.append(v[min(max(f + up, 0), n - 1)])
            continue
        acc = 0.0
        for t in range(math.floor(x) - 2, math.floor(x) + 4):
            d = abs(t - x)
            if mode == "linear":
                w = max(0.0, 1 - d)
            else:
                w = ((a + 2) * d - (a + 3)) * d * d + 1 if d <= 1 else \
                    ((a * d - 5 * a) * d + 8 * a) * d - 4 * a if d < 2 else 0.0
            acc += w * v[min(max(t, 0), n - 1)]
        out.append(acc)
    return np.array(out)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("ctm", ["half_pixel", "align_corners", "asymmetric"])
def test_resize_matches_naive_loop(mode, ctm):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    sizes = np.array([2, 3, 11, 3], np.int64)
    y = run("Resize", x, None, None, sizes, mode=mode, coordinate_transformation_mode=ctm)
    assert y.shape == (2, 3, 11, 3) and y.dtype == np.float32
    want = np.apply_along_axis(_naive_resize_1d, 2, x.astype(np.float64), 11, 11 / 7, mode, ctm)
    want = np.apply_along_axis(_naive_resize_1d, 3, want, 3, 3 / 5, mode, ctm)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_gather_nd_scatter_nd_vs_loops():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((4, 5, 6)).astype(np.float32)
    idx = rng.integers(-4, 4, size=(7, 2))
    got = run("GatherND", data, idx)
    want = np.stack([data[i, j] for i, j in idx])
    np.testing.assert_array_equal(got, want)
    upd = rng.standard_normal((7, 6)).astype(np.float32)
    out = run("ScatterND", data, idx, upd, reduction="add", opset=18)
    ref = data.copy()
    for (i, j), u in zip(idx, upd):
        ref[i, j] += u
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_gather_elements_scatter_elements_vs_loops():
    rng = np.random.default_rng(2)
    data = rng.standard_normal((3, 4)).astype(np.float32)
    idx = rng.integers(-4, 4, size=(3, 5))
    got = run("GatherElements", data, idx, axis=1)
    want = np.array([[data[i, idx[i, j] % 4] for j in range(5)] for i in range(3)])
    np.testing.assert_array_equal(got, want)
    upd = rng.standard_normal((3, 5)).astype(np.float32)
    out = run("ScatterElements", data, idx, upd, axis=1, reduction="max", opset=18)
    ref = data.copy()
    for i in range(3):
        for j in range(5):
            ref[i, idx[i, j] % 4] = max(ref[i, idx[i, j] % 4], upd[i, j])
    np.testing.assert_array_equal(out, ref)


def test_topk_ties_and_order_vs_loop():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(5, 9)).astype(np.float32)
    for largest in (0, 1):
        v, i = run("TopK", x, np.array([4]), axis=1, largest=largest)
        for r in range(5):
            order = sorted(range(9), key=lambda j: (-x[r, j] if largest else x[r, j], j))[:4]
            assert i[r].tolist() == order and v[r].tolist() == x[r, order].tolist()
        assert i.dtype == np.int64


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes_vs_loop(mode):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    pads = np.array([1, 2, 2, -1])
    y = run("Pad", x, pads, np.array(9, np.float32), mode=mode)
    assert y.shape == (3 + 1 + 2, 4 + 2 - 1)
    src = x[:, :3]
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            r, c = i - 1, j - 2
            if mode == "constant":
                want = src[r, c] if 0 <= r < 3 and 0 <= c < 3 else 9
            elif mode == "edge":
                want = src[min(max(r, 0), 2), min(max(c, 0), 2)]
            elif mode == "wrap":
                want = src[r % 3, c % 3]
            else:
                rr = abs(r) if r < 3 else 4 - r
                cc = abs(c) if c < 3 else 4 - c
                want = src[rr, cc]
            assert y[i, j] == want, (i, j)


def test_misc_kernels():
    parts = ops.get("Split", "", 18).ref(ops.Ctx({"axis": 0, "num_outputs": 3}, 3, 18), np.arange(7))
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6]]
    inverse = run("Unique", np.array([2, 1, 1, 3, 4, 3]), sorted=0, num_outputs=4)[2]
    assert inverse.tolist() == [0, 1, 1, 2, 3, 2]
    assert run("CumSum", np.array([1, 2, 3]), np.array(0), exclusive=1, reverse=1).tolist() == [5, 3, 0]
    assert run("OneHot", np.array([0, -1, 5]), np.array(3), np.array([0, 1])).tolist() == \
        [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    with pytest.raises(framework.errors.KernelError, match="depth is negative"):  # onnxruntime refuses it too
        run("OneHot", np.array([0, 1]), np.array(-3), np.array([0, 1]))
    assert run("Range", np.array(10), np.array(4), np.array(-2)).tolist() == [10, 8, 6]
    assert run("NonZero", np.array([[1, 0], [0, 2]])).tolist() == [[0, 1], [0, 1]]


# ---------------------------------------------------------------- sequences and optionals, end to end

def _model(nodes, inputs, outputs, opset=21):
    g = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_sequence_roundtrip(mode):
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("SplitToSequence", ["x"], ["s"], axis=1, keepdims=0),
             helper.make_node("SequenceErase", ["s"], ["s2"]),
             helper.make_node("SequenceLength", ["s2"], ["n"]),
             helper.make_node("ConcatFromSequence", ["s2"], ["y"], axis=0, new_axis=1)]
    m = _model(nodes, [vi("x", TensorProto.FLOAT, ["N", 3])],
               [vi("n", TensorProto.INT64, []), vi("y", TensorProto.FLOAT, None)])
    sess = framework.InferenceSession(m, mode=mode)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    n, y = sess.run(None, {"x": x})
    assert n.tolist() == 2 and y.tolist() == x.T[:2].tolist()


def test_optional_ops():
    assert run("OptionalHasElement", None).tolist() is False
    assert run("Optional", np.array([1]))[0].tolist() == [1]
    with pytest.raises(framework.errors.KernelError):
        run("OptionalGetElement", None)


def test_resize_symbolic_integer_scales_and_sizes():
    x = Value(TensorType(np.float32, (B, 3, S, S)), "x")
    g = _G(x)
    scales = g.const(np.array([1, 1, 2, 2], np.float32))
    up = g("Resize", x, g.const(np.zeros(0, np.float32)), scales, opset=19)
    fixed = g("Resize", x, None, None, g.const(np.array([8, 9], np.int64)), axes=(2, 3), opset=19)
    t = g.types(up, fixed)
    assert t[0].shape == (B, 3, 2 * S, 2 * S) and t[1].shape == (B, 3, 8, 9)


def test_cast_v1_string_target():
    assert run("Cast", np.array([1.5], np.float32), to="INT32", opset=1).dtype == np.int32
