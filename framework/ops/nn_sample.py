"""Sampling ops: GridSample, AffineGrid, RoiAlign, Col2Im (vectorised gathers; loops over taps or ROIs
only)."""
from __future__ import annotations

import itertools

import numpy as np

from ..errors import KernelError, ShapeError
from ..ir import TensorType
from .nn import acc_dtype
from .nn_window import ints
from .registry import op


def _reflect(x, lo, hi):
    """Reflect coordinates into [lo, hi] by bouncing off the borders."""
    rng = hi - lo
    if rng <= 0:
        return np.full_like(x, lo)
    below, above = x < lo, x > hi
    dx = np.where(below, lo - x, x - hi)
    n = np.floor(dx / rng)
    r = dx - n * rng
    even = (n % 2) == 0
    from_below = np.where(even, lo + r, hi - r)
    from_above = np.where(even, hi - r, lo + r)
    return np.where(below, from_below, np.where(above, from_above, x))


def _cubic_coeffs(t, a=-0.75):
    """Keys cubic convolution weights for taps at offsets -1, 0, 1, 2 from floor(x)."""
    t1, t2 = t + 1, 1 - t
    return [((a * t1 - 5 * a) * t1 + 8 * a) * t1 - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * t2 - (a + 3)) * t2 * t2 + 1,
            ((a * (3 - t1) - 5 * a) * (3 - t1) + 8 * a) * (3 - t1) - 4 * a]


def _gs_infer(ctx, x, grid):
    if x.shape is None or grid.shape is None:
        return TensorType(x.dtype, None)
    return TensorType(x.dtype, (x.shape[0], x.shape[1]) + tuple(grid.shape[1:-1]))


@op("GridSample", since=1, attrs={"align_corners": 0, "mode": "linear", "padding_mode": "zeros"},
    infer=_gs_infer)
def _grid_sample(ctx, x, grid):
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(ctx["mode"], ctx["mode"])
    pad_mode, align = ctx["padding_mode"], bool(ctx["align_corners"])
    if mode not in ("linear", "nearest", "cubic") or pad_mode not in ("zeros", "border", "reflection"):
        raise KernelError(f"GridSample: unsupported mode {ctx['mode']!r} / padding_mode {pad_mode!r}")
    n, c = x.shape[:2]
    sizes = x.shape[2:]
    nd = len(sizes)
    if grid.ndim != nd + 2 or grid.shape[-1] != nd or grid.shape[0] != n:
        raise ShapeError(f"GridSample: grid {grid.shape} does not match input {x.shape}")
    out = grid.shape[1:-1]
    f = acc_dtype(x.dtype)
    g = grid.astype(f).reshape(n, -1, nd)[..., ::-1]  # grid lists (x, y, z): reverse to spatial order
    coords = []
    for d, size in enumerate(sizes):
        v = (g[..., d] + 1) / 2 * (size - 1) if align else ((g[..., d] + 1) * size - 1) / 2
        if mode == "nearest":
            v = np.rint(v)
        lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        if pad_mode == "border":
            v = np.where((v < lo) | (v > hi), np.clip(v, 0, size - 1), v)
        elif pad_mode == "reflection":
            v = _reflect(v, lo, hi)
        coords.append((v, lo, hi))
    taps_per_dim = []
    for (v, lo, hi), size in zip(coords, sizes):
        if mode == "nearest":
            taps = [(np.trunc(v).astype(np.int64), np.ones_like(v))]
        elif mode == "linear":
            base = np.floor(v)
            t = v - base
            taps = [(base.astype(np.int64), 1 - t), (base.astype(np.int64) + 1, t)]
        else:
            base = np.floor(v)
            w = _cubic_coeffs(v - base)
            taps = [(base.astype(np.int64) + k - 1, w[k]) for k in range(4)]
        fixed = []
        for idx, w in taps:  # map taps outside the image according to padding_mode
            if pad_mode == "zeros":
                ok = (idx >= 0) & (idx < size)
                fixed.append((np.clip(idx, 0, size - 1), np.where(ok, w, 0)))
            elif pad_mode == "border":
                fixed.append((np.clip(idx, 0, size - 1), w))
            else:
                r = np.trunc(_reflect(idx.astype(f), lo, hi)).astype(np.int64)
                fixed.append((np.clip(r, 0, size - 1), w))
        taps_per_dim.append(fixed)
    xr = x.astype(f).reshape(n, c, -1)
    y = np.zeros((n, c, g.shape[1]), f)
    for combo in itertools.product(*taps_per_dim):
        lin, wt = 0, 1
        for (idx, w), size in zip(combo, sizes):
            lin = lin * size + idx
            wt = wt * w
        idx = np.broadcast_to(lin[:, None, :], (n, c, lin.shape[1]))
        y += np.take_along_axis(xr, idx, axis=2) * wt[:, None]
    return y.reshape((n, c) + tuple(out)).astype(x.dtype)


def _base_coords(size, align):
    """Normalized sample positions in [-1, 1] along one dim."""
    if align:
        return np.linspace(-1, 1, size) if size > 1 else np.zeros(1)
    return (2 * np.arange(size) + 1) / size - 1


def _ag_infer(ctx, theta, size):
    s = ctx.const(1)
    if s is None:
        return TensorType(theta.dtype, None)
    dims = [int(d) if not hasattr(d, "free_symbols") else d for d in s.tolist()]
    return TensorType(theta.dtype, (dims[0],) + tuple(dims[2:]) + (len(dims) - 2,))


@op("AffineGrid", since=1, attrs={"align_corners": 0}, infer=_ag_infer)
def _affine_grid(ctx, theta, size):
    dims = [int(d) for d in size]
    n, spatial = dims[0], dims[2:]
    nd = len(spatial)
    if theta.shape != (n, nd, nd + 1):
        raise ShapeError(f"AffineGrid: theta {theta.shape} must be {(n, nd, nd + 1)} for size {dims}")
    f = acc_dtype(theta.dtype)
    axes = [_base_coords(s, bool(ctx["align_corners"])).astype(f) for s in spatial]
    mesh = np.meshgrid(*axes, indexing="ij")  # spatial order (D, H, W)
    base = np.stack([m.reshape(-1) for m in mesh[::-1]] + [np.ones(mesh[0].size, f)], axis=-1)  # (x, y, z, 1)
    grid = np.matmul(base[None], theta.astype(f).transpose(0, 2, 1))
    return grid.reshape((n,) + tuple(spatial) + (nd,)).astype(theta.dtype)


def _roi_infer(ctx, x, rois, idx):
    r = None if idx.shape is None else idx.shape[0]
    c = None if x.shape is None else x.shape[1]
    if r is None or c is None:
        return TensorType(x.dtype, None)
    return TensorType(x.dtype, (r, c, int(ctx["output_height"]), int(ctx["output_width"])))


ROI_ATTRS = {"mode": "avg", "output_height": 1, "output_width": 1, "sampling_ratio": 0, "spatial_scale": 1.0}


@op("RoiAlign", since=1, attrs=ROI_ATTRS, infer=_roi_infer)
def _roi_align10(ctx, x, rois, batch_indices):
    """Opset 10 had no coordinate_transformation_mode: it behaved as output_half_pixel."""
    return _roi_align(ctx, x, rois, batch_indices, False)


@op("RoiAlign", since=16, attrs={**ROI_ATTRS, "coordinate_transformation_mode": "half_pixel"},
    infer=_roi_infer)
def _roi_align16(ctx, x, rois, batch_indices):
    return _roi_align(ctx, x, rois, batch_indices, ctx["coordinate_transformation_mode"] == "half_pixel")


def _roi_align(ctx, x, rois, batch_indices, half):
    ph, pw = int(ctx["output_height"]), int(ctx["output_width"])
    scale, ratio = float(ctx["spatial_scale"]), int(ctx["sampling_ratio"])
    is_max = ctx["mode"] == "max"
    n, c, h, w = x.shape
    f = acc_dtype(x.dtype)
    xf = x.astype(f).reshape(n, c, h * w)
    y = np.zeros((rois.shape[0], c, ph, pw), f)
    off = 0.5 if half else 0.0
    for r in range(rois.shape[0]):  # each ROI has its own sampling grid
        x1, y1, x2, y2 = (float(v) * scale - off for v in rois[r, :4])
        rw, rh = x2 - x1, y2 - y1
        if not half:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = ratio if ratio > 0 else int(np.ceil(rh / ph))
        gw = ratio if ratio > 0 else int(np.ceil(rw / pw))
        if gh <= 0 or gw <= 0:
            continue
        ys = y1 + np.arange(ph)[:, None] * bh + (np.arange(gh)[None, :] + 0.5) * bh / gh  # (ph, gh)
        xs = x1 + np.arange(pw)[:, None] * bw + (np.arange(gw)[None, :] + 0.5) * bw / gw  # (pw, gw)
        yy = np.broadcast_to(ys[:, :, None, None], (ph, gh, pw, gw))
        xx = np.broadcast_to(xs[None, None], (ph, gh, pw, gw))
        outside = (yy < -1.0) | (yy > h) | (xx < -1.0) | (xx > w)
        yc, xc = np.maximum(yy, 0), np.maximum(xx, 0)
        ylo, xlo = yc.astype(np.int64), xc.astype(np.int64)
        ytop, xtop = ylo >= h - 1, xlo >= w - 1
        ylo, xlo = np.where(ytop, h - 1, ylo), np.where(xtop, w - 1, xlo)
        yhi, xhi = np.where(ytop, h - 1, ylo + 1), np.where(xtop, w - 1, xlo + 1)
        ly, lx = np.where(ytop, 0, yc - ylo), np.where(xtop, 0, xc - xlo)
        hy, hx = 1 - ly, 1 - lx
        corners = [(ylo * w + xlo, hy * hx), (ylo * w + xhi, hy * lx), (yhi * w + xlo, ly * hx),
                   (yhi * w + xhi, ly * lx)]
        plane = xf[int(batch_indices[r])]
        vals = [plane[:, np.where(outside, 0, pos).reshape(-1)]
                * np.where(outside, 0, wt).reshape(-1).astype(f) for pos, wt in corners]
        shape = (c, ph, gh, pw, gw)
        if is_max:
            v = np.maximum.reduce([v.reshape(shape) for v in vals])
            y[r] = v.max(axis=(2, 4))
        else:
            v = sum(vals).reshape(shape)
            y[r] = v.sum(axis=(2, 4)) / max(gh * gw, 1)
    return y.astype(x.dtype)


def _c2i_infer(ctx, x, image_shape, block_shape):
    img, blk = ctx.const(1), ctx.const(2)
    if x.shape is None or img is None or blk is None:
        return TensorType(x.dtype, None)
    k = int(np.prod([int(b) for b in blk.tolist()]))
    c = x.shape[1] // k if isinstance(x.shape[1], int) else x.shape[1] / k
    return TensorType(x.dtype, (x.shape[0], c) + tuple(img.tolist()))


@op("Col2Im", since=1, attrs={"dilations": None, "pads": None, "strides": None}, infer=_c2i_infer)
def _col2im(ctx, x, image_shape, block_shape):
    img = [int(d) for d in image_shape]
    blk = [int(d) for d in block_shape]
    nd = len(img)
    strides, dil = ints(ctx.get("strides"), nd, 1), ints(ctx.get("dilations"), nd, 1)
    pads = ints(ctx.get("pads"), 2 * nd, 0)
    k = int(np.prod(blk))
    n, ck, L = x.shape
    if ck % k:
        raise ShapeError(f"Col2Im: input channel dim {ck} is not a multiple of the block size {k}")
    out = [(i + pads[d] + pads[nd + d] - (b - 1) * dl - 1) // s + 1
           for d, (i, b, dl, s) in enumerate(zip(img, blk, dil, strides))]
    if int(np.prod(out)) != L:
        raise ShapeError(f"Col2Im: {L} blocks do not match the {out} block positions of image {img}")
    c = ck // k
    cols = x.reshape((n, c, k) + tuple(out))
    padded = np.zeros((n, c) + tuple(i + pads[d] + pads[nd + d] for d, i in enumerate(img)), x.dtype)
    for t, idx in enumerate(np.ndindex(*blk)):  # scatter-add one kernel offset at a time
        sl = tuple(slice(i * dl, i * dl + (o - 1) * s + 1, s) for i, dl, o, s in zip(idx, dil, out, strides))
        padded[(slice(None), slice(None)) + sl] += cols[:, :, t]
    return padded[(slice(None), slice(None)) + tuple(slice(pads[d], pads[d] + i) for d, i in enumerate(img))]
