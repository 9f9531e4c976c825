"""NN op families (softmax/losses, conv, pooling, norms, RNNs, attention, sampling): symbolic inference, dtype
semantics and fast kernels against naive numpy loops.

Run as a script (`python -m tests.framework.test_ops_nn`) to time Conv / pooling against onnxruntime.
"""
import itertools

import ml_dtypes
import numpy as np
import pytest
import sympy

from framework import ops
from framework.errors import ShapeError
from framework.ir import UNKNOWN, Graph, Node, TensorType, Value, symbol
from framework.passes import infer_shapes

B, H, W = symbol("batch"), symbol("h"), symbol("w")
RNG = np.random.default_rng(0)
F32, F16 = np.dtype(np.float32), np.dtype(np.float16)


def run(name, *inputs, opset=21, domain="", num_outputs=1, **attrs):
    """Call a registered kernel directly, defaults merged in as the backend does."""
    d = ops.get(name, domain, opset)
    return d.ref(ops.Ctx({**d.attrs, **attrs}, num_outputs, opset), *inputs)


def infer(op, *types, opset=21, num_outputs=1, **attrs):
    """Output types of one node whose inputs have `types`."""
    ins = tuple(None if t is None else Value(t, f"i{k}") for k, t in enumerate(types))
    outs = tuple(Value(UNKNOWN, f"y{k}") for k in range(num_outputs))
    node = Node(op, ins, outs, attrs, "", opset, "n")
    graph = Graph(tuple(v for v in ins if v is not None), outs, (node,), {})
    return [v.type for v in infer_shapes(graph).outputs]


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- naive references

def naive_conv(x, w, b=None, strides=None, pads=None, dil=None, group=1):
    """Direct N-d convolution with Python loops over every output pixel (slow, obviously right)."""
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    k = w.shape[2:]
    nd = len(k)
    strides, dil = strides or [1] * nd, dil or [1] * nd
    pads = pads or [0] * (2 * nd)
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(pads[i], pads[nd + i]) for i in range(nd)])
    out = [(xp.shape[2 + i] - (k[i] - 1) * dil[i] - 1) // strides[i] + 1 for i in range(nd)]
    y = np.zeros((n, m, *out))
    mg = m // group
    for o in itertools.product(*[range(v) for v in out]):
        win = tuple(slice(o[i] * strides[i], o[i] * strides[i] + (k[i] - 1) * dil[i] + 1, dil[i])
                    for i in range(nd))
        for g in range(group):
            patch = xp[(slice(None), slice(g * cg, (g + 1) * cg)) + win]  # [N, Cg, *K]
            axes = list(range(1, nd + 2))
            y[(slice(None), slice(g * mg, (g + 1) * mg)) + o] = np.tensordot(
                patch, w[g * mg:(g + 1) * mg].astype(np.float64), axes=(axes, axes))
    if b is not None:
        y += b.reshape((1, -1) + (1,) * nd)
    return y


def naive_conv_transpose(x, w, strides, pads, dil, group=1, output_padding=None):
    """Scatter every input pixel's weighted kernel into the output (definition of the transposed conv)."""
    n, c = x.shape[:2]
    mg = w.shape[1]
    k = w.shape[2:]
    nd = len(k)
    op = output_padding or [0] * nd
    full = [strides[i] * (x.shape[2 + i] - 1) + op[i] + (k[i] - 1) * dil[i] + 1 for i in range(nd)]
    y = np.zeros((n, mg * group, *full))
    cg = c // group
    for pos in itertools.product(*[range(v) for v in x.shape[2:]]):
        for ci in range(c):
            g = ci // cg
            for kk in itertools.product(*[range(v) for v in k]):
                o = tuple(pos[i] * strides[i] + kk[i] * dil[i] for i in range(nd))
                y[(slice(None), slice(g * mg, (g + 1) * mg)) + o] += x[(slice(None), ci) + pos][:, None] * \
                    w[(ci, slice(None)) + kk][None, :]
    return y[(slice(None), slice(None)) + tuple(slice(pads[i], full[i] - pads[nd + i]) for i in range(nd))]


def naive_pool(x, kernel, strides, pads, fn):
    """Pool with a loop over output pixels; windows clipped to the real input (padding never counts)."""
    nd = len(kernel)
    out = [(x.shape[2 + i] + pads[i] + pads[nd + i] - kernel[i]) // strides[i] + 1 for i in range(nd)]
    y = np.zeros(x.shape[:2] + tuple(out))
    for o in itertools.product(*[range(v) for v in out]):
        win = tuple(slice(max(o[i] * strides[i] - pads[i], 0), o[i] * strides[i] - pads[i] + kernel[i])
                    for i in range(nd))
        patch = x[(slice(None), slice(None)) + win]
        y[(slice(None), slice(None)) + o] = fn(patch.reshape(x.shape[:2] + (-1,)))
    return y


# ---------------------------------------------------------------- conv kernels vs loops

@pytest.mark.parametrize("xs, ws, attrs", [
    ((2, 4, 9, 8), (6, 4, 3, 3), dict(pads=[1, 1, 1, 1])),
    ((1, 4, 9, 8), (6, 2, 3, 2), dict(pads=[1, 0, 2, 1], strides=[2, 1], group=2)),
    ((1, 3, 11, 10), (4, 3, 3, 3), dict(dilations=[2, 2], strides=[2, 3], pads=[2, 1, 0, 3])),
    ((2, 6, 7, 7), (6, 1, 3, 3), dict(pads=[1, 1, 1, 1], group=6)),  # depthwise
    ((1, 3, 8, 8), (6, 1, 5, 5), dict(pads=[2, 2, 2, 2], strides=[2, 2], group=3)),  # depthwise, multiplier 2
    ((2, 8, 6, 5), (5, 8, 1, 1), {}),  # 1x1 as GEMM
    ((1, 8, 7, 6), (4, 8, 1, 1), dict(strides=[2, 2])),
    ((1, 8, 6, 6), (4, 2, 1, 1), dict(group=4)),
    ((2, 3, 12), (4, 3, 4), dict(pads=[1, 2], strides=[2])),  # 1D
    ((1, 2, 5, 6, 4), (3, 2, 3, 2, 2), dict(pads=[1, 0, 1, 1, 1, 0])),  # 3D
    ((1, 2, 4, 4), (3, 2, 3, 3), dict(pads=[5, 0, 0, 5])),  # a tap reading only padding
])
def test_conv_matches_naive_loop(xs, ws, attrs):
    x, w, b = rand(*xs), rand(*ws), rand(ws[0])
    got = run("Conv", x, w, b, **attrs)
    want = naive_conv(x, w, b, attrs.get("strides"), attrs.get("pads"), attrs.get("dilations"),
                      attrs.get("group", 1))
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("auto_pad, want", [("SAME_UPPER", [0, 1]), ("SAME_LOWER", [1, 0])])
def test_conv_auto_pad_matches_explicit(auto_pad, want):
    x, w = rand(1, 2, 6, 6), rand(3, 2, 2, 2)
    got = run("Conv", x, w, auto_pad=auto_pad)
    ref = run("Conv", x, w, pads=[want[0], want[0], want[1], want[1]])
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_conv_keeps_float16_and_float64():
    x, w = rand(1, 2, 5, 5, dtype=np.float16), rand(3, 2, 3, 3, dtype=np.float16)
    assert run("Conv", x, w).dtype == np.float16
    assert run("Conv", x.astype(np.float64), w.astype(np.float64)).dtype == np.float64


def test_conv_rejects_bad_group():
    with pytest.raises(ShapeError):
        run("Conv", rand(1, 4, 5, 5), rand(3, 3, 3, 3), group=2)


@pytest.mark.parametrize("xs, ws, attrs", [
    ((1, 3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 2], pads=[1, 0, 1, 1])),
    ((2, 4, 3, 3), (4, 1, 2, 2), dict(group=2, dilations=[2, 1])),
    ((1, 2, 5), (2, 3, 3), dict(strides=[3], output_padding=[1])),
])
def test_conv_transpose_matches_naive_loop(xs, ws, attrs):
    x, w = rand(*xs), rand(*ws)
    nd = len(xs) - 2
    got = run("ConvTranspose", x, w, **attrs)
    want = naive_conv_transpose(x, w, attrs.get("strides", [1] * nd), attrs.get("pads", [0] * 2 * nd),
                                attrs.get("dilations", [1] * nd), attrs.get("group", 1),
                                attrs.get("output_padding"))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv_transpose_output_shape_sets_pads():
    x, w = rand(1, 1, 3, 3), rand(1, 2, 3, 3)
    y = run("ConvTranspose", x, w, strides=[3, 2], output_shape=[10, 8])
    assert y.shape == (1, 2, 10, 8)


# ---------------------------------------------------------------- pooling vs loops

@pytest.mark.parametrize("kernel, strides, pads", [
    ([3, 3], [2, 2], [1, 1, 1, 1]), ([2, 3], [1, 2], [0, 1, 1, 0]), ([3], [1], [1, 1]),
    ([2, 2, 2], [2, 1, 1], [0] * 6),
])
def test_max_and_average_pool_match_naive_loop(kernel, strides, pads):
    x = rand(*((2, 3) + (7,) * len(kernel)))
    got = run("MaxPool", x, kernel_shape=kernel, strides=strides, pads=pads)
    np.testing.assert_array_equal(got, naive_pool(x, kernel, strides, pads, lambda v: v.max(-1)))
    got = run("AveragePool", x, kernel_shape=kernel, strides=strides, pads=pads)
    # the naive mean rounds in float32 (pairwise), ours sums in double: an average near 0 of values near 1
    # differs by more than rtol (-1.7810e-4 vs -1.7810e-4 + 2.5e-9 on some draws), hence the atol
    np.testing.assert_allclose(got, naive_pool(x, kernel, strides, pads, lambda v: v.mean(-1)), rtol=1e-5,
                               atol=1e-6)


def test_average_pool_count_include_pad():
    x = np.ones((1, 1, 3, 3), np.float32)
    y = run("AveragePool", x, kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9) and y[0, 0, 1, 1] == pytest.approx(1.0)


def test_maxpool_indices_and_int8():
    x = rand(1, 2, 4, 4)
    y, idx = run("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2], num_outputs=2)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(x.reshape(-1)[idx], y)
    xi = RNG.integers(-128, 127, (1, 1, 4, 4)).astype(np.int8)
    yi = run("MaxPool", xi, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    assert yi.dtype == np.int8 and yi.max() == xi.max()


def naive_pool_nd(x, kernel, strides, pads, dil, ceil_mode, fn, fill):
    """Pool with Python loops over output pixels and taps (dilations, ceil_mode); out-of-input taps read
    `fill`. Returns (values, flat index of the first tap equal to the max in row-major window order)."""
    nd = len(kernel)
    out = []
    for i in range(nd):
        span = x.shape[2 + i] + pads[i] + pads[nd + i] - ((kernel[i] - 1) * dil[i] + 1)
        o = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
        if ceil_mode and (o - 1) * strides[i] >= x.shape[2 + i] + pads[i]:
            o -= 1
        out.append(o)
    y = np.zeros(x.shape[:2] + tuple(out), x.dtype)
    idx = np.zeros(y.shape, np.int64)
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for o in itertools.product(*[range(v) for v in out]):
            vals, pos = [], []
            for k in itertools.product(*[range(v) for v in kernel]):
                p = tuple(o[i] * strides[i] + k[i] * dil[i] - pads[i] for i in range(nd))
                if all(0 <= p[i] < x.shape[2 + i] for i in range(nd)):
                    vals.append(x[(n, c) + p])
                    pos.append(np.ravel_multi_index((n, c) + p, x.shape))
                else:
                    vals.append(fill)
                    pos.append(-1)
            y[(n, c) + o] = fn(np.array(vals))
            idx[(n, c) + o] = pos[int(np.argmax(np.array(vals) == y[(n, c) + o]))]
    return y, idx


POOL2D_CASES = [
    dict(kernel_shape=[3, 3], strides=[2, 2]),  # SqueezeNet
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 2], strides=[3, 2], pads=[0, 1, 2, 0], ceil_mode=1),
    dict(kernel_shape=[2, 3], strides=[2, 3], dilations=[2, 2], pads=[1, 2, 1, 1]),
    dict(kernel_shape=[4, 4], strides=[2, 2], pads=[2, 2, 2, 2], ceil_mode=1),
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[1, 2], dilations=[1, 3], pads=[1, 0, 1, 3]),
    dict(kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2]),
]


@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (1, 2, 8, 7)])
@pytest.mark.parametrize("attrs", POOL2D_CASES)
def test_strided_2d_pools_match_naive_loop(shape, attrs):
    x = rand(*shape)
    x[0, 0, 1, :3] = x[0, 0, 2, 2] = 5.0  # ties: the first tap in window order wins the index
    kernel = attrs["kernel_shape"]
    dil = attrs.get("dilations", [1, 1])
    if attrs.get("auto_pad") == "SAME_UPPER":
        tot = [max((-(-n // s) - 1) * s + k - n, 0) for n, s, k in zip(shape[2:], attrs["strides"], kernel)]
        pads = [t // 2 for t in tot] + [t - t // 2 for t in tot]
    else:
        pads = attrs.get("pads", [0] * 4)
    ceil = attrs.get("ceil_mode", 0)
    want, want_idx = naive_pool_nd(x, kernel, attrs["strides"], pads, dil, ceil, np.max, -np.inf)
    np.testing.assert_array_equal(run("MaxPool", x, **attrs), want)
    for order in (0, 1):
        y, idx = run("MaxPool", x, num_outputs=2, storage_order=order, **attrs)
        np.testing.assert_array_equal(y, want)
        if order == 0:
            np.testing.assert_array_equal(idx, want_idx)
        else:  # spatial dims column-major
            xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2))
            np.testing.assert_array_equal(xt.reshape(-1)[idx], y)
            n, c, h, w = np.unravel_index(want_idx, x.shape)
            np.testing.assert_array_equal(idx, ((n * x.shape[1] + c) * x.shape[3] + w) * x.shape[2] + h)
    for include in (0, 1):
        s, _ = naive_pool_nd(x, kernel, attrs["strides"], pads, dil, ceil, np.sum, 0.0)
        ones = np.ones_like(x)
        cnt, _ = naive_pool_nd(ones, kernel, attrs["strides"], pads, dil, ceil, np.sum, float(include))
        if include and ceil:  # taps past the end padding never count
            xp = np.pad(ones, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])], constant_values=1)
            cnt, _ = naive_pool_nd(xp, kernel, attrs["strides"], [0] * 4, dil, ceil, np.sum, 0.0)
            cnt = cnt[..., :s.shape[2], :s.shape[3]]
        got = run("AveragePool", x, count_include_pad=include, **attrs)
        np.testing.assert_allclose(got, s / np.maximum(cnt, 1), rtol=1e-5, atol=1e-6)
    sq, _ = naive_pool_nd(x * x, kernel, attrs["strides"], pads, dil, ceil, np.sum, 0.0)
    np.testing.assert_allclose(run("LpPool", x, **attrs), np.sqrt(sq), rtol=1e-5, atol=1e-6)


def test_strided_2d_maxpool_many_planes_and_nan():
    """Several cache blocks of planes, an integer dtype, and a NaN window (its index is the NaN tap)."""
    from framework.ops import nn_window
    x = rand(3, 7, 13, 12)
    old = nn_window._BLOCK_BYTES
    nn_window._BLOCK_BYTES = 5 * 13 * 12 * 4  # blocks of 5 planes, a ragged last one
    try:
        for attrs in POOL2D_CASES[:4]:
            want, _ = naive_pool_nd(x, attrs["kernel_shape"], attrs["strides"], attrs.get("pads", [0] * 4),
                                    [1, 1], attrs.get("ceil_mode", 0), np.max, -np.inf)
            np.testing.assert_array_equal(run("MaxPool", x, **attrs), want)
    finally:
        nn_window._BLOCK_BYTES = old
    xi = RNG.integers(-128, 127, (2, 3, 9, 9)).astype(np.int8)
    want, want_idx = naive_pool_nd(xi, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 0, np.max, -128)
    y, idx = run("MaxPool", xi, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], num_outputs=2)
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(xi.reshape(-1)[idx], y)
    xn = rand(1, 1, 5, 5)
    xn[0, 0, 1, 1] = np.nan
    y, idx = run("MaxPool", xn, kernel_shape=[3, 3], strides=[2, 2], num_outputs=2)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 6


# ---------------------------------------------------------------- symbolic inference

def test_conv_infer_symbolic():
    x = TensorType(F32, (B, 3, H, W))
    [t] = infer("Conv", x, TensorType(F32, (64, 3, 7, 7)), None, pads=[3, 3, 3, 3], strides=[2, 2])
    assert t.shape[:2] == (B, 64)
    assert sympy.simplify(t.shape[2] - (sympy.floor((H - 1) / 2) + 1)) == 0
    [t] = infer("Conv", x, TensorType(F32, (8, 3, 3, 3)), None, pads=[1, 1, 1, 1])
    assert t == TensorType(F32, (B, 8, H, W))
    [t] = infer("Conv", x, TensorType(F32, (8, 3, 3, 3)), None, auto_pad="SAME_UPPER", strides=[2, 2])
    assert t.shape[2] == sympy.ceiling(H / 2)


def test_pool_and_global_infer_symbolic():
    x = TensorType(F32, (B, 16, H, W))
    [t] = infer("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])
    assert t.shape == (B, 16, sympy.floor((H - 2) / 2) + 1, sympy.floor((W - 2) / 2) + 1)
    assert infer("GlobalAveragePool", x) == [TensorType(F32, (B, 16, 1, 1))]
    t = infer("MaxPool", TensorType(F32, (1, 2, 5, 5)), kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)[0]
    assert t.shape == (1, 2, 3, 3)


def test_conv_transpose_infer():
    [t] = infer("ConvTranspose", TensorType(F32, (B, 4, 5, 5)), TensorType(F32, (4, 3, 3, 3)), None,
                strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])
    assert t == TensorType(F32, (B, 3, 10, 10))


def test_norm_and_softmax_infer():
    x = TensorType(F16, (B, H, 32))
    y, mean, inv = infer("LayerNormalization", x, TensorType(F16, (32,)), None, opset=17, num_outputs=3)
    assert y == x and mean == TensorType(F32, (B, H, 1)) and inv == mean
    assert infer("Softmax", x, opset=13) == [x]
    assert infer("BatchNormalization", TensorType(F32, (B, 8, H, W)), *[TensorType(F32, (8,))] * 4) == \
        [TensorType(F32, (B, 8, H, W))]


def test_attention_infer_3d_gqa_with_cache():
    q, k = TensorType(F32, (B, 5, 64)), TensorType(F32, (B, 5, 32))
    past = TensorType(F32, (B, 2, 7, 16))
    y, pk, pv = infer("Attention", q, k, k, None, past, past, opset=23, num_outputs=3, q_num_heads=4,
                      kv_num_heads=2)
    assert y == TensorType(F32, (B, 5, 64)) and pk == TensorType(F32, (B, 2, 12, 16)) and pv == pk


def test_rnn_infer_layouts():
    x = TensorType(F32, (7, B, 10))
    y, yh = infer("LSTM", x, TensorType(F32, (2, 32, 10)), TensorType(F32, (2, 32, 8)), opset=14,
                  num_outputs=2, hidden_size=8, direction="bidirectional")
    assert y == TensorType(F32, (7, 2, B, 8)) and yh == TensorType(F32, (2, B, 8))


def test_lstm_clip_bounds_gate_inputs_with_their_peephole_terms():
    """clip bounds what enters each gate activation, peephole term included (clipping the pre-activations
    before adding p * c was off by 0.05 from onnxruntime where both clip and peepholes were set)."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    h = 2
    w, r = rng.standard_normal((1, 4 * h, 3)), rng.standard_normal((1, 4 * h, h))
    b, p = np.zeros((1, 8 * h)), 2 * rng.standard_normal((1, 3 * h))
    w, r, b, p = (a.astype(np.float32) for a in (w, r, b, p))
    x = rng.standard_normal((3, 1, 3)).astype(np.float32)
    ours = run("LSTM", x, w, r, b, None, None, None, p, opset=14, num_outputs=3, hidden_size=h, clip=0.5)
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "", "", "", "P"], ["Y", "Yh", "Yc"], hidden_size=h,
                            clip=0.5)
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Yh", "Yc")]
    weights = [numpy_helper.from_array(a, n) for n, a in (("W", w), ("R", r), ("B", b), ("P", p))]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              outs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x})
    for got, ref in zip(ours, want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- softmax family, losses, dtypes

def test_softmax_opset_semantics():
    x = rand(2, 3, 4)
    old = run("Softmax", x, opset=11, axis=1)
    np.testing.assert_allclose(old.reshape(2, -1).sum(1), 1, rtol=1e-6)  # flattened over dims 1..
    new = run("Softmax", x, opset=13, axis=1)
    np.testing.assert_allclose(new.sum(1), 1, rtol=1e-6)  # only along axis 1
    h = run("Hardmax", np.array([[1, 3, 3]], np.float32), opset=13)
    np.testing.assert_array_equal(h, [[0, 1, 0]])  # first maximum wins
    assert run("LogSoftmax", x.astype(np.float16), opset=13).dtype == np.float16


def test_nll_loss_ignore_index_and_weights():
    x, t = rand(3, 4), np.array([0, 2, 1], np.int64)
    w = np.array([1, 2, 3, 4], np.float32)
    got = run("NegativeLogLikelihoodLoss", x, t, w, ignore_index=2)
    want = -(x[0, 0] * 1 + x[2, 1] * 2) / 3
    assert got.shape == () and got == pytest.approx(want, rel=1e-6)


def test_layernorm_float16_stats_in_float32():
    x = rand(2, 8, dtype=np.float16)
    y, mean, inv = run("LayerNormalization", x, np.ones(8, np.float16), num_outputs=3, opset=17)
    assert y.dtype == np.float16 and mean.dtype == np.float32 and inv.dtype == np.float32
    np.testing.assert_allclose(mean[:, 0], x.astype(np.float32).mean(1), rtol=1e-6)


def test_batchnorm_inference_and_bfloat16():
    x = rand(2, 3, 4, 4)
    s, b, m, v = rand(3), rand(3), rand(3), np.abs(rand(3)) + 0.5
    y = run("BatchNormalization", x, s, b, m, v, opset=15)
    want = (x - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) * s[:, None, None] + b[:, None, None]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    bf = ml_dtypes.bfloat16
    assert run("BatchNormalization", x.astype(bf), s.astype(bf), b.astype(bf), m.astype(bf), v.astype(bf),
               opset=15).dtype == bf


def test_dropout_inference_is_identity_and_seeded_training_is_reproducible():
    x = rand(4, 5)
    y, mask = run("Dropout", x, num_outputs=2, opset=13)
    assert y is x or np.array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()
    a = run("Dropout", x, np.float32(0.5), np.bool_(True), opset=13, seed=3)
    b = run("Dropout", x, np.float32(0.5), np.bool_(True), opset=13, seed=3)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- attention

def naive_attention(q, k, v, causal=False):
    hq, hkv = q.shape[1], k.shape[1]
    k, v = np.repeat(k, hq // hkv, axis=1), np.repeat(v, hq // hkv, axis=1)
    s = q.astype(np.float64) @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


@pytest.mark.parametrize("causal", [0, 1])
def test_attention_gqa_matches_naive(causal):
    q, k, v = rand(2, 6, 5, 8), rand(2, 3, 5, 8), rand(2, 3, 5, 4)
    got = run("Attention", q, k, v, opset=23, is_causal=causal)
    np.testing.assert_allclose(got, naive_attention(q, k, v, causal), rtol=1e-4, atol=1e-5)


def test_attention_fully_masked_row_is_zero():
    q, k, v = rand(1, 1, 2, 4), rand(1, 1, 3, 4), rand(1, 1, 3, 4)
    mask = np.array([[True, True, True], [False, False, False]])
    y = run("Attention", q, k, v, mask, opset=23)
    assert np.isfinite(y).all() and not y[0, 0, 1].any()


# ---------------------------------------------------------------- performance notes (not asserted)

def _bench():  # pragma: no cover - manual timing against onnxruntime
    import time

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def best(fn, n=30):
        fn()
        t = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
        return min(t) * 1e3

    def case(op, xs, ws=None, **attrs):
        x = RNG.random(xs, dtype=np.float32)
        inits, ins = [], [x]
        if ws is not None:
            w = RNG.random(ws, dtype=np.float32)
            inits, ins = [onnx.numpy_helper.from_array(w, "w")], [x, w]
        node = helper.make_node(op, ["x"] + (["w"] if ws else []), ["y"], **attrs)
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        so = ort.SessionOptions()
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle ORT threads steal CPU
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        d = ops.get(op, "", 17)
        ctx = ops.Ctx({**d.attrs, **attrs}, 1, 17)
        np.testing.assert_allclose(d.ref(ctx, *ins), sess.run(None, {"x": x})[0], rtol=1e-3, atol=1e-3)
        t_us, t_ort = best(lambda: d.ref(ctx, *ins)), best(lambda: sess.run(None, {"x": x}))
        print(f"{op:12s} x{xs} w{ws} {attrs}: ort {t_ort:7.3f} ms  msgx {t_us:7.3f} ms  x{t_us / t_ort:5.2f}")

    p1 = [1, 1, 1, 1]
    case("Conv", (1, 256, 56, 56), (64, 256, 1, 1))
    case("Conv", (1, 64, 56, 56), (64, 64, 3, 3), pads=p1)
    case("Conv", (1, 3, 224, 224), (64, 3, 7, 7), pads=[3, 3, 3, 3], strides=[2, 2])
    case("Conv", (1, 128, 28, 28), (128, 128, 3, 3), pads=p1)
    case("Conv", (1, 512, 7, 7), (512, 512, 3, 3), pads=p1)
    case("Conv", (1, 256, 56, 56), (512, 256, 1, 1), strides=[2, 2])
    case("Conv", (1, 64, 224, 224), (64, 64, 3, 3), pads=p1)
    case("Conv", (1, 3, 224, 224), (96, 3, 11, 11), strides=[4, 4], pads=[2, 2, 2, 2])
    case("Conv", (1, 116, 28, 28), (116, 1, 3, 3), pads=p1, group=116)
    case("Conv", (1, 232, 28, 28), (232, 1, 3, 3), pads=p1, strides=[2, 2], group=232)
    case("Conv", (1, 256, 14, 14), (256, 256, 3, 3), pads=p1)
    case("Conv", (1, 128, 56, 56), (128, 128, 3, 3), pads=p1, strides=[2, 2])
    case("Conv", (1, 96, 27, 27), (256, 96, 5, 5), pads=[2, 2, 2, 2])
    case("Conv", (1, 240, 28, 28), (240, 60, 1, 1), group=4)
    case("Conv", (8, 64, 56, 56), (64, 64, 3, 3), pads=p1)
    case("ConvTranspose", (1, 64, 28, 28), (64, 32, 4, 4), strides=[2, 2], pads=p1)
    case("MaxPool", (1, 64, 112, 112), kernel_shape=[3, 3], strides=[2, 2], pads=p1)
    case("AveragePool", (1, 256, 28, 28), kernel_shape=[3, 3], pads=p1)
    case("GlobalAveragePool", (1, 2048, 7, 7))


if __name__ == "__main__":
    _bench()
