"""Convolutions: Conv, ConvTranspose, DeformConv, CausalConvWithState.

Conv lowers to im2col (one strided copy per kernel offset) plus one batched sgemm per group; 1x1 convs skip
im2col entirely and depthwise convs multiply-accumulate per kernel offset. float32 stays float32.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import ShapeError
from ..ir import TensorType
from .nn import acc_dtype
from .nn_window import check_out, ints, taps, window
from .registry import Fusion, op

CONV_ATTRS = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None, "pads": None,
              "strides": None}


def _prod(xs):
    n = 1
    for x in xs:
        n *= int(x)
    return n


def im2col(x, kernel, dil, strides, pb, out):
    """Columns [N, C*K, L] of x [N, C, *S] (K = prod(kernel), L = prod(out)), C-major; padding is never
    materialised: each tap copies its valid output window and zeroes the border strips."""
    n, c = x.shape[:2]
    cols = np.empty((n, c, _prod(kernel)) + tuple(out), x.dtype)
    lead = (slice(None), slice(None))
    for k, dst, src, bounds in taps(kernel, dil, strides, pb, out, x.shape[2:]):
        view = cols[:, :, k]
        if dst is None:
            view[...] = 0
            continue
        view[lead + dst] = x[lead + src]
        for axis, (lo, hi) in enumerate(bounds):
            pre = lead + (slice(None),) * axis
            if lo > 0:
                view[pre + (slice(0, lo),)] = 0
            if hi < out[axis]:
                view[pre + (slice(hi, None),)] = 0
    return cols.reshape(n, c * _prod(kernel), _prod(out))


TILE_BYTES = 8 << 20  # im2col tile budget: stays in cache and under malloc's mmap threshold (no page faults)


def _wide_input(x, kernel, dil, pb, out):
    """Zero-padded copy of x flattened over its spatial dims, plus the geometry of the "wide" output grid.

    For stride 1, tap t of output position p reads flat[p + off_t]: one contiguous slice per tap. Outputs
    are computed on the padded grid (rows of the padded width) and cropped afterwards.
    """
    n, c = x.shape[:2]
    nd = len(kernel)
    ext = [o + (k - 1) * d for o, k, d in zip(out, kernel, dil)]  # padded extent actually read
    inner = _prod(ext[1:])
    pstr = [_prod(ext[i + 1:]) for i in range(nd)]
    tail = sum((k - 1) * d * ps for k, d, ps in zip(kernel[1:], dil[1:], pstr[1:]))
    extra = -(-tail // inner) if tail else 0
    xp = np.zeros((n, c, ext[0] + extra) + tuple(ext[1:]), x.dtype)
    dst, src = [], []
    for size, b, e in zip(x.shape[2:], pb, ext):
        lo, hi = max(b, 0), min(b + size, e)
        dst.append(slice(lo, max(hi, lo)))
        src.append(slice(lo - b, lo - b + max(hi - lo, 0)))
    xp[(slice(None), slice(None)) + tuple(dst)] = x[(slice(None), slice(None)) + tuple(src)]
    offs = [d * ps for d, ps in zip(dil, pstr)]
    return xp.reshape(n, c, -1), ext, inner, offs


def _crop_wide(y, ext, out):
    """View of the true outputs inside a wide result [N, M, out0 * inner]."""
    y = y.reshape(y.shape[:2] + (out[0],) + tuple(ext[1:]))
    return y[(slice(None), slice(None), slice(None)) + tuple(slice(0, o) for o in out[1:])]


def _conv_wide(x, w, group, dil, pb, out):
    """Stride-1 conv: tiled wide im2col (one contiguous copy per tap and row tile) and one GEMM per tile."""
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    kernel = list(w.shape[2:])
    k_total = _prod(kernel)
    flat, ext, inner, offs = _wide_input(x, kernel, dil, pb, out)
    isz = flat.itemsize
    rows = max(1, min(out[0], TILE_BYTES // max(n * c * k_total * inner * isz, 1)))
    y = np.empty((n, m, out[0] * inner), x.dtype)
    wr = w.reshape(m, -1) if group == 1 else w.reshape(group, m // group, -1)
    for r0 in range(0, out[0], rows):
        lt = (min(out[0], r0 + rows) - r0) * inner
        view = as_strided(flat[:, :, r0 * inner:], (n, c) + tuple(kernel) + (lt,),
                          flat.strides[:2] + tuple(o * isz for o in offs) + (isz,), writeable=False)
        cols = np.ascontiguousarray(view).reshape(n, c * k_total, lt)
        part = y[:, :, r0 * inner:r0 * inner + lt]
        if group == 1:
            np.matmul(wr, cols, out=part)
        else:
            part[...] = np.matmul(wr, cols.reshape(n, group, cg * k_total, lt)).reshape(n, m, lt)
    return _crop_wide(y, ext, out)


def _depthwise(x, w, mult, kernel, dil, strides, pb, out):
    """Depthwise conv (one input channel per group): channel-wise multiply-accumulate per kernel offset.
    Stride 1 reads one contiguous slice per tap of the flattened padded input (cropped view returned);
    other strides restrict each tap to the outputs that read real input."""
    if mult > 1:
        x = np.repeat(x, mult, axis=1)
    n, m = x.shape[0], w.shape[0]
    wk = w.reshape(m, -1)
    if all(s == 1 for s in strides):
        flat, ext, inner, offs = _wide_input(x, kernel, dil, pb, out)
        lt = out[0] * inner
        acc = np.zeros((n, m, lt), x.dtype)
        tmp = np.empty_like(acc)
        for k, idx in enumerate(np.ndindex(*kernel)):
            off = sum(i * o for i, o in zip(idx, offs))
            np.multiply(flat[:, :, off:off + lt], wk[:, k:k + 1], out=tmp)
            acc += tmp
        return _crop_wide(acc, ext, out)
    bshape = (1, m) + (1,) * len(kernel)
    acc = np.zeros((n, m) + tuple(out), x.dtype)
    lead = (slice(None), slice(None))
    for k, dst, src, _ in taps(kernel, dil, strides, pb, out, x.shape[2:]):
        if dst is not None:
            acc[lead + dst] += x[lead + src] * wk[:, k].reshape(bshape)
    return acc


def conv(x, w, b, group, strides, dil, pb, pe, out):
    """N-d grouped convolution of x [N, C, *S] with w [M, C/group, *K]; returns [N, M, *out] in x's dtype."""
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    kernel = list(w.shape[2:])
    if c != cg * group or m % group:
        raise ShapeError(f"Conv: input channels {c}, weight {w.shape} and group {group} are inconsistent")
    check_out(out, "Conv")
    acc = acc_dtype(x.dtype)
    xw, ww = x.astype(acc, copy=False), w.astype(acc, copy=False)
    k_total = _prod(kernel)
    if n * m * _prod(out) == 0 or c == 0:
        y = np.zeros((n, m) + tuple(out), acc)
    elif cg == 1 and group == c and k_total > 1:
        y = _depthwise(xw, ww, m // group, kernel, dil, strides, pb, out)
    elif k_total > 1 and all(s == 1 for s in strides):
        y = _conv_wide(xw, ww, group, dil, pb, out)
    else:
        if k_total == 1 and not any(pb) and not any(pe):
            # 1x1: no im2col, just subsample (strides) and flatten the spatial dims
            xs = xw[(slice(None), slice(None)) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, strides))]
            cols = np.ascontiguousarray(xs).reshape(n, c, -1)
        else:
            cols = im2col(xw, kernel, dil, strides, pb, out)
        L = cols.shape[-1]
        if group == 1:
            y = np.matmul(ww.reshape(m, -1), cols)
        else:
            y = np.matmul(ww.reshape(group, m // group, -1), cols.reshape(n, group, -1, L))
        y = y.reshape((n, m) + tuple(out))
    # one pass makes the (possibly cropped) result contiguous, adds the bias and casts back
    res = np.empty((n, m) + tuple(out), x.dtype)
    if b is not None:
        np.add(y, b.astype(acc, copy=False).reshape((1, m) + (1,) * len(kernel)), out=res, casting="unsafe")
    else:
        np.copyto(res, y, casting="unsafe")
    return res


def _kernel_of(ctx, w_shape):
    k = ctx.get("kernel_shape")
    return [int(i) for i in k] if k else (None if w_shape is None else list(w_shape[2:]))


def _conv_infer(ctx, x, w, b=None):
    if x.shape is None or w is None or w.shape is None:
        return TensorType(x.dtype, None)
    _, _, _, _, out = window(ctx, list(x.shape[2:]), _kernel_of(ctx, w.shape))
    return TensorType(x.dtype, (x.shape[0], w.shape[0]) + tuple(out))


@op("Conv", since=1, attrs=CONV_ATTRS, fusion=Fusion.OUT_FUSABLE, infer=_conv_infer)
def _conv(ctx, x, w, b=None):
    kernel = _kernel_of(ctx, w.shape)
    if x.ndim != w.ndim or list(w.shape[2:]) != kernel:
        raise ShapeError(f"Conv: input {x.shape}, weight {w.shape} and kernel_shape {kernel} are inconsistent")
    strides, dil, pb, pe, out = window(ctx, list(x.shape[2:]), kernel)
    return conv(x, w, b, int(ctx["group"]), strides, dil, pb, pe, out)


# ---------------------------------------------------------------- ConvTranspose

def _convT_geometry(ctx, in_sizes, kernel):
    """(strides, dilations, pads_begin, out_sizes) following the ConvTranspose spec equations."""
    nd = len(in_sizes)
    strides = ints(ctx.get("strides"), nd, 1)
    dil = ints(ctx.get("dilations"), nd, 1)
    opad = ints(ctx.get("output_padding"), nd, 0)
    full = [s * (i - 1) + p + (k - 1) * d + 1 for s, i, p, k, d in zip(strides, in_sizes, opad, kernel, dil)]
    auto = ctx.get("auto_pad") or "NOTSET"
    out_shape = ctx.get("output_shape")
    if out_shape is not None and len(out_shape):
        out = [int(o) for o in out_shape][-nd:]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        out = [i * s for i, s in zip(in_sizes, strides)]
    else:
        pads = ints(ctx.get("pads"), 2 * nd, 0) if auto != "VALID" else [0] * (2 * nd)
        return strides, dil, pads[:nd], [f - a - b for f, a, b in zip(full, pads[:nd], pads[nd:])], full
    total = [f - o for f, o in zip(full, out)]
    if auto == "SAME_UPPER":
        pb = [t // 2 for t in total]
    else:
        pb = [t - t // 2 for t in total]
    return strides, dil, pb, out, full


def _convT_infer(ctx, x, w, b=None):
    if x.shape is None or w is None or w.shape is None:
        return TensorType(x.dtype, None)
    kernel = _kernel_of(ctx, w.shape)
    _, _, _, out, _ = _convT_geometry(ctx, list(x.shape[2:]), kernel)
    return TensorType(x.dtype, (x.shape[0], w.shape[1] * int(ctx["group"])) + tuple(out))


@op("ConvTranspose", since=1, attrs={**CONV_ATTRS, "output_padding": None, "output_shape": None},
    fusion=Fusion.OUT_FUSABLE, infer=_convT_infer)
def _conv_transpose(ctx, x, w, b=None):
    n, c = x.shape[:2]
    group = int(ctx["group"])
    if w.shape[0] != c or c % group:
        raise ShapeError(f"ConvTranspose: input {x.shape}, weight {w.shape} and group {group} are inconsistent")
    kernel = list(w.shape[2:])
    in_sizes = list(x.shape[2:])
    strides, dil, pb, out, full = _convT_geometry(ctx, in_sizes, kernel)
    mg = w.shape[1]
    m = mg * group
    acc = acc_dtype(x.dtype)
    xr = x.astype(acc, copy=False).reshape(n, group, c // group, -1)
    wr = w.astype(acc, copy=False).reshape(group, c // group, -1).transpose(0, 2, 1)
    cols = np.matmul(wr, xr).reshape((n, m, _prod(kernel)) + tuple(in_sizes))
    # scatter-add the columns into a buffer covering both the full result and the requested window
    lo = [min(p, 0) for p in pb]
    size = [max(f, p + o) - lo_i for f, p, o, lo_i in zip(full, pb, out, lo)]
    buf = np.zeros((n, m) + tuple(size), acc)
    for k, idx in enumerate(np.ndindex(*kernel)):
        sl = tuple(slice(i * d - l, i * d - l + (s_in - 1) * s + 1, s)
                   for i, d, l, s_in, s in zip(idx, dil, lo, in_sizes, strides))
        buf[(slice(None), slice(None)) + sl] += cols[:, :, k]
    y = buf[(slice(None), slice(None)) + tuple(slice(p - l, p - l + o) for p, l, o in zip(pb, lo, out))]
    if b is not None:
        y = y + b.astype(acc, copy=False).reshape((1, m) + (1,) * len(kernel))
    return np.ascontiguousarray(y).astype(x.dtype, copy=False)


from . import nn_conv2  # noqa: E402,F401  (DeformConv, CausalConvWithState)
