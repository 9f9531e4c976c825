"""float32 2-D conv and pooling through the optional C extension framework._ckernels (built by setup.py).

Depthwise convs run as direct loops; small convs and those with few input channels x taps as direct
register-blocked C; other group-1 convs with taps as one GEMM of ours over an implicit im2col (convgemm.c);
the rest (1x1, grouped) as C im2col + one GEMM writing the output in place (ours for one group, numpy's BLAS
for several), then bias, residual and activation in one C pass. Plans are built once per node and input
shape, so a call is a few C calls. A builder returns None where the C path does not apply (extension not
built, other dtype or rank, huge columns) and the caller uses its numpy kernel.

Why our GEMM over BLAS for one group: OpenBLAS's threads spin for about 0.1 s after each threaded call, and
between the convs that ran on our pool (the implicit-GEMM ones) they held the cores our workers needed:
ResNet-50 at 2 threads took 34.9-45.7 ms (median per process, three processes) with the 1x1 convs on
OpenBLAS and 34.1-35.8 on ours; at 1 thread 54.9-55.6 -> 53.7-54.3.
"""
from __future__ import annotations

import os

import numpy as np

from .nn_convcore import scratch

try:
    if os.environ.get("MSGX_NO_CKERNELS"):  # lets tests and benchmarks compare against the numpy kernels
        raise ImportError("disabled by MSGX_NO_CKERNELS")
    from .. import _ckernels as _C
except ImportError:
    _C = None

COLS_MAX = 16 << 20  # bigger im2col buffers go to the tiled numpy kernel (cache-sized tiles)
# GEMMs of at most SERIAL_MACS multiply-adds stay on the calling thread, as row blocks each under OpenBLAS's
# threading threshold (65536 * 4 MNK): threads gain little there, and under CPU contention a statically
# partitioned BLAS pool waits for a descheduled worker (mobilenet's 16x27x4096 stem: 19 ms instead of 0.07).
SERIAL_MACS, BLAS_THREAD_MNK = 1 << 21, 1 << 18
# Convs of at most DIRECT_MACS multiply-adds, and those with at most DIRECT_K input channels x taps per
# group, run direct (conv_direct): at 1 thread it matched or beat im2col + BLAS on every geometry measured
# (0.4-0.6x the time on mobilenet's 3->16 stem at 32-224 px, 0.5-1.0x on its small 1x1 convs); bigger convs
# keep BLAS for its threads.
DIRECT_MACS, DIRECT_K = 1 << 21, 32
ACT = {None: 0, "Relu": 1, "Clip": 2}
F32 = np.dtype(np.float32)


def geometry(*sizes) -> bytes:
    """A window geometry for the C kernels: n, c, h, w, m, cg, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow as the
    bytes of 16 int64 (parsed in C much faster than a tuple)."""
    return np.array(sizes, np.int64).tobytes()


def available() -> bool:
    return _C is not None


def _f32(*dtypes) -> bool:
    return _C is not None and all(d is None or d == F32 for d in dtypes)


def conv2d_plan(x_shape, w_shape, dtypes, group, strides, dil, pb, out, act=None, lo=None, hi=None):
    """A function (x, w, b, z=None) -> new [N, M, OH, OW] for one grouped 2-D conv geometry with bias, the
    residual z (float32 of the output's shape, or None) and activation (None, "Relu" or "Clip" to [lo, hi])
    applied in that order, or None when the C path does not apply."""
    if not _f32(*dtypes) or len(x_shape) != 4:
        return None
    n, c, h, wd = x_shape
    m, cg, kh, kw = w_shape
    oh, ow = out
    if not (n and c and m and oh > 0 and ow > 0):
        return None
    geo = geometry(n, c, h, wd, m, cg, kh, kw, strides[0], strides[1], dil[0], dil[1], pb[0], pb[1], oh, ow)
    code = ACT[act]
    lo = -np.inf if lo is None else float(lo)
    hi = np.inf if hi is None else float(hi)
    shape, plane, k, mg = (n, m, oh, ow), oh * ow, cg * kh * kw, m // group

    def c_kernel(name, fn, *extra):
        """A plan (called `name`) running the C conv `fn`; with a residual z, the activation waits for
        bias_act's z pass."""
        def run(x, w, b, z=None):
            y = np.empty(shape, F32)
            fused_act = code if z is None else 0
            try:
                fn(x, w, b, y, geo, fused_act, lo, hi, *extra)
            except (BufferError, ValueError):  # an operand is not C-contiguous (a real mismatch raises again)
                fn(*_contiguous(x, w, b), y, geo, fused_act, lo, hi, *extra)
            if z is not None:
                _C.bias_act(y, None, np.ascontiguousarray(z), n, m, plane, code, lo, hi)
            return y
        run.__name__ = name
        return run

    def finish(y, b, z):
        """Bias, residual and activation on a GEMM's output, one pass."""
        if b is not None or z is not None or code:
            _C.bias_act(y, *_contiguous(b, z), n, m, plane, code, lo, hi)
        return y

    from .gemm import cpu_threads, matmul  # (gemm imports this module)

    if cg == 1:
        return c_kernel("depthwise", _C.conv)
    if n * m * k * plane <= DIRECT_MACS or k <= DIRECT_K:
        # small, or few input channels x taps: in register blocks straight from the (phase-split) input,
        # without the im2col pass and the BLAS call, which cost more than the arithmetic there
        return c_kernel("direct_conv", _C.conv_direct)
    if group == 1 and kh * kw > 1:
        # one GEMM packing its panels straight from the padded input's stride phases (convgemm.c): no im2col
        # pass
        return c_kernel("implicit_gemm", _C.conv_gemm, cpu_threads())
    direct = kh == kw == 1 and list(strides) == [1, 1] and not any(pb) and (oh, ow) == (h, wd)
    if not direct and n * c * kh * kw * plane * 4 > COLS_MAX:
        return None
    if group == 1 and n > 1 and not direct:
        # a batch as one GEMM over columns [K, N*OH*OW], then [M, N, P] -> [N, M, P]: one GEMM instead of
        # one per image, which matters for the small images of a training batch
        def batched(x, w, b, z=None):
            cols = scratch("ccols_ck", (k, n * plane), F32)
            _C.im2col_ck(np.ascontiguousarray(x), cols, geo)
            y = np.empty(shape, F32)
            prod = matmul(w.reshape(m, k), cols)
            y.reshape(n, m, plane).transpose(1, 0, 2)[...] = (w.reshape(m, k) @ cols if prod is None else
                                                              prod).reshape(m, n, plane)
            return finish(y, b, z)
        return batched
    cols_shape = (n, c * kh * kw, plane)
    w_shape2, cols2, y2 = ((m, k), (k, plane), (m, plane)) if group == 1 and n == 1 else \
        ((group, mg, k), (n, group, k, plane), (n, group, mg, plane))
    gemm = np.dot if group == 1 and n == 1 else np.matmul  # np.dot has the lower call overhead
    own = matmul if group == 1 and n == 1 else None  # ours where it takes the product (big enough)
    rows = max(1, BLAS_THREAD_MNK // (k * plane))
    serial = n == 1 and BLAS_THREAD_MNK < mg * k * plane <= SERIAL_MACS and k * plane <= BLAS_THREAD_MNK
    blocks = [(g, r, min(mg, r + rows)) for g in range(group) for r in range(0, mg, rows)] if serial else None

    def im2col_gemm(x, w, b, z=None):
        y = np.empty(shape, F32)
        cols = x
        if not direct:
            cols = scratch("ccols", cols_shape, F32)
            try:
                _C.im2col(x, cols, geo)
            except (BufferError, ValueError):  # x is not C-contiguous (a real mismatch raises again)
                _C.im2col(np.ascontiguousarray(x), cols, geo)
        if blocks is None:
            if own is None or own(w.reshape(w_shape2), cols.reshape(cols2), out=y.reshape(y2)) is None:
                gemm(w.reshape(w_shape2), cols.reshape(cols2), out=y.reshape(y2))
        else:  # per group, row blocks of w against that group's columns
            w3, c3, out3 = w.reshape(group, mg, k), cols.reshape(group, k, plane), y.reshape(group, mg, plane)
            for g, r0, r1 in blocks:
                np.dot(w3[g, r0:r1], c3[g], out=out3[g, r0:r1])
        return finish(y, b, z)
    return im2col_gemm


def _contiguous(*arrays):
    return [a if a is None else np.ascontiguousarray(a) for a in arrays]


def pool2d_plan(x_shape, dtype, kernel, strides, dil, pb, pe, out, avg=False, include_pad=False):
    """A function x -> new [N, C, OH, OW]: max or average pooling of a float32 [N, C, H, W] x (averages count
    the taps inside the input, or inside the padded input when include_pad); None where C does not apply."""
    if not _f32(dtype) or len(x_shape) != 4 or 0 in x_shape:
        return None
    n, c, h, wd = x_shape
    oh, ow = out
    if oh <= 0 or ow <= 0:
        return None
    shape = (n, c, oh, ow)
    geo = geometry(n, c, h, wd, c, 1, kernel[0], kernel[1], strides[0], strides[1], dil[0], dil[1], pb[0], pb[1],
                   oh, ow)
    bounds = (-pb[0], h + pe[0], -pb[1], wd + pe[1]) if include_pad else (0, h, 0, wd)
    mode = int(avg)

    def pool(x):
        y = np.empty(shape, F32)
        try:
            _C.pool(x, y, geo, mode, bounds)
        except (BufferError, ValueError):  # x is not C-contiguous (a real mismatch raises again)
            _C.pool(np.ascontiguousarray(x), y, geo, mode, bounds)
        return y
    return pool


def conv2d_grad_plan(x_shape, w_shape, dtypes, group, strides, dil, pb, out):
    """(grad_x(gy, w), grad_w(x, gy)) of a float32 2-D conv without groups, or None where C does not apply.
    Both are one GEMM over dy as [M, N*OH*OW] plus a C gather (im2col) or scatter-add (col2im) of columns
    laid out [C*KH*KW, N*OH*OW]."""
    if not _f32(*dtypes) or len(x_shape) != 4 or group != 1:
        return None
    n, c, h, wd = x_shape
    m, _, kh, kw = w_shape
    oh, ow = out
    k, cols_n = c * kh * kw, n * oh * ow
    if not (n and c and m and oh > 0 and ow > 0) or k * cols_n * 4 > COLS_MAX:
        return None
    geo = geometry(n, c, h, wd, m, c, kh, kw, strides[0], strides[1], dil[0], dil[1], pb[0], pb[1], oh, ow)

    def dy_rows(gy):  # [N, M, OH, OW] -> [M, N*OH*OW]
        return np.ascontiguousarray(gy.reshape(n, m, oh * ow).transpose(1, 0, 2)).reshape(m, cols_n)

    def grad_x(gy, w):
        cols = w.reshape(m, k).T @ dy_rows(gy)
        dx = np.empty(x_shape, F32)
        _C.col2im_ck(cols, dx, geo)
        return dx

    def grad_w(x, gy):
        cols = scratch("ccols_ck", (k, cols_n), F32)
        _C.im2col_ck(np.ascontiguousarray(x), cols, geo)
        return (dy_rows(gy) @ cols.T).reshape(w_shape)
    return grad_x, grad_w


def maxpool2d_grad(x, y, gy, kernel, strides, dil, pb, out):
    """dx of float32 2-D max pooling (gy to each window's first maximum), or None where C does not apply."""
    if not _f32(x.dtype, y.dtype, gy.dtype) or x.ndim != 4 or 0 in x.shape or y.shape != gy.shape:
        return None
    n, c, h, wd = x.shape
    if y.shape != (n, c, *out):
        return None
    geo = geometry(n, c, h, wd, c, 1, kernel[0], kernel[1], strides[0], strides[1], dil[0], dil[1], pb[0], pb[1],
                   out[0], out[1])
    dx = np.empty(x.shape, F32)
    _C.maxpool_grad(*_contiguous(x, y, gy), dx, geo)
    return dx
