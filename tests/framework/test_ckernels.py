"""The C conv/pool kernels (framework._ckernels) against naive float64 loops over many random geometries,
plus their buffer checks. Skipped where the extension is not built (the numpy kernels are used there)."""
import itertools

import numpy as np
import pytest

from framework.ops import nn_ckernels
from framework.ops.registry import Ctx, get
from tests.framework.test_ops_nn import naive_conv, naive_pool

pytestmark = pytest.mark.skipif(not nn_ckernels.available(), reason="framework._ckernels is not built")
RNG = np.random.default_rng(7)


def _geometry(rng, depthwise):
    """A random 2-D conv geometry: (x shape, w shape, group, strides, dilations, pads)."""
    n, cg = int(rng.integers(1, 3)), 1 if depthwise else int(rng.integers(1, 5))
    group = int(rng.integers(1, 6)) if depthwise else int(rng.choice([1, 1, 2, 3]))
    mult = int(rng.integers(1, 3))
    k = [int(rng.choice([1, 2, 3, 3, 5])), int(rng.choice([1, 3, 3, 4]))]
    strides, dil = [int(rng.integers(1, 4)) for _ in k], [int(rng.integers(1, 3)) for _ in k]
    pads = [int(rng.integers(0, 3)) for _ in range(4)]
    size = [int(rng.integers((kk - 1) * d + 1, 14)) for kk, d in zip(k, dil)]
    return (n, cg * group, *size), (group * mult, cg, *k), group, strides, dil, pads


def _out(x_shape, w_shape, strides, dil, pads):
    return [(x_shape[2 + i] + pads[i] + pads[2 + i] - (w_shape[2 + i] - 1) * dil[i] - 1) // strides[i] + 1
            for i in range(2)]


@pytest.mark.parametrize("depthwise", [True, False])
@pytest.mark.parametrize("act", [None, "Relu", "Clip"])
def test_conv_plans_match_naive_loops(depthwise, act):
    for _ in range(25):
        xs, ws, group, strides, dil, pads = _geometry(RNG, depthwise)
        out = _out(xs, ws, strides, dil, pads)
        if min(out) <= 0:
            continue
        x, w = RNG.standard_normal(xs).astype(np.float32), RNG.standard_normal(ws).astype(np.float32)
        b = RNG.standard_normal(ws[0]).astype(np.float32) if RNG.random() < 0.7 else None
        plan = nn_ckernels.conv2d_plan(xs, ws, (x.dtype, w.dtype, None if b is None else b.dtype), group,
                                       strides, dil, pads[:2], out, act, -0.5, 0.5)
        assert plan is not None
        want = naive_conv(x, w, b, strides, pads, dil, group)
        if act == "Relu":
            want = np.maximum(want, 0)
        elif act == "Clip":
            want = np.clip(want, -0.5, 0.5)
        got = plan(x, w, b)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4,
                                   err_msg=str((xs, ws, group, strides, dil, pads)))


def test_gemm_path_batched_grouped_padded(monkeypatch):
    monkeypatch.setattr(nn_ckernels, "DIRECT_MACS", 0)  # these small convs would otherwise run direct
    monkeypatch.setattr(nn_ckernels, "DIRECT_K", 0)
    for group, k, stride in itertools.product([1, 2], [1, 3], [1, 2]):
        x = RNG.standard_normal((3, 4 * group, 9, 7)).astype(np.float32)
        w = RNG.standard_normal((6 * group, 4, k, k)).astype(np.float32)
        b = RNG.standard_normal(6 * group).astype(np.float32)
        pads = [k // 2] * 4
        out = _out(x.shape, w.shape, [stride] * 2, [1, 1], pads)
        plan = nn_ckernels.conv2d_plan(x.shape, w.shape, (x.dtype,) * 3, group, [stride] * 2, [1, 1],
                                       pads[:2], out, "Relu")
        want = np.maximum(naive_conv(x, w, b, [stride] * 2, pads, [1, 1], group), 0)
        np.testing.assert_allclose(plan(x, w, b), want, rtol=1e-4, atol=1e-4)


def test_serial_row_blocks_match_naive_loops(monkeypatch):
    """A mid-size GEMM split into row blocks (each under the BLAS threading threshold) gives the same conv."""
    monkeypatch.setattr(nn_ckernels, "BLAS_THREAD_MNK", 27 * 64 * 3)  # blocks of 3 of a group's 8 output rows
    monkeypatch.setattr(nn_ckernels, "DIRECT_MACS", 0)
    monkeypatch.setattr(nn_ckernels, "DIRECT_K", 0)
    x = RNG.standard_normal((1, 6, 16, 16)).astype(np.float32)   # 2 groups (one group: the implicit GEMM)
    w, b = RNG.standard_normal((16, 3, 3, 3)).astype(np.float32), RNG.standard_normal(16).astype(np.float32)
    plan = nn_ckernels.conv2d_plan(x.shape, w.shape, (x.dtype,) * 3, 2, [2, 2], [1, 1], [1, 1], [8, 8],
                                   "Clip", 0.0, 6.0)
    calls, dot = [], np.dot
    monkeypatch.setattr(np, "dot", lambda a, c, out: calls.append(a.shape) or dot(a, c, out=out))
    got = plan(x, w, b)
    assert calls == [(3, 27), (3, 27), (2, 27)] * 2
    want = np.clip(naive_conv(x, w, b, [2, 2], [1, 1, 1, 1], [1, 1], 2), 0, 6)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(nn_ckernels, "BLAS_THREAD_MNK", 3 * 81 * 3)  # grouped 1x1: blocks of 3 of 4 rows
    x = RNG.standard_normal((1, 6, 9, 9)).astype(np.float32)
    w = RNG.standard_normal((8, 3, 1, 1)).astype(np.float32)
    plan = nn_ckernels.conv2d_plan(x.shape, w.shape, (x.dtype, w.dtype, None), 2, [1, 1], [1, 1], [0, 0],
                                   [9, 9])
    calls.clear()
    got = plan(x, w, None)
    assert calls == [(3, 3), (1, 3)] * 2
    np.testing.assert_allclose(got, naive_conv(x, w, None, [1, 1], [0] * 4, [1, 1], 2), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act", [None, "Relu", "Clip"])
def test_implicit_gemm_conv_matches_naive_loops(act, monkeypatch):
    """Convs with taps as one GEMM over the padded input's stride phases: strides 1 to 3 (each axis its own),
    asymmetric and zero pads, dilations, batches, channel x tap counts past a 256-row k-block, output widths
    under and over a 32-column panel, no bias; the same bits on one thread as on two."""
    monkeypatch.setattr(nn_ckernels, "DIRECT_MACS", 0)  # small convs would otherwise run direct
    monkeypatch.setattr(nn_ckernels, "DIRECT_K", 0)
    rng = np.random.default_rng(11)
    for i in range(45):
        n, c, m = int(rng.integers(1, 3)), int(rng.integers(2, 45)), int(rng.integers(1, 20))
        k = [int(rng.choice([2, 3, 3, 5])), int(rng.choice([1, 3, 3, 7]))]
        dil = [int(rng.integers(1, 3)) for _ in k]
        strides = [1, 1] if i < 15 else [int(rng.integers(1, 4)) for _ in k]
        pads = [int(rng.integers(0, 3)) for _ in range(4)]
        size = [int(rng.integers((kk - 1) * d + 1, 40)) for kk, d in zip(k, dil)]
        xs, ws = (n, c, *size), (m, c, *k)
        out = _out(xs, ws, strides, dil, pads)
        x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32) if i % 3 else None
        plan = nn_ckernels.conv2d_plan(xs, ws, (x.dtype,) * 3, 1, strides, dil, pads[:2], out, act, -0.5, 0.5)
        assert plan.__name__ == "implicit_gemm"
        want = naive_conv(x, w, b, strides, pads, dil, 1)
        want = np.maximum(want, 0) if act == "Relu" else np.clip(want, -0.5, 0.5) if act == "Clip" else want
        got = plan(x, w, b)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=str((xs, ws, strides, dil, pads)))
        one = np.empty_like(got)
        geo = nn_ckernels.geometry(n, c, *size, m, c, *k, *strides, *dil, *pads[:2], *out)
        nn_ckernels._C.conv_gemm(x, w, b, one, geo, nn_ckernels.ACT[act], -0.5, 0.5, 1)
        np.testing.assert_array_equal(one, got)


@pytest.mark.parametrize("act", [None, "Relu", "Clip"])
def test_direct_conv_matches_naive_loops(act):
    """The register-blocked direct path: a stride-2 stem over a wide image (many blocks per row, a partial
    last one), dilation, groups, channel counts that are not multiples of the 8-channel block, batches, and
    1x1 convs read in place (64 pixels per plane) or copied (25)."""
    cases = [((1, 3, 37, 45), (16, 3, 3, 3), 1, [2, 2], [1, 1], [1, 1, 1, 1]),
             ((2, 5, 19, 23), (13, 5, 3, 2), 1, [1, 2], [2, 1], [2, 0, 1, 1]),
             ((2, 6, 11, 12), (10, 3, 3, 3), 2, [1, 1], [1, 1], [1, 1, 1, 1]),
             ((3, 16, 8, 8), (24, 16, 1, 1), 1, [1, 1], [1, 1], [0, 0, 0, 0]),
             ((1, 7, 5, 5), (9, 7, 1, 1), 1, [1, 1], [1, 1], [0, 0, 0, 0])]
    for xs, ws, group, strides, dil, pads in cases:
        out = _out(xs, ws, strides, dil, pads)
        x, w = RNG.standard_normal(xs).astype(np.float32), RNG.standard_normal(ws).astype(np.float32)
        b = RNG.standard_normal(ws[0]).astype(np.float32)
        plan = nn_ckernels.conv2d_plan(xs, ws, (x.dtype,) * 3, group, strides, dil, pads[:2], out, act, -0.5,
                                       0.5)
        assert plan.__name__ == "direct_conv"
        want = naive_conv(x, w, b, strides, pads, dil, group)
        want = np.maximum(want, 0) if act == "Relu" else np.clip(want, -0.5, 0.5) if act == "Clip" else want
        np.testing.assert_allclose(plan(x, w, b), want, rtol=1e-4, atol=1e-4, err_msg=str((xs, ws)))


def test_conv_plan_declines_other_dtypes_and_ranks():
    assert nn_ckernels.conv2d_plan((1, 2, 5), (3, 2, 3), (np.dtype(np.float32),) * 3, 1, [1], [1], [0],
                                   [3]) is None
    f64 = np.dtype(np.float64)
    assert nn_ckernels.conv2d_plan((1, 2, 5, 5), (3, 2, 3, 3), (f64, f64, None), 1, [1, 1], [1, 1], [0, 0],
                                   [3, 3]) is None


def test_non_contiguous_input():
    x = RNG.standard_normal((1, 3, 10, 8)).astype(np.float32).transpose(0, 1, 3, 2)
    w = RNG.standard_normal((3, 1, 3, 3)).astype(np.float32)
    plan = nn_ckernels.conv2d_plan(x.shape, w.shape, (x.dtype, w.dtype, None), 3, [1, 1], [1, 1], [1, 1],
                                   [8, 10])
    np.testing.assert_allclose(plan(x, w, None), naive_conv(x, w, None, [1, 1], [1, 1, 1, 1], [1, 1], 3),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("avg, include_pad", [(False, False), (True, False), (True, True)])
def test_pools_match_naive_loops(avg, include_pad):
    exact = [([2, 2], [2, 2], [0] * 4, (8, 6)), ([3, 2], [3, 2], [0] * 4, (9, 4))]  # windows tile the input
    # stride 1, averages summed over the whole plane at once: asymmetric pads, windows wider than tall
    exact += [([3, 3], [1, 1], [1, 1, 1, 1], (14, 14)), ([3, 3], [1, 1], [1, 0, 0, 1], (7, 9)),
              ([2, 3], [1, 1], [0, 2, 1, 0], (5, 8))]
    for _ in range(30):
        k = [int(RNG.integers(1, 5)), int(RNG.integers(1, 5))]
        strides = [int(RNG.integers(1, 4)) for _ in k]
        pads = [int(RNG.integers(0, kk)) for kk in k] * 2
        exact.append((k, strides, pads, (int(RNG.integers(k[0], 12)), int(RNG.integers(k[1], 12)))))
    for k, strides, pads, size in exact:
        x = RNG.standard_normal((2, 3) + size).astype(np.float32)
        out = _out(x.shape, (1, 1, *k), strides, [1, 1], pads)
        plan = nn_ckernels.pool2d_plan(x.shape, x.dtype, k, strides, [1, 1], pads[:2], pads[2:], out, avg,
                                       include_pad)
        got = plan(x)
        if not avg:
            want = naive_pool(x, k, strides, pads, lambda v: v.max(-1))
            np.testing.assert_array_equal(got, want)
            continue
        if include_pad:  # padded zeros count: the window sum over the zero-padded input / window size
            xp = np.pad(x, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
            want = naive_pool(xp, k, strides, [0] * 4, lambda v: v.mean(-1))
        else:
            want = naive_pool(x, k, strides, pads, lambda v: v.mean(-1))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_maxpool_propagates_nan_and_all_padding_window():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 1, 1] = np.nan
    got = nn_ckernels.pool2d_plan(x.shape, x.dtype, [2, 2], [2, 2], [1, 1], [0, 0], [0, 0], [2, 2])(x)
    assert np.isnan(got[0, 0, 0, 0]) and got[0, 0, 1, 1] == 15
    got = nn_ckernels.pool2d_plan(x.shape, x.dtype, [3, 3], [1, 1], [1, 1], [1, 1], [1, 1], [4, 4])(x)
    assert np.isnan(got[0, 0, :3, :3]).all() and got[0, 0, 3, 3] == 15 and got[0, 0, 0, 3] == 7
    # a window lying wholly in the padding (ceil-mode geometry) yields -inf, as the numpy kernel's fill does
    got = nn_ckernels.pool2d_plan(x.shape, x.dtype, [1, 1], [3, 3], [1, 1], [0, 0], [3, 3], [3, 3])(x)
    assert got[0, 0, 1, 1] == 15 and got[0, 0, 0, 1] == 3 and got[0, 0, 2, 2] == -np.inf


def test_global_pools_and_dilated_pool_through_the_ops():
    from tests.framework.test_ops_nn import run
    x = RNG.standard_normal((2, 5, 6, 7)).astype(np.float32)
    want = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(run("GlobalAveragePool", x), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(run("GlobalMaxPool", x), x.max(axis=(2, 3), keepdims=True))
    got = run("MaxPool", x, kernel_shape=[2, 3], dilations=[2, 1], strides=[1, 2], pads=[1, 0, 0, 1])
    xp = np.pad(x, [(0, 0), (0, 0), (1, 0), (0, 1)], constant_values=-np.inf)
    want = np.stack([np.stack([xp[:, :, i:i + 3:2, 2 * j:2 * j + 3].max(axis=(2, 3))
                               for j in range(got.shape[3])], -1) for i in range(got.shape[2])], -2)
    np.testing.assert_array_equal(got, want)


def test_buffer_checks_reject_short_or_wrong_buffers():
    c = nn_ckernels._C
    x, w = np.zeros((1, 2, 4, 4), np.float32), np.zeros((2, 1, 3, 3), np.float32)
    sizes = (1, 2, 4, 4, 2, 1, 3, 3, 1, 1, 1, 1, 1, 1, 4, 4)
    geo = nn_ckernels.geometry(*sizes)
    with pytest.raises(ValueError, match="conv y"):
        c.conv(x, w, None, np.zeros(31, np.float32), geo, 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="conv x"):
        c.conv(x.astype(np.float64), w, None, np.zeros(32, np.float32), geo, 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="geometry"):
        c.conv(x, w, None, np.zeros(32, np.float32), nn_ckernels.geometry(*sizes[:5], 3, *sizes[6:]), 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="conv_direct w"):
        c.conv_direct(x, np.zeros(5, np.float32), None, np.zeros(32, np.float32), nn_ckernels.geometry(*sizes[:5], 2, *sizes[6:]), 0,
                      0.0, 0.0)
    with pytest.raises(ValueError, match="16 int64"):
        c.conv(x, w, None, np.zeros(32, np.float32), geo[:-8], 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="pool x"):
        c.pool(np.zeros(3, np.float32), np.zeros(32, np.float32), geo, 0, (0, 4, 0, 4))


def _grad_kernel(op, **attrs):
    opdef = get(op, "msgx", 1, op)
    ctx = Ctx({**opdef.attrs, **attrs}, 1, 1, op)
    return lambda *xs: opdef.ref(ctx, *xs)


@pytest.mark.parametrize("op", ["ConvGradX", "ConvGradW"])
def test_conv_backward_c_path_matches_the_float64_numpy_path(op):
    """float32 runs the C columns + one GEMM; float64 runs the numpy window loops: the two must agree."""
    checked = 0
    wide = [((2, 3, 5, 40), (4, 3, 3, 3), 1, [1, 1], [1, 1], [1, 1, 1, 1]),  # rows of >= 16 outputs: row loops
            ((1, 2, 6, 45), (3, 2, 2, 5), 1, [2, 2], [1, 2], [0, 3, 1, 2])]
    for xs, ws, _, strides, dil, pads in wide + [_geometry(RNG, depthwise=False) for _ in range(40)]:
        ws = (ws[0], xs[1]) + ws[2:]  # group 1: the C path
        out = _out(xs, ws, strides, dil, pads)
        if min(out) <= 0:
            continue
        x, w = RNG.standard_normal(xs).astype(np.float32), RNG.standard_normal(ws).astype(np.float32)
        gy = RNG.standard_normal((xs[0], ws[0], *out)).astype(np.float32)
        k = _grad_kernel(op, kernel_shape=ws[2:], strides=strides, dilations=dil, pads=pads)
        args = (gy, w, x) if op == "ConvGradX" else (x, gy, w)
        got, want = k(*args), k(*(a.astype(np.float64) for a in args))
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * (1 + np.abs(want).max()))
        checked += 1
    assert checked > 10


def test_maxpool_backward_c_path_matches_the_numpy_path():
    checked = 0
    cases = [([2, 2], [2, 2], [0] * 4, 0, (8, 6)), ([3, 2], [3, 2], [0] * 4, 0, (6, 4))]  # windows tile the input
    for _ in range(40):
        k = [int(RNG.integers(1, 4)), int(RNG.integers(1, 4))]
        cases.append((k, [int(RNG.integers(1, 3)) for _ in k], [int(RNG.integers(0, kk)) for kk in k + k],
                      int(RNG.integers(0, 2)), (int(RNG.integers(k[0], 9)), int(RNG.integers(k[1], 9)))))
    for k, strides, pads, ceil, size in cases:
        n, c = int(RNG.integers(1, 3)), int(RNG.integers(1, 4))
        x = RNG.integers(-3, 3, (n, c, *size)).astype(np.float32)
        x[RNG.random(x.shape) < 0.05] = -np.inf  # ties and -inf windows: the first maximum must win
        attrs = dict(kernel_shape=k, strides=strides, pads=pads, ceil_mode=ceil)
        mp = get("MaxPool", "", 12, "MaxPool")
        y = mp.ref(Ctx({**mp.attrs, **attrs}, 1, 12, "MaxPool"), x)
        gy = RNG.standard_normal(y.shape).astype(np.float32)
        kern = _grad_kernel("MaxPoolGrad", **attrs)
        got = kern(x, y, gy)
        want = kern(x.astype(np.float64), y.astype(np.float64), gy.astype(np.float64))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        checked += 1
    assert checked == len(cases)
