"""Math, reduce, quant, signal, misc and control-flow op families: symbolic inference, dtype semantics and
kernels against naive loops."""
import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper

import framework
from framework import ops
from framework.errors import ShapeError
from framework.ir import UNKNOWN, Graph, Node, TensorType, Value, symbol
from framework.passes import infer_shapes

B, S = symbol("batch"), symbol("seq")
RNG = np.random.default_rng(0)


def run(name, *inputs, opset=21, domain="", num_outputs=1, **attrs):
    """Call a registered kernel directly, defaults merged in as the backend does."""
    d = ops.get(name, domain, opset)
    return d.ref(ops.Ctx({**d.attrs, **attrs}, num_outputs, opset), *inputs)


def infer(op, *types, opset=21, consts=(), **attrs):
    """Output types of one node whose inputs have `types` (constant inputs given by index in `consts`)."""
    ins = tuple(Value(t, f"i{k}") for k, t in enumerate(types))
    constants = {ins[k]: np.asarray(v) for k, v in dict(consts).items()}
    outs = (Value(UNKNOWN, "y"),)
    node = Node(op, tuple(ins), outs, attrs, "", opset, "n")
    graph = Graph(tuple(v for v in ins if v not in constants), outs, (node,), constants)
    return infer_shapes(graph).outputs[0].type


F32 = np.dtype(np.float32)


# ---------------------------------------------------------------- symbolic inference

@pytest.mark.parametrize("a, b, want", [
    ((B, S, 64), (64, 128), (B, S, 128)),
    ((64,), (64, 8), (8,)),
    ((B, S, 64), (64,), (B, S)),
    ((64,), (64,), ()),
    ((B, 1, S, 16), (4, 16, S), (B, 4, S, S)),
])
def test_matmul_infer_symbolic(a, b, want):
    assert infer("MatMul", TensorType(F32, a), TensorType(F32, b)) == TensorType(F32, want)


def test_matmul_infer_rejects_mismatch():
    with pytest.raises(ShapeError):
        infer("MatMul", TensorType(F32, (B, 3)), TensorType(F32, (4, 5)))


def test_gemm_infer_transposed():
    t = infer("Gemm", TensorType(F32, (64, B)), TensorType(F32, (10, 64)), TensorType(F32, (10,)),
              transA=1, transB=1)
    assert t == TensorType(F32, (B, 10))


def test_reduce_infer_attr_and_input_forms():
    x = TensorType(F32, (B, S, 64))
    assert infer("ReduceMean", x, opset=13, axes=(-1,)) == TensorType(F32, (B, S, 1))
    assert infer("ReduceMean", x, TensorType(np.int64, (1,)), opset=18, consts={1: [1]},
                 keepdims=0) == TensorType(F32, (B, 64))
    assert infer("ReduceSum", x, TensorType(np.int64, (0,)), opset=13, consts={1: np.zeros(0, np.int64)},
                 noop_with_empty_axes=1) == x
    assert infer("ReduceMax", x, opset=18, keepdims=0) == TensorType(F32, ())


def test_one_hot_of_a_negative_constant_depth_is_a_shape_error():
    with pytest.raises(ShapeError, match="depth is negative"):
        infer("OneHot", TensorType(np.int64, (2,)), TensorType(np.int64, ()), TensorType(F32, (2,)), opset=11,
              consts={1: -3})


def test_reduce_prod_of_shape_stays_symbolic():
    x = Value(TensorType(F32, (B, S, 4)), "x")
    shape = Value(UNKNOWN, "shape")
    numel = Value(UNKNOWN, "numel")
    flat = Value(UNKNOWN, "flat")
    nodes = (Node("Shape", (x,), (shape,), {}, "", 18, "s"),
             Node("ReduceProd", (shape,), (numel,), {"keepdims": 1}, "", 18, "p"),
             Node("Reshape", (x, numel), (flat,), {}, "", 18, "r"))
    g = infer_shapes(Graph((x,), (flat,), nodes, {}))
    assert g.outputs[0].type == TensorType(F32, (4 * B * S,))


def test_argmax_einsum_infer():
    x = TensorType(F32, (B, S, 64))
    assert infer("ArgMax", x, axis=-1, keepdims=0) == TensorType(np.int64, (B, S))
    y = infer("Einsum", x, TensorType(F32, (64, 32)), equation="bsd,de->bse")
    assert y == TensorType(F32, (B, S, 32))
    assert infer("Einsum", TensorType(F32, (B, 3, 4)), equation="...ij->...ji") == TensorType(F32, (B, 4, 3))


# ---------------------------------------------------------------- MatMul / Gemm

def _naive_matmul(a, b):
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.float64)
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            out[i, j] = sum(float(a[i, k]) * float(b[k, j]) for k in range(a.shape[1]))
    return out


def test_matmul_against_naive_and_keeps_dtype():
    a, b = RNG.standard_normal((7, 5)).astype(np.float32), RNG.standard_normal((5, 3)).astype(np.float32)
    y = run("MatMul", a, b)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, _naive_matmul(a, b), rtol=1e-5, atol=1e-5)
    for dtype in (np.float16, np.int32, np.int64, np.float64):
        assert run("MatMul", a.astype(dtype), b.astype(dtype)).dtype == dtype
    bf = ml_dtypes.bfloat16
    assert run("MatMul", a.astype(bf), b.astype(bf)).dtype == bf


def test_matmul_batched_broadcast_and_1d():
    a = RNG.standard_normal((2, 1, 4, 3)).astype(np.float32)
    b = RNG.standard_normal((5, 3, 6)).astype(np.float32)
    y = run("MatMul", a, b)
    assert y.shape == (2, 5, 4, 6)
    np.testing.assert_allclose(y[1, 3], _naive_matmul(a[1, 0], b[3]), rtol=1e-5, atol=1e-5)
    v = RNG.standard_normal(3).astype(np.float32)
    assert run("MatMul", v, b).shape == (5, 6) and run("MatMul", a, v).shape == (2, 1, 4)
    w = RNG.standard_normal((3, 6)).astype(np.float32)  # the folded single-GEMM path, and a strided input
    np.testing.assert_allclose(run("MatMul", a, w), np.einsum("bhik,kj->bhij", a, w), rtol=1e-5, atol=1e-5)
    at = np.swapaxes(a, 0, 2)
    np.testing.assert_allclose(run("MatMul", at, w), np.einsum("bhik,kj->bhij", at, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ta, tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_against_naive(ta, tb):
    a = RNG.standard_normal((4, 6)).astype(np.float32)
    b = RNG.standard_normal((6, 5)).astype(np.float32)
    c = RNG.standard_normal((5,)).astype(np.float32)
    y = run("Gemm", a.T.copy() if ta else a, b.T.copy() if tb else b, c, alpha=0.5, beta=2.0,
            transA=ta, transB=tb)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, 0.5 * _naive_matmul(a, b) + 2.0 * c, rtol=1e-5, atol=1e-5)
    assert run("Gemm", a, b).shape == (4, 5)  # C is optional since opset 11


def test_gemm_int_and_det():
    a, b = np.arange(6, dtype=np.int32).reshape(2, 3), np.ones((3, 2), np.int32)
    assert run("Gemm", a, b, np.int32(1)).dtype == np.int32
    m = np.array([[[2.0, 0], [0, 3]], [[1, 2], [3, 4]]], dtype=np.float16)
    d = run("Det", m)
    assert d.dtype == np.float16 and np.allclose(d, [6, -2])


# ---------------------------------------------------------------- reductions

def test_reductions_dtype_and_empty_sets():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert run("ReduceSum", x, np.array([1])).dtype == np.int32
    assert run("ReduceMean", x.astype(np.float16), np.array([0]), opset=18).dtype == np.float16
    empty = np.zeros((2, 0, 4), np.float32)
    ax = np.array([1])
    assert np.all(run("ReduceMax", empty, ax) == -np.inf) and run("ReduceMax", empty, ax).shape == (2, 1, 4)
    assert np.all(run("ReduceMin", empty, ax) == np.inf)
    assert np.all(run("ReduceProd", empty, ax) == 1) and np.all(run("ReduceSum", empty, ax) == 0)
    assert np.all(run("ReduceLogSumExp", empty, ax) == -np.inf)
    assert run("ReduceMax", np.zeros((2, 0), np.int8), np.array([1])).tolist() == [[-128], [-128]]


def test_reduce_axes_forms_and_noop():
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    y = run("ReduceSum", x, opset=11, axes=(0, 2), keepdims=0)
    np.testing.assert_allclose(y, x.sum(axis=(0, 2)), 1e-5)
    assert run("ReduceSum", x, np.zeros(0, np.int64), opset=13, noop_with_empty_axes=1) is x
    assert run("ReduceL2", x, None, opset=18).shape == (1, 1, 1)
    big = np.array([1000.0, 1000.0], np.float32)
    np.testing.assert_allclose(run("ReduceLogSumExp", big, np.array([0]), opset=18), [1000 + np.log(2)], 1e-6)


@pytest.mark.parametrize("name", ["ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum",
                                  "ReduceLogSumExp", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin",
                                  "ReduceProd"])
def test_no_op_reductions_keep_their_elementwise_part(name):
    """Empty axes with noop_with_empty_axes=1 reduce over no axes: ReduceL1 gives |x|, ReduceSumSquare x*x,
    ReduceLogSum log(x) (onnx.reference and onnxruntime agree), the rest x itself."""
    from onnx.reference import ReferenceEvaluator
    x = np.array([[-2.0, 3.0], [0.5, -1.0]], np.float32)
    node = helper.make_node(name, ["x", "axes"], ["y"], noop_with_empty_axes=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2]),
                                            helper.make_tensor_value_info("axes", TensorProto.INT64, [0])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    axes = np.zeros(0, np.int64)
    (want,) = ReferenceEvaluator(model).run(None, {"x": x, "axes": axes})
    with np.errstate(invalid="ignore"):
        got = run(name, x, axes, opset=18, noop_with_empty_axes=1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.shape == x.shape


def test_argmax_select_last_index():
    x = np.array([[1, 3, 3], [2, 2, 0]], np.float32)
    assert run("ArgMax", x, axis=1).tolist() == [[1], [0]]
    assert run("ArgMax", x, axis=1, select_last_index=1, keepdims=0).tolist() == [2, 1]
    assert run("ArgMin", x, axis=0, keepdims=0).dtype == np.int64


# ---------------------------------------------------------------- quantization

def test_quantize_per_axis_blocked_and_types():
    x = np.array([[-1.0, 0.5, 300.0, 2.5]], np.float32)
    y = run("QuantizeLinear", x, np.float32(1.0), np.uint8(0))
    assert y.dtype == np.uint8 and y.tolist() == [[0, 0, 255, 2]]  # round half to even, saturate
    scale = np.array([1.0, 2.0, 4.0], np.float32)
    xa = np.ones((2, 3), np.float32) * 8
    assert run("QuantizeLinear", xa, scale, np.zeros(3, np.int8), axis=1).tolist() == [[8, 4, 2]] * 2
    blocked = run("QuantizeLinear", np.ones((1, 4), np.float32) * 8, np.array([[1.0, 4.0]], np.float32),
                  axis=1, block_size=2, output_dtype=TensorProto.INT16)
    assert blocked.dtype == np.int16 and blocked.tolist() == [[8, 8, 2, 2]]
    big = np.array([100.0, -100.0], np.float32)
    q4 = run("QuantizeLinear", big, np.float32(1), np.zeros((), ml_dtypes.int4))
    assert q4.dtype == ml_dtypes.int4 and q4.astype(int).tolist() == [7, -8]
    f8 = run("QuantizeLinear", np.array([1e6], np.float32), np.float32(1),
             np.zeros((), ml_dtypes.float8_e4m3fn), saturate=1)
    assert float(f8[0]) == 448.0
    d = run("DequantizeLinear", np.array([0, 10], np.uint8), np.float32(0.5), np.uint8(2))
    assert d.dtype == np.float32 and d.tolist() == [-1.0, 4.0]


def _naive_conv2d(x, w):
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    out = np.zeros((n, m, h - kh + 1, wd - kw + 1))
    for b in range(n):
        for o in range(m):
            for i in range(h - kh + 1):
                for j in range(wd - kw + 1):
                    out[b, o, i, j] = np.sum(x[b, :, i:i + kh, j:j + kw] * w[o])
    return out


def test_conv_integer_and_qlinear_conv_against_naive():
    rng = np.random.default_rng(7)  # local: test order under xdist must not change the data
    x = rng.integers(0, 255, (2, 3, 6, 5)).astype(np.uint8)
    w = rng.integers(-128, 127, (4, 3, 3, 2)).astype(np.int8)
    want = _naive_conv2d(x.astype(np.int64) - 7, w.astype(np.int64))
    got = run("ConvInteger", x, w, np.uint8(7))
    assert got.dtype == np.int32 and np.array_equal(got, want)
    q = run("QLinearConv", x, np.float32(0.1), np.uint8(7), w, np.float32(0.01), np.int8(0), np.float32(0.5),
            np.uint8(128))
    # the requantisation scale is a float32 product, so a value at a rounding tie may land one step away
    expected = np.clip(np.rint(want * 0.1 * 0.01 / 0.5) + 128, 0, 255)
    assert q.dtype == np.uint8 and np.abs(q.astype(np.int64) - expected).max() <= 1


def test_qlinear_matmul_and_matmul_integer():
    a = RNG.integers(0, 255, (3, 4)).astype(np.uint8)
    b = RNG.integers(0, 255, (4, 2)).astype(np.uint8)
    acc = (a.astype(np.int64) - 3) @ (b.astype(np.int64) - 5)
    assert np.array_equal(run("MatMulInteger", a, b, np.uint8(3), np.uint8(5)), acc)
    y = run("QLinearMatMul", a, np.float32(0.1), np.uint8(3), b, np.float32(0.2), np.uint8(5),
            np.float32(1.0), np.uint8(10))
    assert np.array_equal(y, np.clip(np.rint(acc * np.float32(0.1) * np.float32(0.2)) + 10, 0, 255))


# ---------------------------------------------------------------- signal

def test_dft_against_naive_and_windows():
    x = RNG.standard_normal((1, 8, 1)).astype(np.float32)
    n = np.arange(8)
    naive = (x[0, :, 0][None, :] * np.exp(-2j * np.pi * n[:, None] * n[None, :] / 8)).sum(axis=1)
    y = run("DFT", x, None, np.array(-2), opset=20)
    assert y.dtype == np.float32 and y.shape == (1, 8, 2)
    np.testing.assert_allclose(y[0, :, 0] + 1j * y[0, :, 1], naive, rtol=1e-4, atol=1e-4)
    assert run("DFT", x, None, np.array(1), onesided=1, opset=20).shape == (1, 5, 2)
    inv = run("DFT", y, None, np.array(1), inverse=1, opset=20)
    np.testing.assert_allclose(inv[..., 0], x[..., 0], atol=1e-5)
    hann = run("HannWindow", np.array(4), output_datatype=TensorProto.DOUBLE)
    assert hann.dtype == np.float64 and np.allclose(hann, [0, 0.5, 1, 0.5])
    assert np.allclose(run("HannWindow", np.array(3), periodic=0), [0, 1, 0])


def test_stft_frames():
    sig = RNG.standard_normal((1, 16, 1)).astype(np.float32)
    y = run("STFT", sig, np.array(4), np.ones(8, np.float32), opset=17)
    assert y.shape == (1, 3, 5, 2)
    np.testing.assert_allclose(y[0, 1, :, 0], np.fft.rfft(sig[0, 4:12, 0]).real, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- misc

def test_nms_and_strings():
    boxes = np.array([[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, 5, 1, 6]]], np.float32)
    scores = np.array([[[0.9, 0.8, 0.7]]], np.float32)
    sel = run("NonMaxSuppression", boxes, scores, np.array([3]), np.array([0.5]), opset=11)
    assert sel.tolist() == [[0, 0, 0], [0, 0, 2]]
    y, z = run("StringSplit", np.array(["a,b", "c"], dtype=object), delimiter=",", num_outputs=2)
    assert y.tolist() == [["a", "b"], ["c", ""]] and z.tolist() == [2, 1]
    words = np.array(["ab1", "x"], dtype=object)
    assert run("RegexFullMatch", words, pattern=r"[a-z]+\d").tolist() == [True, False]
    assert run("StringConcat", words, np.array("!", dtype=object)).tolist() == ["ab1!", "x!"]


def test_label_encoder_and_tree_ensemble():
    x = np.array(["a", "z"], dtype=object)
    y = run("LabelEncoder", x, opset=4, domain="ai.onnx.ml", keys_strings=("a",), values_int64s=(5,))
    assert y.tolist() == [5, -1] and y.dtype == np.int64
    # one stump: x0 <= 0.5 -> leaf 0 (weight 1), else leaf 1 (weight 2)
    tree = dict(nodes_featureids=(0,), nodes_splits=np.array([0.5]), nodes_modes=np.array([0], np.uint8),
                nodes_truenodeids=(0,), nodes_falsenodeids=(1,), nodes_trueleafs=(1,), nodes_falseleafs=(1,),
                leaf_targetids=(0, 0), leaf_weights=np.array([1.0, 2.0]), tree_roots=(0,), n_targets=1)
    out = run("TreeEnsemble", np.array([[0.0], [1.0]], np.float32), opset=5, domain="ai.onnx.ml", **tree)
    assert out.dtype == np.float32 and out.tolist() == [[1.0], [2.0]]


# ---------------------------------------------------------------- control flow, through sessions

def _loop_model():
    body = helper.make_graph(
        [helper.make_node("Add", ["x_in", "one"], ["x_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    node = helper.make_node("Loop", ["m", "", "x0"], ["x_final", "trace"], body=body)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("m", TensorProto.INT64, []),
                                        helper.make_tensor_value_info("x0", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("x_final", TensorProto.FLOAT, [2]),
                           helper.make_tensor_value_info("trace", TensorProto.FLOAT, [None, 2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)])


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_loop_carried_scan_outputs_and_zero_trips(mode):
    sess = framework.InferenceSession(_loop_model(), mode=mode)
    x0 = np.zeros(2, np.float32)
    final, trace = sess.run(None, {"m": np.array(3, np.int64), "x0": x0})
    assert final.tolist() == [3, 3] and trace.tolist() == [[0, 0], [1, 1], [2, 2]]
    final, trace = sess.run(None, {"m": np.array(0, np.int64), "x0": x0})
    assert final.tolist() == [0, 0] and trace.shape == (0, 2) and trace.dtype == np.float32


def test_scan9_reverse_and_axes():
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x"], ["s_out"])], "body",
        [helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [2])])
    node = helper.make_node("Scan", ["s0", "xs"], ["s", "ys"], body=body, num_scan_inputs=1,
                            scan_input_axes=[1], scan_input_directions=[1])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("s0", TensorProto.FLOAT, [2]),
                                        helper.make_tensor_value_info("xs", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("s", TensorProto.FLOAT, [2]),
                           helper.make_tensor_value_info("ys", TensorProto.FLOAT, [3, 2])])
    sess = framework.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)]))
    xs = np.array([[1, 2, 3], [10, 20, 30]], np.float32)
    s, ys = sess.run(None, {"s0": np.zeros(2, np.float32), "xs": xs})
    assert s.tolist() == [6, 60] and ys.tolist() == [[3, 30], [5, 50], [6, 60]]


# ---------------------------------------------------------------- ImageDecoder

def _png_bytes(img, filters):
    """A PNG encoder for tests: row y uses filter filters[y] (predictors from the original pixels)."""
    import struct
    import zlib
    h, w, c = img.shape
    flat = img.reshape(h, w * c).astype(np.int32)
    out = []
    for y in range(h):
        cur, prev = flat[y], flat[y - 1] if y else np.zeros(w * c, np.int32)
        left = np.concatenate([np.zeros(c, np.int32), cur[:-c]])
        upleft = np.concatenate([np.zeros(c, np.int32), prev[:-c]])
        p = left + prev - upleft
        pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        pred = [0, left, prev, (left + prev) // 2, paeth][filters[y]]
        out.append(bytes([filters[y]]) + ((cur - pred) % 256).astype(np.uint8).tobytes())

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(out)))
            + chunk(b"IEND", b""))


def test_image_decoder_png_filters_pnm_and_formats():
    img = RNG.integers(0, 256, (5, 4, 3)).astype(np.uint8)
    png = np.frombuffer(_png_bytes(img, [0, 1, 2, 3, 4]), np.uint8)
    assert np.array_equal(run("ImageDecoder", png), img)
    assert np.array_equal(run("ImageDecoder", png, pixel_format="BGR"), img[..., ::-1])
    gray = run("ImageDecoder", png, pixel_format="Grayscale")
    assert gray.shape == (5, 4, 1) and gray.dtype == np.uint8
    pnm = np.frombuffer(b"P6\n# comment\n4 5\n255\n" + img.tobytes(), np.uint8)
    assert np.array_equal(run("ImageDecoder", pnm), img)
