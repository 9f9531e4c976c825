"""Fast convolution kernels: phase-split "wide" im2col + tiled sgemm, 1x1 as GEMM, depthwise MAC.

A stride-s conv reads input position o*s + i*d = (o + a)*s + p for tap i (a = i*d // s, p = i*d % s).
Splitting the zero-padded input into s^nd phase images makes every tap a *contiguous* slice of one flattened
phase image when outputs are computed on the phase grid ("wide" rows that also cover a few padding columns,
cropped afterwards). im2col is then one memcpy-speed copy per tap and row tile, feeding one sgemm per tile.
"""
from __future__ import annotations

import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

TILE_BYTES = 8 << 20  # im2col tile: stays in cache and under malloc's mmap threshold (no page faults)
SCRATCH_MAX = 256 << 20  # bigger temporaries are not cached
_LOCAL = threading.local()


def scratch(slot, shape, dtype):
    """A reusable per-thread temporary (uninitialised): repeated kernels avoid fresh pages (page faults)."""
    dtype = np.dtype(dtype)
    nbytes = prod(shape) * dtype.itemsize
    if nbytes > SCRATCH_MAX:
        return np.empty(shape, dtype)
    bufs = getattr(_LOCAL, "bufs", None)
    if bufs is None:
        bufs = _LOCAL.bufs = {}
    buf = bufs.get(slot)
    if buf is None or buf.size < nbytes:
        buf = bufs[slot] = np.empty(max(nbytes, 1 << 16), np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def prod(xs):
    n = 1
    for x in xs:
        n *= int(x)
    return n


class Phases:
    """Zero-padded input split into stride phases, each flattened, plus per-tap (phase, offset) pairs.

    flat: [N, C, P, F] with P = prod(strides) phase images of F elements; outputs live on a grid of
    out[0] rows of `inner` elements; tap t reads flat[:, :, phase[t], off[t] + row * inner + j].
    """

    def __init__(self, x, kernel, dil, strides, pb, out):
        n, c = x.shape[:2]
        nd = len(kernel)
        ext = [(o - 1) * s + (k - 1) * d + 1 for o, s, k, d in zip(out, strides, kernel, dil)]
        q = [-(-e // s) for e, s in zip(ext, strides)]  # phase image extents
        self.inner = prod(q[1:])
        qstr = [prod(q[i + 1:]) for i in range(nd)]
        taps = list(np.ndindex(*kernel))
        self.phase, self.off = [], []
        for idx in taps:
            pos = [i * d for i, d in zip(idx, dil)]
            ph = 0
            for p, s in zip(pos, strides):
                ph = ph * s + p % s
            self.phase.append(ph)
            self.off.append(sum((p // s) * qs for p, s, qs in zip(pos, strides, qstr)))
        need = max(self.off) + out[0] * self.inner  # elements of each phase image any tap reads
        rows = max(q[0], -(-need // self.inner))
        full = [rows * strides[0]] + [qi * s for qi, s in zip(q[1:], strides[1:])]
        xp = scratch("pad", (n, c) + tuple(full), x.dtype)
        dst, src = [], []
        lead = (slice(None), slice(None))
        for axis, (size, b, e) in enumerate(zip(x.shape[2:], pb, full)):
            lo, hi = max(b, 0), min(b + size, e)
            hi = max(hi, lo)
            dst.append(slice(lo, hi))
            src.append(slice(lo - b, hi - b))
            xp[lead + (slice(None),) * axis + (slice(0, lo),)] = 0  # zero only the padding borders
            xp[lead + (slice(None),) * axis + (slice(hi, None),)] = 0
        xp[lead + tuple(dst)] = x[lead + tuple(src)]
        if all(s == 1 for s in strides):
            self.flat = xp.reshape(n, c, 1, -1)
        else:
            split = [n, c]
            for f, s in zip(full, strides):
                split += [f // s, s]
            perm = [0, 1] + [3 + 2 * i for i in range(nd)] + [2 + 2 * i for i in range(nd)]
            flat = scratch("phases", (n, c) + tuple(strides) + tuple(f // s for f, s in zip(full, strides)),
                           x.dtype)
            np.copyto(flat, xp.reshape(split).transpose(perm))
            self.flat = flat.reshape(n, c, prod(strides), -1)
        self.q, self.out, self.uniform = q, out, all(s == 1 for s in strides)
        self.tap_strides = [d * qs for d, qs in zip(dil, qstr)]  # stride-1 taps: uniform offsets

    def crop(self, y):
        """The true outputs [N, M, *out] (a view) of a wide result [M, N, out0 * inner]."""
        y = y.reshape(y.shape[:2] + (self.out[0],) + tuple(self.q[1:]))
        return y[(slice(None),) * 3 + tuple(slice(0, o) for o in self.out[1:])].swapaxes(0, 1)

    def cols(self, kernel, r0, lt):
        """im2col tile [C, K, N, lt] (batch inside the GEMM columns) for output rows starting at r0."""
        f = self.flat
        n, c = f.shape[:2]
        start = r0 * self.inner
        out = scratch("cols", (c, len(self.off), n, lt), f.dtype)
        if self.uniform:
            isz = f.itemsize
            strides = (f.strides[1],) + tuple(t * isz for t in self.tap_strides) + (f.strides[0], isz)
            view = as_strided(f[:, :, 0, start:], (c,) + tuple(kernel) + (n, lt), strides, writeable=False)
            np.copyto(out.reshape((c,) + tuple(kernel) + (n, lt)), view)
            return out
        for t, (ph, off) in enumerate(zip(self.phase, self.off)):
            out[:, t] = f[:, :, ph, start + off:start + off + lt].swapaxes(0, 1)
        return out


def conv_gemm(x, w, bias, group, strides, dil, pb, out):
    """Grouped N-d conv as tiled im2col + one sgemm per group and tile; returns [N, M, *out] with the bias
    added (each tile's wide result is cropped straight into the output: one pass)."""
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    kernel = list(w.shape[2:])
    k = prod(kernel)
    ph = Phases(x, kernel, dil, strides, pb, out)
    inner = ph.inner
    rows = max(1, min(out[0], TILE_BYTES // max(n * c * k * inner * x.itemsize, 1)))
    y = np.empty((n, m) + tuple(out), x.dtype)
    b = None if bias is None else bias.reshape((m, 1, 1) + (1,) * (len(out) - 1))
    wr = w.reshape(group, m // group, cg * k)
    for r0 in range(0, out[0], rows):
        r1 = min(out[0], r0 + rows)
        lt = (r1 - r0) * inner
        res = np.matmul(wr, ph.cols(kernel, r0, lt).reshape(group, cg * k, n * lt))
        res = res.reshape((m, n, r1 - r0) + tuple(ph.q[1:]))
        res = res[(slice(None),) * 3 + tuple(slice(0, o) for o in out[1:])]
        dst = y[:, :, r0:r1].swapaxes(0, 1)
        if b is None:
            np.copyto(dst, res)
        else:
            np.add(res, b, out=dst)
    return y


def conv_1x1(x, w, group, strides, out):
    """1x1 conv: subsample (strides), then one GEMM per group over the flattened spatial dims."""
    n, c = x.shape[:2]
    m = w.shape[0]
    if any(s != 1 for s in strides):
        x = np.ascontiguousarray(x[(slice(None),) * 2 + tuple(slice(0, (o - 1) * s + 1, s)
                                                              for o, s in zip(out, strides))])
    cols = x.reshape(n, c, -1)
    if group == 1:
        return np.matmul(w.reshape(m, c), cols).reshape((n, m) + tuple(out))
    y = np.matmul(w.reshape(group, m // group, c // group), cols.reshape(n, group, c // group, -1))
    return y.reshape((n, m) + tuple(out))


def depthwise(x, w, mult, strides, dil, pb, out):
    """Depthwise conv (one input channel per group, channel multiplier `mult`): per tap, one channel-wise
    multiply-accumulate over a contiguous slice of the phase images; returns a cropped view."""
    if mult > 1:
        x = np.repeat(x, mult, axis=1)
    n, m = x.shape[0], w.shape[0]
    kernel = list(w.shape[2:])
    wk = w.reshape(m, -1)
    ph = Phases(x, kernel, dil, strides, pb, out)
    lt = out[0] * ph.inner
    acc = np.zeros((n, m, lt), x.dtype)
    tmp = scratch("dw", (n, m, lt), x.dtype)
    for t, (p, off) in enumerate(zip(ph.phase, ph.off)):
        np.multiply(ph.flat[:, :, p, off:off + lt], wk[:, t:t + 1], out=tmp)
        acc += tmp
    return ph.crop(acc.swapaxes(0, 1))
