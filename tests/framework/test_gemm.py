"""framework._ckernels.matmul (framework/csrc/gemm.c) against numpy in float64: every micro-kernel family this CPU has, 1 and 2
threads, edges of every blocking level, batched and broadcast b, exact integer products, invariances, and
the typed errors for bad operands."""
import threading

import numpy as np
import pytest

from framework.ops import gemm
from framework.ops.nn_ckernels import _C

pytestmark = pytest.mark.skipif(_C is None, reason="framework._ckernels is not built")
F32 = np.float32


def _supported(isa: str) -> bool:
    try:
        _C.matmul(np.ones((1, 1), F32), np.ones((1, 1), F32), np.empty((1, 1), F32), 1, isa)
    except ValueError:
        return False
    return True


ISAS = [isa for isa in ("portable", "avx2", "avx512") if _C is not None and _supported(isa)]


def _run(a, b, nthreads=1, isa=None):
    out = np.full(a.shape[:-1] + b.shape[-1:], np.nan, F32)  # NaN: an element never written shows
    _C.matmul(a, b, out, nthreads, isa)
    return out


def _check(a, b, out):
    """|out - a@b| within the rounding bound of a K-term float32 sum (+1 for a k-block's add), elementwise."""
    want = a.astype(np.float64) @ b.astype(np.float64)
    bound = (a.shape[-1] + 2) * 2.0 ** -23 * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))
    err = np.abs(out - want)
    worst = err.argmax()
    assert np.all(err <= bound), f"max error {err.flat[worst]:.3g}, bound there {bound.flat[worst]:.3g}"


# (batch shape, M, K, N): M across the row groups (12, 6, 4) and tile rows (>= 48 packs a far-apart b, 252
# per tile); N across panels (32, 16, 8) with edges, and 530 (b rows 2 KiB apart: packed, with an edge panel
# of 18); K across k-blocks (256)
SHAPES = [((), 1, 1, 1), ((), 1, 64, 256), ((), 1, 256, 64), ((), 7, 1, 5), ((), 13, 3, 1), ((), 16, 64, 64),
          ((), 25, 17, 33), ((), 37, 100, 48), ((), 64, 64, 256), ((), 256, 256, 64), ((), 253, 5, 47),
          ((), 60, 40, 530), ((), 300, 600, 70), ((), 49, 257, 513), ((4,), 16, 16, 16), ((4,), 64, 16, 64),
          ((4,), 33, 65, 16), ((2, 3), 11, 9, 15), ((3,), 100, 300, 29),
          # above 16 MFLOP, so 2 threads split them (gemm.c MIN_FLOPS_PER_THREAD), with row and panel edges
          ((), 500, 300, 130), ((2,), 257, 129, 530),
          # one row (the AVX-512 GEMV tiles of 512 columns): k-blocks, an edge tile, a batch
          ((), 1, 600, 1100), ((3,), 1, 300, 530)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("batch,m,k,n", SHAPES)
def test_matches_float64(isa, nthreads, batch, m, k, n):
    rng = np.random.default_rng(m * 1000 + k * 7 + n)
    a = rng.standard_normal(batch + (m, k), dtype=F32)
    for b in (rng.standard_normal(batch + (k, n), dtype=F32), rng.standard_normal((k, n), dtype=F32)):
        _check(a, b, _run(a, b, nthreads, isa))


@pytest.mark.parametrize("isa", ISAS)
def test_integer_products_are_exact(isa):
    """Small integers sum exactly in float32, so any misplaced or missing term shows as an exact mismatch."""
    rng = np.random.default_rng(1)
    for batch, m, k, n in SHAPES:
        a = rng.integers(-4, 5, batch + (m, k)).astype(F32)
        b = rng.integers(-4, 5, batch + (k, n)).astype(F32)
        want = (a.astype(np.int64) @ b.astype(np.int64)).astype(F32)
        np.testing.assert_array_equal(_run(a, b, 2, isa), want, err_msg=str((batch, m, k, n)))


@pytest.mark.parametrize("isa", ISAS)
def test_rows_do_not_depend_on_m_or_threads(isa):
    """Each element is one FMA chain over k per k-block: the same bits for any M, tile split or thread count
    (a decoding step of one row gets the row a full-sequence product gets)."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((200, 300), dtype=F32)
    b = rng.standard_normal((300, 600), dtype=F32)
    for b in (b, np.ascontiguousarray(b.T).T):   # also transposed (read along k)
        full = _run(a, b, 1, isa)
        np.testing.assert_array_equal(_run(a, b, 2, isa), full)
        for r in (0, 13, 199):
            np.testing.assert_array_equal(_run(a[r:r + 1], b, 1, isa)[0], full[r])


def test_k_zero_gives_zeros_and_empty_is_a_no_op():
    out = np.full((3, 4), np.nan, F32)
    _C.matmul(np.empty((3, 0), F32), np.empty((0, 4), F32), out)
    np.testing.assert_array_equal(out, 0)
    _C.matmul(np.empty((0, 5), F32), np.ones((5, 4), F32), np.empty((0, 4), F32))


def test_concurrent_callers():
    """The GIL is released; a caller that finds the pool busy runs its tiles alone, with the same result."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 96, 128), dtype=F32)
    b = rng.standard_normal((128, 200), dtype=F32)
    want = _run(a, b, 2)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(_run(a, b, 2))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 80
    for r in results:
        np.testing.assert_array_equal(r, want)


def _ops(m=2, k=3, n=4):
    return np.ones((m, k), F32), np.ones((k, n), F32), np.empty((m, n), F32)


# views the kernels read in place: (a, b) builders from a generator; attention's heads of [b, s, h, d]
# arrays (two batch levels), a transposed b (packed panels), row strides wider than the rows
VIEWS = {
    "q @ k^T heads": lambda r: (r.standard_normal((2, 40, 3, 16), dtype=F32).transpose(0, 2, 1, 3),
                                r.standard_normal((2, 40, 3, 16), dtype=F32).transpose(0, 2, 3, 1)),
    "p @ v heads": lambda r: (r.standard_normal((2, 3, 40, 40), dtype=F32),
                              r.standard_normal((2, 40, 3, 16), dtype=F32).transpose(0, 2, 1, 3)),
    "b transposed": lambda r: (r.standard_normal((70, 300), dtype=F32),
                               r.standard_normal((45, 300), dtype=F32).T),
    "sliced rows": lambda r: (r.standard_normal((30, 50), dtype=F32)[:, 3:40],
                              r.standard_normal((37, 80), dtype=F32)[:, 10:43]),
    "batch of 2-D b transposed": lambda r: (r.standard_normal((3, 20, 33), dtype=F32),
                                            r.standard_normal((17, 33), dtype=F32).T),
    # one row against a transposed b (a classifier's Gemm with transB): k-blocks, k and row-block tails
    "one row, b transposed": lambda r: (r.standard_normal((1, 600), dtype=F32),
                                        r.standard_normal((1100, 600), dtype=F32).T),
    "batch of rows, b transposed": lambda r: (r.standard_normal((3, 1, 37), dtype=F32),
                                              r.standard_normal((21, 37), dtype=F32).T),
}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_strided_views_match_float64(isa, nthreads, view):
    a, b = VIEWS[view](np.random.default_rng(len(view)))
    assert not (a.flags.c_contiguous and b.flags.c_contiguous)
    _check(a, b, _run(a, b, nthreads, isa))


def test_a_view_gives_the_bits_of_its_copy():
    """A transposed b goes through a packed panel, the same products in the same order as its copy."""
    r = np.random.default_rng(9)
    for a, b in (f(r) for f in VIEWS.values()):
        np.testing.assert_array_equal(_run(a, b), _run(np.ascontiguousarray(a), np.ascontiguousarray(b)))


def test_bad_dtype_is_type_error():
    a, b, out = _ops()
    with pytest.raises(TypeError, match="float32"):
        _C.matmul(a.astype(np.float64), b, out)
    with pytest.raises(TypeError, match="float32"):
        _C.matmul(a, b.astype(np.float16), out)
    with pytest.raises(TypeError, match="float32"):
        _C.matmul(a, b, np.empty(out.shape, np.int32))
    with pytest.raises(TypeError):
        _C.matmul([[1.0]], b, out)


def test_bad_layout_or_shape_is_value_error():
    a, b, out = _ops()
    cases = [
        (np.ones((3, 2), F32).T, b, out, "unit-stride"),                     # a's columns are unit-stride
        (a, np.ones((3, 8), F32)[:, ::2], out, "unit-stride"),              # b: neither rows nor columns
        (a, b, np.empty((4, 2), F32).T, "C-contiguous"),
        (a, b[::-1], out, "non-negative strides"),
        (np.ones((2, 3, 4, 2, 3), F32)[:, ::2, :, ::2], np.ones((3, 4), F32),  # three batch levels
         np.empty((2, 2, 4, 1, 4), F32), "two levels"),
        (np.ones(3, F32), b, out, "2 dimensions"),
        (a, np.ones((2, 4), F32), out, "shapes"),                            # K differs
        (a, b, np.empty((2, 5), F32), "shapes"),                             # N differs
        (a, b, np.empty((3, 4), F32), "shapes"),                             # M differs
        (np.ones((2, 2, 3), F32), np.ones((3, 3, 4), F32), np.empty((2, 2, 4), F32), "shapes"),  # batch
        (np.ones((2, 2, 3), F32), b, out, "shapes"),                         # out lacks the batch
        (a, np.ones((2, 3, 4), F32), out, "shapes"),                         # b batched, a not
    ]
    for a_, b_, out_, msg in cases:
        with pytest.raises(ValueError, match=msg):
            _C.matmul(a_, b_, out_)


def test_overlap_readonly_threads_and_isa_are_value_errors():
    a, b, _ = _ops(3, 3, 3)
    with pytest.raises(ValueError, match="overlaps a"):
        _C.matmul(a, b, a)
    out = np.empty((3, 3), F32)
    out.flags.writeable = False
    with pytest.raises(ValueError):
        _C.matmul(a, b, out)
    with pytest.raises(ValueError, match="nthreads"):
        _C.matmul(a, b, np.empty((3, 3), F32), 0)
    with pytest.raises(ValueError, match="isa"):
        _C.matmul(a, b, np.empty((3, 3), F32), 1, "sse9")


def test_framework_matmul_takes_large_float32_products_and_declines_the_rest():
    """framework.ops.gemm.matmul (what MatMul kernels call) computes products above BLAS_ONE_THREAD_MACS and
    returns None for what it leaves to numpy: small products, other dtypes, non-contiguous operands, batch
    shapes that only broadcast."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 128, 64), F32), rng.standard_normal((64, 48), F32)
    assert a.size * b.shape[1] > gemm.BLAS_ONE_THREAD_MACS
    got = gemm.matmul(a, b)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    bb = rng.standard_normal((2, 64, 48), F32)
    np.testing.assert_allclose(gemm.matmul(a, bb), a.astype(np.float64) @ bb, rtol=1e-4, atol=1e-4)
    assert gemm.matmul(a[:, :8], b) is None                        # small: numpy's one-thread BLAS
    assert gemm.matmul(a.astype(np.float64), b.astype(np.float64)) is None
    assert gemm.matmul(a[:, :, ::2], b[::2]) is None                # a's rows are not unit-stride
    assert gemm.matmul(a, rng.standard_normal((1, 64, 48), F32)) is None  # broadcast batch: numpy's rules
    assert gemm.matmul(a, rng.standard_normal((65, 48), F32)) is None     # K differs: numpy raises its error


def test_matmul_op_on_the_gemm_matches_numpy():
    """The MatMul op of a session (O0 and O1) at a size the GEMM takes agrees with numpy."""
    import onnx
    from onnx import helper

    import framework
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((3, 100, 64), F32), rng.standard_normal((64, 96), F32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
                          "mm", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", 100, 64])],
                          [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)],
                          [onnx.numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    want = np.maximum(x.astype(np.float64) @ w, 0)
    for level in ("O0", "O1"):
        got = framework.InferenceSession(model, jit_level=level).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
