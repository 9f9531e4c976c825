"""DeformConv (bilinear-sampled im2col + grouped GEMM) and CausalConvWithState (stateful depthwise 1D)."""
from __future__ import annotations

import itertools

import numpy as np

from ..errors import ShapeError
from ..ir import TensorType
from .nn_convcore import depthwise, prod
from .nn import acc_dtype
from .nn_window import ints
from .registry import Fusion, op


def _deform_cols(x, offset, mask, kernel, strides, dil, pads, out, og):
    """Deformed columns [N, C, K, L]: each tap sampled bilinearly (zero outside) at its offset position."""
    n, c = x.shape[:2]
    nd, kk, L = len(kernel), prod(kernel), prod(out)
    sizes = x.shape[2:]
    off = offset.reshape(n, og, kk, nd, L)
    # base position of every (tap, output) pair along each spatial dim
    taps = np.array(list(np.ndindex(*kernel))).reshape(kk, nd)
    grids = np.meshgrid(*[np.arange(o) for o in out], indexing="ij")
    base = [(g.reshape(-1)[None, :] * strides[d] - pads[d] + taps[:, d:d + 1] * dil[d])
            for d, g in enumerate(grids)]
    pos = [base[d][None, None] + off[:, :, :, d] for d in range(nd)]  # each [N, og, K, L]
    lows = [np.floor(p) for p in pos]
    fracs = [p - lo for p, lo in zip(pos, lows)]
    lows = [lo.astype(np.int64) for lo in lows]
    xr = x.reshape(n, og, c // og, -1)
    cols = np.zeros((n, og, c // og, kk * L), x.dtype)
    for corner in itertools.product((0, 1), repeat=nd):
        wgt = np.ones(lows[0].shape, x.dtype)
        lin = np.zeros(lows[0].shape, np.int64)
        valid = np.ones(lows[0].shape, bool)
        for d, bit in enumerate(corner):
            idx = lows[d] + bit
            wgt = wgt * (fracs[d] if bit else 1 - fracs[d])
            valid &= (idx >= 0) & (idx < sizes[d])
            lin = lin * sizes[d] + np.clip(idx, 0, sizes[d] - 1)
        wgt = np.where(valid, wgt, 0)
        if mask is not None:
            wgt = wgt * mask.reshape(n, og, kk, L)
        vals = np.take_along_axis(xr, lin.reshape(n, og, 1, -1), axis=3)
        cols += vals * wgt.reshape(n, og, 1, -1).astype(x.dtype)
    return cols.reshape(n, c, kk, L)


def _deform_infer(ctx, x, w, offset, b=None, mask=None):
    if offset.shape is None or w.shape is None:
        return TensorType(x.dtype, None)
    return TensorType(x.dtype, (offset.shape[0], w.shape[0]) + tuple(offset.shape[2:]))


@op("DeformConv", since=1, attrs={"dilations": None, "group": 1, "kernel_shape": None, "offset_group": 1,
                                  "pads": None, "strides": None}, infer=_deform_infer)
def _deform_conv(ctx, x, w, offset, b=None, mask=None):
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    kernel = list(w.shape[2:])
    nd = len(kernel)
    group, og = int(ctx["group"]), int(ctx["offset_group"])
    if c != cg * group or m % group or c % og:
        raise ShapeError(f"DeformConv: input {x.shape}, weight {w.shape}, group {group}, offset_group {og}")
    if offset.shape[1] != og * prod(kernel) * nd:
        raise ShapeError(f"DeformConv: offset {offset.shape} does not match offset_group and kernel {kernel}")
    strides, dil = ints(ctx.get("strides"), nd, 1), ints(ctx.get("dilations"), nd, 1)
    pads = ints(ctx.get("pads"), 2 * nd, 0)
    out = list(offset.shape[2:])
    acc = acc_dtype(x.dtype)
    cols = _deform_cols(x.astype(acc), offset.astype(acc), None if mask is None else mask.astype(acc),
                        kernel, strides, dil, pads, out, og)
    L = cols.shape[-1]
    y = np.matmul(w.astype(acc).reshape(group, m // group, -1), cols.reshape(n, group, -1, L))
    y = y.reshape((n, m) + tuple(out))
    if b is not None:
        y += b.astype(acc).reshape((1, m) + (1,) * nd)
    return y.astype(x.dtype)


def _ccws_infer(ctx, x, w, b=None, past=None):
    if x.shape is None or w.shape is None:
        return TensorType(x.dtype, None), TensorType(x.dtype, None)
    return x, TensorType(x.dtype, (x.shape[0], x.shape[1], w.shape[2] - 1))


@op("CausalConvWithState", since=1, attrs={"activation": "none"}, fusion=Fusion.OPAQUE, infer=_ccws_infer)
def _causal_conv_with_state(ctx, x, w, b=None, past=None):
    act = ctx["activation"]
    if act not in ("none", "silu", "swish"):
        raise ShapeError(f"CausalConvWithState: unsupported activation {act!r}")
    if x.ndim != 3 or w.ndim != 3 or w.shape[0] != x.shape[1] or w.shape[1] != 1:
        raise ShapeError(f"CausalConvWithState: input {x.shape} and weight {w.shape} must be (B, C, L), "
                         "(C, 1, k)")
    nb, c, _ = x.shape
    k = w.shape[2]
    if past is None:
        past = np.zeros((nb, c, k - 1), x.dtype)
    elif past.shape != (nb, c, k - 1):
        raise ShapeError(f"CausalConvWithState: past_state {past.shape} must be {(nb, c, k - 1)}")
    padded = np.concatenate([past.astype(x.dtype), x], axis=2)
    acc = acc_dtype(x.dtype)
    y = depthwise(padded.astype(acc), w.astype(acc), 1, [1], [1], [0], [x.shape[2]]).copy()
    if b is not None:
        y += b.astype(acc).reshape(1, c, 1)
    y = y.astype(x.dtype)
    if act != "none":
        yf = y.astype(np.float32)
        y = (yf / (1 + np.exp(-yf))).astype(x.dtype)
    return y, np.ascontiguousarray(padded[:, :, padded.shape[2] - (k - 1):])
