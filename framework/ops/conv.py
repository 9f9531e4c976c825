"""Convolutions: Conv, ConvTranspose, DeformConv, CausalConvWithState.

float32 2-D convs run on the C kernels when built (nn_ckernels); otherwise Conv lowers to phase-split im2col +
tiled sgemm (nn_convcore), 1x1 convs are plain GEMMs and depthwise convs multiply-accumulate per kernel
offset. float32 stays float32.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import TensorType
from . import nn_ckernels
from .nn import acc_dtype
from .nn_convcore import conv_1x1, conv_gemm, depthwise, prod
from .nn_window import check_out, ints, window
from .registry import Fusion, op

CONV_ATTRS = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None, "pads": None,
              "strides": None}


def conv(x, w, b, group, strides, dil, pb, pe, out, act=None, lo=None, hi=None):
    """N-d grouped convolution of x [N, C, *S] with w [M, C/group, *K]; returns a new [N, M, *out] in x's
    dtype with the activation `act` (None, "Relu", or "Clip" to [lo, hi]) applied."""
    plan = _check_and_plan(x, w, b, group, strides, dil, pb, out, act, lo, hi)
    if plan is not None:
        return plan(x, w, b)
    return _conv_act(x, w, b, group, strides, dil, pb, pe, out, act, lo, hi)


def _check_and_plan(x, w, b, group, strides, dil, pb, out, act, lo, hi):
    """Validates the channels and output size; the C kernel plan for this geometry, or None."""
    c, (m, cg) = x.shape[1], w.shape[:2]
    if c != cg * group or m % group:
        raise ShapeError(f"Conv: input channels {c}, weight {w.shape} and group {group} are inconsistent")
    check_out(out, "Conv")
    dtypes = (x.dtype, w.dtype, None if b is None else b.dtype)
    return nn_ckernels.conv2d_plan(x.shape, w.shape, dtypes, group, strides, dil, pb, out, act, lo, hi)


def _conv_act(x, w, b, group, strides, dil, pb, pe, out, act, lo, hi, z=None):
    y = _conv_numpy(x, w, b, group, strides, dil, pb, pe, out)
    if z is not None:  # FusedConv's residual: Add's broadcasting and type rules, on a new array
        y = y + z
    if act == "Relu":
        np.maximum(y, 0, out=y)
    elif act == "Clip":
        np.clip(y, -np.inf if lo is None else lo, np.inf if hi is None else hi, out=y)
    return y


def _conv_numpy(x, w, b, group, strides, dil, pb, pe, out):
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    kernel = list(w.shape[2:])
    acc = acc_dtype(x.dtype)
    xw, ww = x.astype(acc, copy=False), w.astype(acc, copy=False)
    k_total = prod(kernel)
    bias = None if b is None else b.astype(acc, copy=False)
    if n * m * prod(out) == 0 or c == 0:
        y = np.zeros((n, m) + tuple(out), acc)
    elif cg == 1 and group == c and k_total > 1:
        y = depthwise(xw, ww, m // group, strides, dil, pb, out)
    elif k_total == 1 and not any(pb) and not any(pe):
        y = conv_1x1(xw, ww, group, strides, out)
    else:  # bias already added, contiguous
        return conv_gemm(xw, ww, bias, group, strides, dil, pb, out).astype(x.dtype, copy=False)
    # one pass makes the (possibly cropped) result contiguous, adds the bias and casts back
    res = np.empty((n, m) + tuple(out), x.dtype)
    if bias is not None:
        np.add(y, bias.reshape((1, m) + (1,) * len(kernel)), out=res, casting="unsafe")
    elif y.flags.c_contiguous and y.dtype == x.dtype:
        return y
    else:
        np.copyto(res, y, casting="unsafe")
    return res


def _kernel_of(ctx, w_shape):
    k = ctx.get("kernel_shape")
    return [int(i) for i in k] if k else (None if w_shape is None else list(w_shape[2:]))


def _conv_infer(ctx, x, w, b=None, z=None):  # z: FusedConv's residual, of the output's shape
    if x.shape is None or w is None or w.shape is None:
        return TensorType(x.dtype, None)
    _, _, _, _, out = window(ctx, list(x.shape[2:]), _kernel_of(ctx, w.shape))
    return TensorType(x.dtype, (x.shape[0], w.shape[0]) + tuple(out))


_PLANS: dict = {}  # (ctx, shapes, dtypes) -> run(x, w, b): a node's attributes never change after compile


def _activation(ctx):
    """(act, lo, hi) of a Conv (none) or FusedConv node (its Relu or Clip, or none)."""
    attrs = ctx.attrs
    if not attrs.get("activation"):
        return None, None, None
    if attrs["activation"] == "Relu":
        return "Relu", None, None
    return "Clip", attrs["activation_min"], attrs["activation_max"]


def _bind(ctx):
    """One node's kernel: its plans per input shapes and dtypes in a dict of its own, so a call is a lookup
    and the plan (convs run once per node per run; the generic wrapper and key cost as much as small convs)."""
    act, lo, hi = _activation(ctx)
    plans: dict = {}

    def kernel(x, w, b=None, z=None):
        key = (x.shape, w.shape, x.dtype, w.dtype, b if b is None else b.dtype,
               z if z is None else (z.shape, z.dtype))
        plan = plans.get(key)
        if plan is None:
            if len(plans) >= 64:  # bounded: a long-lived session may see many shapes
                plans.clear()
            plan = plans[key] = _plan(ctx, x, w, b, act, lo, hi, z)
        return [plan(x, w, b) if z is None else plan(x, w, b, z)]
    return kernel


_PLANS: dict = {}  # (ctx, shapes, dtypes) -> run(x, w, b), for callers of ref (folding, autodiff, eager ops)


def _run(ctx, x, w, b, z=None):
    """Conv (+ residual, activation) through the plan cached for this node, input shapes and dtypes."""
    key = (ctx, x.shape, w.shape, x.dtype, w.dtype, b if b is None else b.dtype,
           z if z is None else (z.shape, z.dtype))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _plan(ctx, x, w, b, *_activation(ctx), z)
        if len(_PLANS) > 4096:  # bounded for long-lived processes
            _PLANS.clear()
        _PLANS[key] = plan
    return plan(x, w, b) if z is None else plan(x, w, b, z)


@op("Conv", since=1, attrs=CONV_ATTRS, fusion=Fusion.OUT_FUSABLE, infer=_conv_infer, bind=_bind)
def _conv(ctx, x, w, b=None):
    return _run(ctx, x, w, b)


def _plan(ctx, x, w, b, act, lo, hi, z=None):
    """run(x, w, b[, z]) for these shapes and dtypes: the C kernels where they apply (a residual z too when it
    has the output's shape and dtype), else numpy."""
    kernel = _kernel_of(ctx, w.shape)
    if x.ndim != w.ndim or list(w.shape[2:]) != kernel:
        raise ShapeError(f"Conv: input {x.shape}, weight {w.shape} and kernel_shape {kernel} are "
                         "inconsistent")
    strides, dil, pb, pe, out = window(ctx, list(x.shape[2:]), kernel)
    group = int(ctx["group"])
    fast = _check_and_plan(x, w, b, group, strides, dil, pb, out, act, lo, hi)
    if fast is not None and (z is None or (z.shape == (x.shape[0], w.shape[0], *out) and z.dtype == x.dtype)):
        return fast
    return lambda x, w, b, z=None: _conv_act(x, w, b, group, strides, dil, pb, pe, out, act, lo, hi, z)


@op("FusedConv", domain="msgx", attrs={**CONV_ATTRS, "activation": "Relu", "activation_min": None,
                                       "activation_max": None}, fusion=Fusion.OUT_FUSABLE, infer=_conv_infer,
    bind=_bind)
def _fused_conv(ctx, x, w, b=None, z=None):
    """act(Conv(x, w, b) + z): a Conv followed by an Add of z (a residual of the output's shape; optional) and
    then Relu or Clip (activation "" for none), as the O0 pass fuse_conv_epilogue forms it and onnxruntime's
    FusedConv does. The additions and the activation run on the conv's fresh output in the pass that adds its
    bias: no pass over memory and no dispatch of their own."""
    return _run(ctx, x, w, b, z)


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
        raise ShapeError(f"ConvTranspose: input {x.shape}, weight {w.shape} and group {group} are "
                         "inconsistent")
    kernel = list(w.shape[2:])
    in_sizes = list(x.shape[2:])
    strides, dil, pb, out, full = _convT_geometry(ctx, in_sizes, kernel)
    mg = w.shape[1]
    m = mg * group
    acc = acc_dtype(x.dtype)
    xr = x.astype(acc, copy=False).reshape(n, group, c // group, -1)
    wr = w.astype(acc, copy=False).reshape(group, c // group, -1).transpose(0, 2, 1)
    cols = np.matmul(wr, xr).reshape((n, m, prod(kernel)) + tuple(in_sizes))
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
