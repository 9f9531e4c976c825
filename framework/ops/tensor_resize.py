"""Resize (every mode, coordinate transform, antialias, axes, aspect-ratio policy) and Upsample.

Interpolation is separable, so an N-D resize is a sequence of 1-D resizes, one per resized axis. Each
output position gathers n taps around its source coordinate, weighted by the filter at each tap's distance.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from ..errors import KernelError
from ..ir import TensorType
from .infer import norm_axis
from .registry import op


def _source_coords(mode, out_len, in_len, scale, roi):
    """Source coordinate of every output index (and the tf_crop_and_resize out-of-range mask)."""
    y = np.arange(out_len, dtype=np.float64)
    width = scale * in_len  # the unrounded output length
    if mode == "align_corners":
        return (np.zeros(out_len) if width == 1 else y * (in_len - 1) / (width - 1)), None
    if mode == "asymmetric":
        return y / scale, None
    if mode == "tf_crop_and_resize":
        start, end = roi
        if width == 1:
            x = np.full(out_len, (end - start) * (in_len - 1) / 2)
        else:
            x = y * (end - start) * (in_len - 1) / (width - 1)
        x = x + start * (in_len - 1)
        return x, (x < 0) | (x > in_len - 1)
    if mode == "pytorch_half_pixel":
        return (np.full(out_len, -0.5) if width == 1 else (y + 0.5) / scale - 0.5), None
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5, None
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / width)
        return offset + (y + 0.5) / scale - 0.5, None
    raise KernelError(f"Resize: unknown coordinate_transformation_mode {mode!r}")


def _cubic(d, a):
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _nearest_index(x, rounding):
    fl = np.floor(x)
    frac = x - fl
    if rounding == "round_prefer_floor":
        up = frac > 0.5
    elif rounding == "round_prefer_ceil":
        up = frac >= 0.5
    elif rounding == "floor":
        up = np.zeros(x.shape, bool)
    elif rounding == "ceil":
        up = frac > 0
    else:
        raise KernelError(f"Resize: unknown nearest_mode {rounding!r}")
    return (fl + up).astype(np.int64)


def _resize_axis(data, axis, out_len, scale, roi, opts):
    in_len = data.shape[axis]
    if out_len == 0:
        shape = list(data.shape)
        shape[axis] = 0
        return np.empty(shape, data.dtype)
    x, outside = _source_coords(opts["coordinate_transformation_mode"], out_len, in_len, scale, roi)
    mode = opts["mode"]
    if mode == "nearest":
        idx = np.clip(_nearest_index(x, opts["nearest_mode"]), 0, in_len - 1)
        out = np.take(data, idx, axis=axis)
    else:
        s = min(scale, 1.0) if opts["antialias"] else 1.0
        reach = 1 if mode == "linear" else 2
        half = 1 - (math.floor(-reach / s) + 1)  # taps on each side: n = 2 * half
        integer = x == np.floor(x)
        base = np.where(integer, x - 1, np.floor(x)).astype(np.int64)  # left neighbour, ratio in (0, 1]
        taps = base[:, None] + np.arange(1 - half, 1 + half)[None, :]
        dist = (taps - x[:, None]) * s
        if mode == "linear":
            w = np.clip(1 - np.abs(dist), 0, None)
        elif mode == "cubic":
            w = _cubic(dist, opts["cubic_coeff_a"])
        else:
            raise KernelError(f"Resize: unknown mode {mode!r}")
        if opts["antialias"]:
            w = w / w.sum(axis=1, keepdims=True)
        if opts["exclude_outside"]:
            w = np.where((taps < 0) | (taps >= in_len), 0.0, w)
            total = w.sum(axis=1, keepdims=True)
            w = w / np.where(total == 0, 1.0, total)
        gathered = np.take(data, np.clip(taps, 0, in_len - 1), axis=axis)
        out = (gathered * w.reshape((1,) * axis + w.shape + (1,) * (data.ndim - axis - 1))).sum(axis=axis + 1)
    if outside is not None and outside.any():
        mask = outside.reshape((1,) * axis + (out_len,) + (1,) * (data.ndim - axis - 1))
        out = np.where(mask, opts["extrapolation_value"], out)
    return out


def _floats(a):
    """An optional 1-D input as a list of floats; an empty tensor means absent."""
    return None if a is None or np.asarray(a).size == 0 else [float(v) for v in np.asarray(a).flat]


def _plan(shape, roi, scales, sizes, axes, policy):
    """Per-axis (output length, scale, roi pair) for a Resize; axes not listed keep their size."""
    r = len(shape)
    axes = list(range(r)) if axes is None else [norm_axis(int(a), r) for a in axes]
    roi, scales = _floats(roi), _floats(scales)
    sizes = None if sizes is None or np.asarray(sizes).size == 0 else [int(v) for v in np.asarray(sizes).flat]
    full_scale, out = [1.0] * r, list(shape)
    if sizes is not None:
        if len(sizes) != len(axes):
            raise KernelError(f"Resize: {len(sizes)} sizes for {len(axes)} axes")
        ratios = [sizes[i] / shape[a] if shape[a] else 1.0 for i, a in enumerate(axes)]
        if policy in ("not_larger", "not_smaller"):
            ratio = min(ratios) if policy == "not_larger" else max(ratios)
            ratios = [ratio] * len(axes)
            sizes = [int(ratio * shape[a] + 0.5) for a in axes]
        elif policy != "stretch":
            raise KernelError(f"Resize: unknown keep_aspect_ratio_policy {policy!r}")
        for i, a in enumerate(axes):
            full_scale[a], out[a] = ratios[i], sizes[i]
    elif scales is not None:
        if len(scales) != len(axes):
            raise KernelError(f"Resize: {len(scales)} scales for {len(axes)} axes")
        for i, a in enumerate(axes):
            full_scale[a], out[a] = scales[i], int(math.floor(scales[i] * shape[a]))
    else:
        raise KernelError("Resize needs scales or sizes")
    rois = [(0.0, 1.0)] * r
    if roi is not None:
        n = len(roi) // 2
        if n == len(axes):
            for i, a in enumerate(axes):
                rois[a] = (roi[i], roi[i + n])
        elif n == r:
            rois = [(roi[i], roi[i + n]) for i in range(r)]
    return axes, out, full_scale, rois


def resize(x, roi, scales, sizes, opts):
    axes, out, scale, rois = _plan(x.shape, roi, scales, sizes, opts.get("axes"),
                                   opts.get("keep_aspect_ratio_policy", "stretch"))
    y = x.astype(np.float64)
    for a in axes:
        identity = out[a] == y.shape[a] and math.isclose(scale[a], 1.0) and rois[a] == (0.0, 1.0)
        if not identity or opts["coordinate_transformation_mode"] == "tf_crop_and_resize":
            y = _resize_axis(y, a, out[a], scale[a], rois[a], opts)
    if x.dtype.kind in "iu":  # integer images round and saturate
        info = np.iinfo(x.dtype)
        return np.clip(np.round(y), info.min, info.max).astype(x.dtype)
    if x.dtype.kind == "V" or x.dtype == np.float16:
        big = float(ml_dtypes.finfo(x.dtype).max)
        y = np.clip(y, -big, big)
    return y.astype(x.dtype)


_OPTS = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
         "nearest_mode": "round_prefer_floor",
         "cubic_coeff_a": -0.75, "exclude_outside": 0, "extrapolation_value": 0.0, "antialias": 0,
         "keep_aspect_ratio_policy": "stretch", "axes": None}


def _infer_resize(ctx, x, roi=None, scales=None, sizes=None):
    consts = [ctx.const(i) if t is not None else None for i, t in ((1, roi), (2, scales), (3, sizes))]
    if (scales is not None and consts[1] is None) or (sizes is not None and consts[2] is None):
        raise ValueError("scales or sizes unknown")
    return _out_type(x, consts, ctx.get("axes"), ctx.get("keep_aspect_ratio_policy", "stretch"))


def _infer_legacy(ctx, x, scales=None):
    s = ctx.get("scales") if scales is None else ctx.const(1)
    if s is None:
        raise ValueError("scales unknown")
    return _out_type(x, [None, np.asarray(s, np.float32), None], None, "stretch")


def _out_type(x, consts, axes, policy):
    if x.shape is None:
        raise ValueError("unknown rank")
    if all(isinstance(d, int) for d in x.shape):
        _, out, _, _ = _plan(x.shape, consts[0], consts[1], consts[2], axes, policy)
        return TensorType(x.dtype, out)
    # symbolic dims: exact only for explicit sizes (stretch) or integer scales
    r = len(x.shape)
    axes = list(range(r)) if axes is None else [norm_axis(int(a), r) for a in axes]
    out = list(x.shape)
    given = consts[2] if consts[2] is not None and np.asarray(consts[2]).size else None
    if given is not None and policy == "stretch":
        for a, v in zip(axes, np.asarray(given).reshape(-1)):
            out[a] = int(v)
        return TensorType(x.dtype, out)
    if given is None and consts[1] is not None:
        for a, v in zip(axes, np.asarray(consts[1]).reshape(-1)):
            if float(v) != int(v) and not isinstance(out[a], int):
                raise ValueError("fractional scale of a symbolic dim")
            out[a] = int(v) * out[a] if not isinstance(out[a], int) else int(math.floor(float(v) * out[a]))
        return TensorType(x.dtype, out)
    raise ValueError("resize of symbolic dims")


@op("Resize", since=11, attrs=_OPTS, infer=_infer_resize)
def _resize(ctx, x, roi=None, scales=None, sizes=None):
    return resize(x, roi, scales, sizes, ctx.attrs)


def _legacy_opts(ctx):
    """Resize-10 and Upsample: asymmetric coordinates, nearest rounds down."""
    return {**_OPTS, "mode": ctx["mode"], "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor"}


@op("Resize", since=10, attrs={"mode": "nearest"}, infer=_infer_legacy)
def _resize10(ctx, x, scales):
    return resize(x, None, scales, None, _legacy_opts(ctx))


@op("Upsample", since=1, attrs={"mode": "nearest"}, infer=_infer_legacy)
def _upsample_v7(ctx, x):
    return resize(x, None, np.asarray(ctx["scales"], np.float32), None, _legacy_opts(ctx))


@op("Upsample", since=9, attrs={"mode": "nearest"}, infer=_infer_legacy)
def _upsample(ctx, x, scales):
    return resize(x, None, scales, None, _legacy_opts(ctx))
