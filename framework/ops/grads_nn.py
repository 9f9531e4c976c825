"""Gradient rules for the training ops (LayerNorm, Conv, pooling, shape ops, more unary math) and the
`msgx` gradient kernels they emit (conv/pool backward as tap loops over strided views + BLAS GEMMs).

Rules are attached to existing registry entries with `attach_grad`, so the op families stay untouched.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import ShapeError, UnsupportedOpError
from ..ir import TensorType
from . import nn_ckernels, registry
from .conv import CONV_ATTRS
from .nn_pool import POOL_ATTRS
from .nn_window import window
from .registry import op


def attach_grad(name: str, rule, since: int | None = None, domain: str = "") -> None:
    """Give registered op versions (all, or the one with `since`) the gradient rule `rule`."""
    versions = registry._REGISTRY[(domain, name)]
    for i, d in enumerate(versions):
        if since is None or d.since == since:
            versions[i] = dataclasses.replace(d, grad=rule)


def _k(b, like, c):
    return b.scalar(c, like.type.dtype)


def _chain(deriv):
    return lambda b, n, g: [b.op("Mul", g[0], deriv(b, n.inputs[0], n.outputs[0]))] + [None] * (
        len(n.inputs) - 1
    )


# ---------------------------------------------------------------- unary math

UNARY = {
    "Sin": lambda b, x, y: b.op("Cos", x),
    "Cos": lambda b, x, y: b.op("Neg", b.op("Sin", x)),
    "Tan": lambda b, x, y: b.op("Add", _k(b, y, 1), b.op("Mul", y, y)),
    "Sinh": lambda b, x, y: b.op("Cosh", x),
    "Cosh": lambda b, x, y: b.op("Sinh", x),
    "Atan": lambda b, x, y: b.op("Div", _k(b, x, 1), b.op("Add", _k(b, x, 1), b.op("Mul", x, x))),
    "Reciprocal": lambda b, x, y: b.op("Neg", b.op("Mul", y, y)),
    "Softplus": lambda b, x, y: b.op("Sigmoid", x),
    "Softsign": lambda b, x, y: b.op(
        "Reciprocal", b.op("Mul", *(2 * [b.op("Add", _k(b, x, 1), b.op("Abs", x))]))
    ),
}
for _name, _d in UNARY.items():
    attach_grad(_name, _chain(_d))


def _leaky_grad(b, n, g):
    x = n.inputs[0]
    alpha = b.attrs(n)["alpha"]
    return [b.op("Where", b.op("Greater", x, _k(b, x, 0)), g[0], b.op("Mul", g[0], _k(b, x, alpha)))]


def _gelu_grad(b, n, g):
    x = n.inputs[0]
    if b.attrs(n)["approximate"] != "none":
        raise UnsupportedOpError(
            "Gelu", "", n.opset, n.name, "gradient of approximate='tanh' not implemented"
        )
    cdf = b.op(
        "Mul",
        _k(b, x, 0.5),
        b.op("Add", _k(b, x, 1), b.op("Erf", b.op("Mul", x, _k(b, x, 1 / math.sqrt(2))))),
    )
    pdf = b.op(
        "Mul",
        _k(b, x, 1 / math.sqrt(2 * math.pi)),
        b.op("Exp", b.op("Mul", _k(b, x, -0.5), b.op("Mul", x, x))),
    )
    return [b.op("Mul", g[0], b.op("Add", cdf, b.op("Mul", x, pdf)))]


def _clip_grad(b, n, g):
    """The gradient passes where min <= x <= max (bounds are not differentiated)."""
    x, lo, hi = (list(n.inputs) + [None, None])[:3]
    a = b.attrs(n)
    inside = None
    for bound, cmp, key in ((lo, "GreaterOrEqual", "min"), (hi, "LessOrEqual", "max")):
        if bound is None and n.opset < 11:
            bound = _k(b, x, a[key])
        if bound is not None:
            c = b.op(cmp, x, bound)
            inside = c if inside is None else b.op("And", inside, c)
    dx = g[0] if inside is None else b.op("Where", inside, g[0], _k(b, g[0], 0))
    return [dx] + [None] * (len(n.inputs) - 1)


attach_grad("LeakyRelu", _leaky_grad)
attach_grad("Gelu", _gelu_grad)
attach_grad("Clip", _clip_grad)


# ---------------------------------------------------------------- shape ops


def _reshape_back(b, n, g):
    return [b.op("Reshape", g[0], b.shape(n.inputs[0]))] + [None] * (len(n.inputs) - 1)


for _name in ("Unsqueeze", "Squeeze", "Flatten"):
    attach_grad(_name, _reshape_back)
attach_grad("Expand", lambda b, n, g: [b.sum_to(g[0], n.inputs[0]), None])


@op("SliceGrad", domain="msgx", infer=lambda ctx, g, x, *rest: TensorType(g.dtype, x.shape))
def _slice_grad_kernel(ctx, g, x, starts, ends, axes=None, steps=None):
    """Scatter the slice's gradient into zeros shaped like the sliced input (ONNX Slice clamping rules)."""
    out = np.zeros(x.shape, g.dtype)
    axes = range(len(starts)) if axes is None else [int(a) % x.ndim for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    index = [np.arange(n) for n in x.shape]
    for a, s, e, st in zip(axes, starts, ends, steps):  # explicit indices: a clamped negative stop is not -1
        index[a] = np.arange(*slice(int(s), int(e), int(st)).indices(x.shape[a]))
    out[np.ix_(*index)] = g
    return out


def _slice_grad(b, n, g):
    return [b.op("SliceGrad", g[0], *n.inputs, domain="msgx")] + [None] * (len(n.inputs) - 1)


attach_grad("Slice", _slice_grad, since=10)  # Slice-1 (attribute form) has no rule


# ---------------------------------------------------------------- LayerNormalization


def _layer_norm_grad(b, n, g):
    """Recomputes mean and 1/std; dx = rstd * (dxh - mean(dxh) - xh * mean(dxh * xh)) over the normed axes."""
    x, scale, bias = (list(n.inputs) + [None])[:3]
    a = b.attrs(n)
    rank = len(x.type.shape)
    axes = list(range(a["axis"] % rank, rank))
    mean = b.reduce("ReduceMean", x, axes, True)
    xc = b.op("Sub", x, mean)
    var = b.reduce("ReduceMean", b.op("Mul", xc, xc), axes, True)
    rstd = b.op("Div", _k(b, x, 1), b.op("Sqrt", b.op("Add", var, _k(b, x, a["epsilon"]))))
    xh = b.op("Mul", xc, rstd)
    gy = g[0]
    dxh = b.op("Mul", gy, scale)
    m1 = b.reduce("ReduceMean", dxh, axes, True)
    m2 = b.reduce("ReduceMean", b.op("Mul", dxh, xh), axes, True)
    dx = b.op("Mul", rstd, b.op("Sub", b.op("Sub", dxh, m1), b.op("Mul", xh, m2))) if b.needs(x) else None
    dscale = b.sum_to(b.op("Mul", gy, xh), scale) if b.needs(scale) else None
    dbias = b.sum_to(gy, bias) if bias is not None and b.needs(bias) else None
    return [dx, dscale, dbias]


attach_grad("LayerNormalization", _layer_norm_grad)


# ---------------------------------------------------------------- Conv and pooling backward kernels


def _geometry(ctx, x_shape, kernel, ceil=False):
    strides, dil, pb, _, out = window(ctx, list(x_shape[2:]), kernel, ceil)
    return strides, dil, pb, out


def _taps(kernel, dil, strides, out):
    """For every kernel offset: the slices of the padded input that it reads for all output positions."""
    for idx in np.ndindex(*kernel):
        yield tuple(slice(i * d, i * d + s * (o - 1) + 1, s) for i, d, s, o in zip(idx, dil, strides, out))


def _padded_zeros(x_shape, kernel, dil, strides, pb, out, dtype):
    ext = [
        max(i + p, (o - 1) * s + (k - 1) * d + 1)
        for i, p, o, s, k, d in zip(x_shape[2:], pb, out, strides, kernel, dil)
    ]
    return np.zeros(tuple(x_shape[:2]) + tuple(ext), dtype)


def _crop(xp, x_shape, pb):
    return np.ascontiguousarray(
        xp[(slice(None), slice(None)) + tuple(slice(p, p + i) for p, i in zip(pb, x_shape[2:]))]
    )


def _patches(xl, kernel, dil, strides, out):
    """[N, *out, *kernel, C] view of a channels-last padded input: every output position's window."""
    sn, *sp, sc = xl.strides
    shape = (xl.shape[0], *out, *kernel, xl.shape[-1])
    st = (sn, *[a * s for a, s in zip(sp, strides)], *[a * d for a, d in zip(sp, dil)], sc)
    return as_strided(xl, shape, st, writeable=False)


@op("ConvGradW", domain="msgx", attrs=CONV_ATTRS, infer=lambda ctx, x, g, w: w)
def _conv_grad_w(ctx, x, gy, w):
    """dW = dy^T @ im2col(x): one copy of the windows (channels innermost) and one GEMM per group."""
    kernel = list(w.shape[2:])
    strides, dil, pb, out = _geometry(ctx, x.shape, kernel)
    plan = nn_ckernels.conv2d_grad_plan(x.shape, w.shape, (x.dtype, gy.dtype, w.dtype), int(ctx["group"]),
                                        strides, dil, pb, out)
    if plan is not None:
        return plan[1](x, gy)
    xp = _padded_zeros(x.shape, kernel, dil, strides, pb, out, x.dtype)
    xl = np.moveaxis(xp, 1, -1)  # channels last: each window row is a contiguous run of channels
    xl[(slice(None),) + tuple(slice(p, p + i) for p, i in zip(pb, x.shape[2:]))] = np.moveaxis(x, 1, -1)
    grp, (m, cg) = int(ctx["group"]), w.shape[:2]
    mg, rows = m // grp, gy.shape[0] * int(np.prod(out))
    g2 = np.moveaxis(gy, 1, -1).reshape(rows, m)
    parts = []
    for i in range(grp):
        cols = _patches(xl[..., i * cg : (i + 1) * cg], kernel, dil, strides, out).reshape(rows, -1)
        dw = g2[:, i * mg : (i + 1) * mg].T @ cols  # [Mg, K * Cg], window-major
        parts.append(np.moveaxis(dw.reshape(mg, *kernel, cg), -1, 1))
    return np.ascontiguousarray(np.concatenate(parts, 0), dtype=w.dtype).reshape(w.shape)


@op("ConvGradX", domain="msgx", attrs=CONV_ATTRS, infer=lambda ctx, g, w, x: x)
def _conv_grad_x(ctx, gy, w, x):
    """Window gradients dy @ W (one GEMM per group), added back window offset by window offset (col2im)."""
    kernel = list(w.shape[2:])
    strides, dil, pb, out = _geometry(ctx, x.shape, kernel)
    plan = nn_ckernels.conv2d_grad_plan(x.shape, w.shape, (x.dtype, gy.dtype, w.dtype), int(ctx["group"]),
                                        strides, dil, pb, out)
    if plan is not None:
        return plan[0](gy, w)
    xl = np.moveaxis(_padded_zeros(x.shape, kernel, dil, strides, pb, out, gy.dtype), 1, -1)
    grp, (m, cg) = int(ctx["group"]), w.shape[:2]
    mg, rows = m // grp, gy.shape[0] * int(np.prod(out))
    g2 = np.moveaxis(gy, 1, -1).reshape(rows, m)
    taps = list(_taps(kernel, dil, strides, out))
    for i in range(grp):
        wk = np.moveaxis(w[i * mg : (i + 1) * mg], 1, -1).reshape(mg, -1)  # [Mg, K * Cg], window-major
        col = (g2[:, i * mg : (i + 1) * mg] @ wk).reshape(gy.shape[0], *out, len(taps), cg)
        target = xl[..., i * cg : (i + 1) * cg]
        for t, sl in enumerate(taps):
            target[(slice(None),) + sl] += col[..., t, :]
    return _crop(np.moveaxis(xl, -1, 1), x.shape, pb)


def _conv_grad(b, n, g):
    x, w, bias = (list(n.inputs) + [None])[:3]
    a = dict(n.attrs)
    a.setdefault("kernel_shape", tuple(w.type.shape[2:]))
    dx = b.op("ConvGradX", g[0], w, x, domain="msgx", **a) if b.needs(x) else None
    dw = b.op("ConvGradW", x, g[0], w, domain="msgx", **a) if b.needs(w) else None
    db = None
    if bias is not None and b.needs(bias):
        db = b.reduce("ReduceSum", g[0], [0] + list(range(2, len(x.type.shape))), False)
    return [dx, dw, db]


attach_grad("Conv", _conv_grad)


def _pool_geometry(ctx, x):
    kernel = [int(k) for k in ctx["kernel_shape"]]
    return kernel, *_geometry(ctx, x.shape, kernel, bool(ctx.get("ceil_mode", 0)))


@op("MaxPoolGrad", domain="msgx", attrs={**POOL_ATTRS, "storage_order": 0}, infer=lambda ctx, x, y, g: x)
def _maxpool_grad(ctx, x, y, gy):
    """The gradient goes to the first maximum of each window (the element MaxPool's indices name): window
    offsets in row-major order each take the positions equal to the max that no earlier offset took."""
    kernel, strides, dil, pb, out = _pool_geometry(ctx, x)
    if len(kernel) == 2 and (dx := nn_ckernels.maxpool2d_grad(x, y, gy, kernel, strides, dil, pb, out)) is not None:
        return dx
    xp = _padded_zeros(x.shape, kernel, dil, strides, pb, out, x.dtype)
    if any(pb) or xp.shape != x.shape:
        xp[...] = -np.inf
        xp[(slice(None), slice(None)) + tuple(slice(p, p + i) for p, i in zip(pb, x.shape[2:]))] = x
    else:
        xp = x
    dxp = np.zeros(xp.shape, gy.dtype)
    taken = np.zeros(y.shape, bool)
    for sl in _taps(kernel, dil, strides, out):
        hit = xp[(Ellipsis,) + sl] == y
        hit &= ~taken
        taken |= hit
        dxp[(Ellipsis,) + sl] += np.where(hit, gy, 0)
    return _crop(dxp, x.shape, pb) if xp is not x else dxp


@op("AveragePoolGrad", domain="msgx", attrs={**POOL_ATTRS, "count_include_pad": 0}, infer=lambda ctx, x, g: x)
def _avgpool_grad(ctx, x, gy):
    kernel, strides, dil, pb, out = _pool_geometry(ctx, x)
    ones = _padded_zeros((1, 1) + tuple(x.shape[2:]), kernel, dil, strides, pb, out, gy.dtype)
    if ctx["count_include_pad"]:  # explicit pads count, the ceil_mode overhang does not
        pe = window(ctx, list(x.shape[2:]), kernel, bool(ctx.get("ceil_mode", 0)))[3]
        ones[(0, 0) + tuple(slice(0, p + i + q) for p, i, q in zip(pb, x.shape[2:], pe))] = 1
    else:
        ones[(0, 0) + tuple(slice(p, p + i) for p, i in zip(pb, x.shape[2:]))] = 1
    taps = list(_taps(kernel, dil, strides, out))
    count = sum(ones[(Ellipsis,) + sl] for sl in taps)
    share = gy / np.maximum(count, 1)
    dxp = _padded_zeros(x.shape, kernel, dil, strides, pb, out, gy.dtype)
    for sl in taps:
        dxp[(Ellipsis,) + sl] += share
    return _crop(dxp, x.shape, pb)


def _pool_grad(kind):
    def rule(b, n, g):
        if len(n.outputs) > 1 and g[1] is not None:
            raise ShapeError(f"{n.op} {n.name!r}: the indices output has no gradient")
        extra = [n.outputs[0]] if kind == "MaxPoolGrad" else []  # the max of each window, from the forward
        return [b.op(kind, n.inputs[0], *extra, g[0], domain="msgx", **n.attrs)]

    return rule


attach_grad("MaxPool", _pool_grad("MaxPoolGrad"))
attach_grad("AveragePool", _pool_grad("AveragePoolGrad"))


# ---------------------------------------------------------------- Gather (embeddings)


def _gather_grad_infer(ctx, g, idx, data):
    return TensorType(g.dtype, data.shape)


@op("GatherGrad", domain="msgx", attrs={"axis": 0}, infer=_gather_grad_infer)
def _gather_grad_kernel(ctx, g, idx, data):
    """Sum g's slices into zeros shaped like data, at the gathered positions: sorting the indices once and
    summing runs of equal ones (reduceat) beats a scatter-add per element."""
    axis = int(ctx["axis"]) % data.ndim
    n = data.shape[axis]
    flat = np.asarray(idx, np.int64).reshape(-1)
    flat = np.where(flat < 0, flat + n, flat)
    pre, post = int(np.prod(data.shape[:axis])), int(np.prod(data.shape[axis + 1 :]))
    rows = np.moveaxis(np.asarray(g).reshape(pre, flat.size, post), 1, 0)  # [indices, pre, post]
    out = np.zeros((pre, n, post), g.dtype)
    if flat.size:
        order = np.argsort(flat, kind="stable")
        keys = flat[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        out[:, keys[starts]] = np.moveaxis(np.add.reduceat(rows[order], starts, axis=0), 0, 1)
    return out.reshape(data.shape)


attach_grad("Gather", lambda b, n, g: [b.op("GatherGrad", g[0], n.inputs[1], n.inputs[0], domain="msgx",
                                            axis=b.attrs(n)["axis"]), None])
