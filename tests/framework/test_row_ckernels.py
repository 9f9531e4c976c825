"""The C row kernels (LayerNorm, softmax, log-softmax, erf in framework._ckernels) against float64 numpy
formulas on random shapes and special values, their fallbacks, and the quiet unary kernels' promise."""
import warnings

import numpy as np
import pytest

from framework.ops import elementwise, nn_ckernels, row_ckernels
from framework.ops.registry import Ctx, get

needs_c = pytest.mark.skipif(not nn_ckernels.available(), reason="framework._ckernels is not built")
RNG = np.random.default_rng(3)


def _ln64(x, scale, bias, axis, eps):
    x = x.astype(np.float64)
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    y = (x - mean) * inv * scale + (0 if bias is None else bias)
    return y, mean, inv


@needs_c
@pytest.mark.parametrize("with_bias", [True, False])
def test_layer_norm_matches_float64(with_bias):
    for _ in range(40):
        rank = int(RNG.integers(1, 5))
        shape = tuple(int(d) for d in RNG.integers(1, 40, rank))
        axis = int(RNG.integers(0, rank))
        x = (RNG.standard_normal(shape) * RNG.uniform(0.1, 50) + RNG.uniform(-5, 5)).astype(np.float32)
        inner = shape[axis:]
        scale = RNG.standard_normal(inner).astype(np.float32)
        bias = RNG.standard_normal(inner).astype(np.float32) if with_bias else None
        y, mean, inv = row_ckernels.layer_norm(x, scale, bias, axis, 1e-5, 3)
        ry, rmean, rinv = _ln64(x, scale, bias, axis, 1e-5)
        assert y.shape == x.shape and mean.shape == rmean.shape == inv.shape
        np.testing.assert_allclose(y, ry, rtol=1e-4, atol=1e-4 * (1 + np.abs(ry).max()))
        np.testing.assert_allclose(mean, rmean, rtol=1e-5, atol=1e-5 * (1 + np.abs(x).max()))
        np.testing.assert_allclose(inv, rinv, rtol=1e-4)


@needs_c
def test_layer_norm_special_values_and_fallbacks():
    x = np.array([[1.0, np.nan, 2.0], [np.inf, 1.0, 0.0], [-0.0, -0.0, -0.0]], np.float32)
    y, _, _ = row_ckernels.layer_norm(x, np.ones(3, np.float32), None, 1, 1e-5, 1)
    assert np.isnan(y[0]).all() and np.isnan(y[1]).all()
    assert (y[2] == 0).all()
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    assert row_ckernels.layer_norm(x, np.ones(1, np.float32), None, 2, 1e-5, 1) is None  # scale broadcast
    assert row_ckernels.layer_norm(x.astype(np.float64), np.ones(4), None, 2, 1e-5, 1) is None
    # a non-contiguous input is copied, not misread
    xt = x.transpose(0, 2, 1)
    y, _, _ = row_ckernels.layer_norm(xt, np.ones(3, np.float32), None, 2, 1e-5, 1)
    np.testing.assert_allclose(y, _ln64(xt, 1.0, None, 2, 1e-5)[0], rtol=1e-4, atol=1e-5)


@needs_c
@pytest.mark.parametrize("log", [False, True])
def test_softmax_matches_float64(log):
    for _ in range(40):
        shape = tuple(int(d) for d in RNG.integers(1, 70, int(RNG.integers(1, 4))))
        x = (RNG.standard_normal(shape) * RNG.uniform(0.1, 30)).astype(np.float32)
        x64 = x.astype(np.float64)
        s = x64 - x64.max(-1, keepdims=True)
        ref = s - np.log(np.exp(s).sum(-1, keepdims=True))
        y = row_ckernels.softmax(x, log)
        np.testing.assert_allclose(y, ref if log else np.exp(ref), rtol=2e-6, atol=2e-6 if log else 1e-7)


@needs_c
def test_softmax_special_values():
    x = np.array([[0.0, np.nan, 1.0], [np.inf, 0.0, 1.0], [-np.inf, 0.0, 0.0], [-np.inf] * 3], np.float32)
    with np.errstate(all="ignore"):
        want = np.exp(x - x.max(-1, keepdims=True))
        want = want / want.sum(-1, keepdims=True)
    np.testing.assert_array_equal(np.isnan(row_ckernels.softmax(x, False)), np.isnan(want))
    np.testing.assert_allclose(row_ckernels.softmax(x, False)[2], [0, 0.5, 0.5])


@needs_c
def test_erf_is_bit_identical_to_the_numpy_fit():
    x = np.concatenate([RNG.standard_normal(5000) * 3, [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, 4.0, -4.5]])
    x = x.astype(np.float32)
    xf = np.clip(x, -4, 4)
    z = xf * xf
    want = xf * elementwise._horner(elementwise._ERF_P, z) / elementwise._horner(elementwise._ERF_Q, z)
    got = row_ckernels.erf(x)
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got[x == 0]).tolist() == np.signbit(x[x == 0]).tolist()


@needs_c
def test_bad_buffers_raise():
    from framework.ops.nn_ckernels import _C
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError):
        _C.softmax(x, np.zeros(5, np.float32), 2, 3, False)  # output too small
    with pytest.raises(ValueError):
        _C.layer_norm(x, np.ones(2, np.float32), None, np.zeros_like(x), None, None, 2, 3, 1e-5)  # short scale
    with pytest.raises(ValueError):
        _C.erf(x.astype(np.float64), np.zeros(6, np.float32), 6)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_quiet_unary_kernels_raise_no_floating_point_warnings(dtype):
    """The kernels that skip np.errstate promise no floating-point warning on any input."""
    info = np.finfo(dtype)
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, info.tiny / 4, info.max, -info.max, 1.5, -2.5], dtype)
    for name in elementwise.QUIET_UNARY:
        opdef = get(name, "", 21, name)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            opdef.ref(Ctx(dict(opdef.attrs), 1, 21, name), x)
