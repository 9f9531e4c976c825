"""Sliding-window geometry shared by Conv, ConvTranspose and the pooling ops (ints or sympy dims)."""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import ShapeError


def _floordiv(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return sympy.floor(sympy.sympify(a) / b)


def _ceildiv(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    return sympy.ceiling(sympy.sympify(a) / b)


def ints(v, n, default):
    """Attribute tuple `v` as a list of n ints, or [default] * n when absent."""
    if v is None or len(v) == 0:
        return [default] * n
    if len(v) != n:
        raise ShapeError(f"expected {n} values, got {list(v)}")
    return [int(i) for i in v]


def window(ctx, in_sizes, kernel, ceil_mode=False):
    """Resolve strides, dilations and pads for windows over `in_sizes`.

    Returns (strides, dilations, pads_begin, pads_end, out_sizes); auto_pad SAME_* pads are computed from the
    dilated kernel as onnxruntime does.
    """
    n = len(in_sizes)
    strides = ints(ctx.get("strides"), n, 1)
    dil = ints(ctx.get("dilations"), n, 1)
    auto = ctx.get("auto_pad") or "NOTSET"
    if isinstance(auto, bytes):
        auto = auto.decode()
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = [_ceildiv(i, s) for i, s in zip(in_sizes, strides)]
        total = [(o - 1) * s + e - i for o, s, e, i in zip(out, strides, eff, in_sizes)]
        total = [max(t, 0) if isinstance(t, int) else sympy.Max(t, 0) for t in total]
        small = [_floordiv(t, 2) for t in total]
        if auto == "SAME_UPPER":
            return strides, dil, small, [t - h for t, h in zip(total, small)], out
        return strides, dil, [t - h for t, h in zip(total, small)], small, out
    if auto == "VALID":
        out = [_floordiv(i - e, s) + 1 for i, e, s in zip(in_sizes, eff, strides)]
        return strides, dil, [0] * n, [0] * n, out
    if auto != "NOTSET":
        raise ShapeError(f"unknown auto_pad {auto!r}")
    pads = ctx.get("pads")
    pads = [0] * (2 * n) if pads is None or len(pads) == 0 else [int(p) for p in pads]
    if len(pads) != 2 * n:
        raise ShapeError(f"pads {pads} must have {2 * n} values")
    pb, pe = pads[:n], pads[n:]
    out = []
    for i, e, s, b, a in zip(in_sizes, eff, strides, pb, pe):
        span = i + b + a - e
        if not ceil_mode:
            out.append(_floordiv(span, s) + 1)
            continue
        o = _ceildiv(span, s) + 1
        # a window that would start inside the right padding is dropped
        if isinstance(o, int) and isinstance(i, int) and (o - 1) * s >= i + b:
            o -= 1
        out.append(o)
    return strides, dil, pb, pe, out


def check_out(out, what):
    for o in out:
        if isinstance(o, int) and o <= 0:
            raise ShapeError(f"{what}: window larger than the padded input (output size {out})")


def pad_for(x, spatial_start, pb, pe_needed, value):
    """Pad (or crop) the spatial dims of x from axis `spatial_start`; pe_needed may be negative (crop)."""
    crop = tuple(slice(None) if i < spatial_start
                 else slice(0, x.shape[i] + min(pe_needed[i - spatial_start], 0)) for i in range(x.ndim))
    if any(p < 0 for p in pe_needed):
        x = x[crop]
    widths = [(0, 0)] * spatial_start + [(b, max(e, 0)) for b, e in zip(pb, pe_needed)]
    if not any(b or e for b, e in widths):
        return x
    return np.pad(x, widths, mode="constant", constant_values=value)


def tap_range(i, d, s, b, o, n):
    """For kernel tap i along one dim: the output range [lo, hi) whose input i*d - b + o*s lies in [0, n),
    and the matching strided input slice (None when no output of this tap reads the input)."""
    start = i * d - b
    lo = 0 if start >= 0 else min(o, (-start + s - 1) // s)
    hi = max(0, min(o, (n - 1 - start) // s + 1)) if start <= n - 1 else 0
    if hi <= lo:
        return lo, lo, None
    return lo, hi, slice(start + lo * s, start + (hi - 1) * s + 1, s)


def pool_axis(x, axis, k, d, s, pb, out, ufunc, fill, res=None):
    """1-D window reduction of x along `axis` (zero-copy taps, no padding buffer); empty taps keep `fill`.
    Two taps that cover every output are combined in one ufunc call that initialises the result. `res`, when
    given, is the (possibly strided) destination view."""
    shape = list(x.shape)
    shape[axis] = out
    lead = (slice(None),) * axis
    ranges = [tap_range(i, d, s, pb, out, x.shape[axis]) for i in range(k)]
    full = [i for i, (lo, hi, sl) in enumerate(ranges) if sl is not None and lo == 0 and hi == out]
    if res is None:
        res = np.empty(shape, x.dtype)
    done = set(full[:2])
    if len(full) >= 2:
        ufunc(x[lead + (ranges[full[0]][2],)], x[lead + (ranges[full[1]][2],)], out=res)
    elif full:
        np.copyto(res, x[lead + (ranges[full[0]][2],)])
    else:
        res.fill(fill)
    for i, (lo, hi, sl) in enumerate(ranges):
        if sl is None or i in done:
            continue
        view = res[lead + (slice(lo, hi),)]
        ufunc(view, x[lead + (sl,)], out=view)
    return res


def _flat_taps(hf, m, k, d, s, ufunc, res):
    """res[q] = ufunc over taps t of hf[s*q + t*d] for q < m: 1-D strided operands, no per-row loop."""
    taps = [hf[t * d: t * d + s * (m - 1) + 1: s] for t in range(k)]
    if k == 1:
        np.copyto(res, taps[0])
        return
    ufunc(taps[0], taps[1], out=res)
    for t in taps[2:]:
        ufunc(res, t, out=res)


_BLOCK_BYTES = 1 << 20  # planes per block: the input block and its row-pooled copy stay in L2


def pool2d(x, kernel, strides, dil, pb, out, ufunc, fill):
    """2-D window reduction of NCHW x (rows pass, then a columns pass over the flattened rows).

    The rows pass writes into a buffer whose rows are exactly sw * ow wide (column c holds input column
    c - pw, or `fill`), so every column tap of the columns pass is one 1-D strided slice of the flat buffer:
    out_flat[q] = reduce_t buf_flat[sw * q + t * dw]. The last output columns, whose taps run past the row,
    are recomputed from x with the generic per-axis passes. Planes are processed in cache-sized blocks."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw), (ph, pw), (oh, ow) = kernel, strides, dil, pb, out
    wb = sw * ow
    j0 = min(ow, (wb - 1 - (kw - 1) * dw) // sw + 1)  # outputs whose column taps all lie in [0, wb)
    if j0 <= 0 or sw == 1:  # stride 1: the per-axis passes already read contiguous rows
        return None
    x3 = np.ascontiguousarray(x).reshape(n * c, h, w)
    planes = n * c
    res = np.empty((planes, oh, ow), x.dtype)
    blk = max(1, min(planes, _BLOCK_BYTES // max(1, h * w * x.itemsize)))
    buf = np.empty((min(blk, planes), oh, wb), x.dtype)
    wcopy = max(0, min(w, wb - pw))  # input columns that land in the buffer
    # tail outputs j >= j0, as a pooling of the input columns they read
    a = max(0, j0 * sw - pw)
    tail_pb = pw - j0 * sw + a
    for p0 in range(0, planes, blk):
        p1 = min(planes, p0 + blk)
        xb, rb, hb = x3[p0:p1], res[p0:p1], buf[:p1 - p0]
        if pw:
            hb[:, :, :pw].fill(fill)
        if pw + wcopy < wb:
            hb[:, :, pw + wcopy:].fill(fill)
        if wcopy:
            pool_axis(xb[:, :, :wcopy], 1, kh, dh, sh, ph, oh, ufunc, fill, hb[:, :, pw:pw + wcopy])
        m = (p1 - p0) * oh * ow - (ow - j0)
        _flat_taps(hb.reshape(-1), m, kw, dw, sw, ufunc, rb.reshape(-1)[:m])
        if j0 < ow:
            t = pool_axis(xb[:, :, a:], 2, kw, dw, sw, tail_pb, ow - j0, ufunc, fill)
            pool_axis(t, 1, kh, dh, sh, ph, oh, ufunc, fill, rb[:, :, j0:])
    return res.reshape(n, c, oh, ow)


def offset_slices(kernel, dil, strides, out):
    """For each kernel offset (row-major), the tuple of spatial slices that picks its input pixels."""
    for idx in np.ndindex(*kernel):
        yield idx, tuple(slice(i * d, i * d + (o - 1) * s + 1, s)
                         for i, d, s, o in zip(idx, dil, strides, out))
