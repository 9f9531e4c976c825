"""Padding and block-layout ops: Pad (all versions and modes), CenterCropPad, DepthToSpace, SpaceToDepth,
plus EyeLike and Trilu."""
from __future__ import annotations

import numpy as np

from ..dtypes import np_dtype
from ..errors import KernelError, ShapeError
from ..ir import TensorType
from .infer import norm_axis, same
from .registry import Fusion, op

INJ = Fusion.INJECTIVE
_MODES = {"constant", "reflect", "edge", "wrap"}


def pad_array(x, pads, mode="constant", value=0, axes=None):
    """ONNX Pad: pads = [begin per axis..., end per axis...]; negative pads crop."""
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    axes = list(range(x.ndim)) if axes is None else [norm_axis(int(a), x.ndim) for a in axes]
    if len(pads) != 2 * len(axes):
        raise KernelError(f"Pad: {len(pads)} pads for {len(axes)} axes")
    if mode not in _MODES:
        raise KernelError(f"Pad: unknown mode {mode!r}")
    width = [[0, 0] for _ in range(x.ndim)]
    for i, a in enumerate(axes):
        width[a] = [pads[i], pads[i + len(axes)]]
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(width))
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in width]
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=np.asarray(value, dtype=x.dtype))
    if any(x.shape[i] == 0 and (b or e) for i, (b, e) in enumerate(width)):
        raise KernelError(f"Pad: mode {mode} cannot pad an empty axis")
    return np.pad(x, width, mode=mode)


def _pad_shape(shape, pads, axes=None):
    axes = list(range(len(shape))) if axes is None else [norm_axis(int(a), len(shape)) for a in axes]
    out = list(shape)
    for i, a in enumerate(axes):
        out[a] = out[a] + int(pads[i]) + int(pads[i + len(axes)])
    return out


@op("Pad", since=1, fusion=INJ, attrs={"mode": "constant", "value": 0.0},
    infer=lambda ctx, x: TensorType(x.dtype, _pad_shape(x.shape, ctx["paddings"])))
def _pad_v1(ctx, x):
    return pad_array(x, ctx["paddings"], ctx["mode"], ctx["value"])


@op("Pad", since=2, fusion=INJ, attrs={"mode": "constant", "value": 0.0},
    infer=lambda ctx, x: TensorType(x.dtype, _pad_shape(x.shape, ctx["pads"])))
def _pad_v2(ctx, x):
    return pad_array(x, ctx["pads"], ctx["mode"], ctx["value"])


def _infer_pad11(ctx, x, pads, value=None, axes=None):
    p = ctx.const(1)
    if p is None or (axes is not None and ctx.const(3) is None):
        raise ValueError("pads unknown")
    return TensorType(x.dtype, _pad_shape(x.shape, np.asarray(p).reshape(-1),
                                          None if axes is None else np.asarray(ctx.const(3)).reshape(-1)))


@op("Pad", since=11, fusion=INJ, attrs={"mode": "constant"}, infer=_infer_pad11)
def _pad(ctx, x, pads, value=None, axes=None):
    v = 0 if value is None or np.asarray(value).size == 0 else np.asarray(value).reshape(-1)[0]
    return pad_array(x, pads, ctx["mode"], v, None if axes is None else np.asarray(axes).reshape(-1))


@op("CenterCropPad", since=18, fusion=INJ, attrs={"axes": None})
def _center_crop_pad(ctx, x, shape):
    target = [int(v) for v in np.asarray(shape).reshape(-1)]
    axes = ctx.get("axes")
    axes = list(range(x.ndim)) if axes is None else [norm_axis(int(a), x.ndim) for a in axes]
    if len(axes) != len(target):
        raise KernelError(f"CenterCropPad: {len(target)} sizes for {len(axes)} axes")
    out_shape = list(x.shape)
    src = [slice(None)] * x.ndim
    dst = [slice(None)] * x.ndim
    for a, t in zip(axes, target):
        d = x.shape[a]
        out_shape[a] = t
        if t <= d:
            s = (d - t) // 2
            src[a] = slice(s, s + t)
        else:
            s = (t - d) // 2
            dst[a] = slice(s, s + d)
    out = np.zeros(out_shape, dtype=x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out


def _d2s_shape(shape, bs):
    if len(shape) != 4:
        raise ShapeError(f"DepthToSpace needs a 4-D input, got rank {len(shape)}")
    n, c, h, w = shape
    if isinstance(c, int) and c % (bs * bs):
        raise ShapeError(f"DepthToSpace: channels {c} not divisible by blocksize^2 {bs * bs}")
    return (n, c // (bs * bs) if isinstance(c, int) else c / (bs * bs), h * bs, w * bs)


@op("DepthToSpace", since=1, fusion=INJ, attrs={"mode": "DCR"},
    infer=lambda ctx, x: TensorType(x.dtype, _d2s_shape(x.shape, ctx["blocksize"])))
def _depth_to_space(ctx, x):
    bs = ctx["blocksize"]
    n, c, h, w = x.shape
    _d2s_shape(x.shape, bs)
    if ctx["mode"] == "CRD":
        t = x.reshape(n, c // bs ** 2, bs, bs, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        t = x.reshape(n, bs, bs, c // bs ** 2, h, w).transpose(0, 3, 4, 1, 5, 2)
    return t.reshape(n, c // bs ** 2, h * bs, w * bs)


def _s2d_shape(shape, bs):
    if len(shape) != 4:
        raise ShapeError(f"SpaceToDepth needs a 4-D input, got rank {len(shape)}")
    n, c, h, w = shape
    for d in (h, w):
        if isinstance(d, int) and d % bs:
            raise ShapeError(f"SpaceToDepth: spatial dim {d} not divisible by blocksize {bs}")
    return (n, c * bs * bs) + tuple(d // bs if isinstance(d, int) else d / bs for d in (h, w))


@op("SpaceToDepth", since=1, fusion=INJ, attrs={"mode": "DCR"},
    infer=lambda ctx, x: TensorType(x.dtype, _s2d_shape(x.shape, ctx["blocksize"])))
def _space_to_depth(ctx, x):
    bs = ctx["blocksize"]
    n, c, h, w = x.shape
    _s2d_shape(x.shape, bs)
    t = x.reshape(n, c, h // bs, bs, w // bs, bs)
    t = t.transpose(0, 1, 3, 5, 2, 4) if ctx["mode"] == "CRD" else t.transpose(0, 3, 5, 1, 2, 4)
    return t.reshape(n, c * bs * bs, h // bs, w // bs)


def _infer_eyelike(ctx, x):
    dt = ctx.get("dtype")
    return TensorType(x.dtype if dt is None else np_dtype(dt), x.shape)


@op("EyeLike", since=9, attrs={"k": 0}, infer=_infer_eyelike)
def _eyelike(ctx, x):
    dt = ctx.get("dtype")
    if x.ndim != 2:
        raise KernelError(f"EyeLike needs a 2-D input, got rank {x.ndim}")
    return np.eye(x.shape[0], x.shape[1], k=ctx["k"], dtype=x.dtype if dt is None else np_dtype(dt))


@op("Trilu", since=14, attrs={"upper": 1}, fusion=INJ, infer=same(0))
def _trilu(ctx, x, k=None):
    kk = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
    return np.triu(x, kk) if ctx["upper"] else np.tril(x, kk)
