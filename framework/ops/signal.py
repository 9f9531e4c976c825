"""Signal ops: DFT (opset 17 attribute axis, opset 20 input axis), STFT, Hann/Hamming/Blackman windows and
MelWeightMatrix. Complex values travel as a trailing dimension of size 2 (real, imaginary)."""
from __future__ import annotations

import numpy as np

from ..dtypes import np_dtype
from ..errors import KernelError
from ..ir import TensorType
from .infer import norm_axis
from .registry import op


def _to_complex(x):
    # numpy's FFT runs in single precision for float32 data: matching it keeps results bit-close to others
    real = np.float64 if x.dtype == np.float64 else np.float32
    if x.shape[-1] == 1:
        return x[..., 0].astype(real)
    if x.shape[-1] == 2:
        z = np.empty(x.shape[:-1], dtype=np.result_type(real, np.complex64))
        z.real, z.imag = x[..., 0], x[..., 1]
        return z
    raise KernelError(f"the last dimension of a signal must be 1 (real) or 2 (complex), got {x.shape[-1]}")


def _from_complex(z, dtype):
    return np.stack([z.real, z.imag], axis=-1).astype(dtype)


def _scalar(v, default=None):
    return default if v is None or v.size == 0 else int(np.ravel(v)[0])


def dft(x, length, axis, inverse, onesided):
    """DFT of x (real [...,1] or complex [...,2]) along `axis` (an axis of x, not the complex one)."""
    z = _to_complex(x)
    if onesided and inverse:
        n = length if length is not None else 2 * (z.shape[axis] - 1)
        return np.fft.irfft(z, n=n, axis=axis)[..., None].astype(x.dtype)
    n = length if length is not None else z.shape[axis]
    out = np.fft.ifft(z, n=n, axis=axis) if inverse else np.fft.fft(z, n=n, axis=axis)
    if onesided:
        out = np.take(out, np.arange(n // 2 + 1), axis=axis)
    return _from_complex(out, x.dtype)


@op("DFT", since=17, attrs={"axis": 1, "inverse": 0, "onesided": 0})
def _dft17(ctx, x, dft_length=None):
    axis = norm_axis(ctx["axis"], x.ndim - 1)
    return dft(x, _scalar(dft_length), axis, ctx["inverse"], ctx["onesided"])


@op("DFT", since=20, attrs={"inverse": 0, "onesided": 0})
def _dft20(ctx, x, dft_length=None, axis=None):
    a = _scalar(axis, -2)
    if not (-x.ndim <= a <= -2 or 0 <= a <= x.ndim - 2):
        raise KernelError(f"DFT axis {a} out of range for rank {x.ndim}")
    return dft(x, _scalar(dft_length), a % x.ndim, ctx["inverse"], ctx["onesided"])


@op("STFT", since=17, attrs={"onesided": 1})
def _stft(ctx, signal, frame_step, window=None, frame_length=None):
    step = _scalar(frame_step)
    length = _scalar(frame_length)
    if length is None:
        length = window.shape[0] if window is not None else signal.shape[1]
    if window is not None and window.shape[0] != length:
        raise KernelError(f"STFT window length {window.shape[0]} != frame_length {length}")
    z = _to_complex(signal)  # [batch, signal_length]
    frames = (z.shape[1] - length) // step + 1
    if frames <= 0 or step <= 0:
        raise KernelError(f"STFT: a signal of length {z.shape[1]} has no frame of length {length} "
                          f"(step {step})")
    idx = np.arange(frames)[:, None] * step + np.arange(length)[None, :]
    framed = z[:, idx]  # [batch, frames, length]
    if window is not None:
        framed = framed * window.astype(framed.real.dtype)
    if ctx["onesided"] and signal.shape[-1] == 1:
        out = np.fft.rfft(framed.real, axis=-1)
    else:
        out = np.fft.fft(framed, axis=-1)
        if ctx["onesided"]:
            out = out[..., :length // 2 + 1]
    return _from_complex(out, signal.dtype)


def _window(fn):
    def kernel(ctx, size):
        n = _scalar(size)
        denom = n if ctx["periodic"] else n - 1
        k = np.arange(n, dtype=np.float64)
        with np.errstate(all="ignore"):
            w = fn(2 * np.pi * k / denom) if denom > 0 else np.ones(n)
        return w.astype(np_dtype(ctx["output_datatype"]))
    return kernel


def _infer_window(ctx, size):
    n = ctx.const(0)
    dims = (int(np.ravel(n)[0]),) if n is not None and n.dtype != object else (None,)
    return TensorType(np_dtype(ctx["output_datatype"]), dims if dims[0] is not None else None)


_WINDOWS = {
    "HannWindow": lambda t: 0.5 - 0.5 * np.cos(t),
    "HammingWindow": lambda t: 25 / 46 - 21 / 46 * np.cos(t),
    "BlackmanWindow": lambda t: 0.42 - 0.5 * np.cos(t) + 0.08 * np.cos(2 * t),
}
for _name, _fn in _WINDOWS.items():
    op(_name, since=17, attrs={"periodic": 1, "output_datatype": 1}, infer=_infer_window)(_window(_fn))


@op("MelWeightMatrix", since=17, attrs={"output_datatype": 1})
def _mel(ctx, num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz):
    bins, n_fft, rate = _scalar(num_mel_bins), _scalar(dft_length), _scalar(sample_rate)
    lo, hi = float(np.ravel(lower_edge_hertz)[0]), float(np.ravel(upper_edge_hertz)[0])
    n_spec = n_fft // 2 + 1
    # triangle edges evenly spaced on the mel scale, mapped to DFT bins (the onnxruntime convention)
    mel_lo, mel_hi = 2595 * np.log10(1 + lo / 700), 2595 * np.log10(1 + hi / 700)
    points = np.arange(bins + 2) * ((mel_hi - mel_lo) / (bins + 2)) + mel_lo
    hz = 700 * (10 ** (points / 2595) - 1)
    edges = (((n_fft + 1) * hz) // rate).astype(np.int64)
    out = np.zeros((n_spec, bins))
    for i in range(bins):
        left, center, right = edges[i], edges[i + 1], edges[i + 2]
        if center == left:
            if 0 <= center < n_spec:
                out[center, i] = 1
        else:
            j = np.arange(left, min(center, n_spec - 1) + 1)
            out[j, i] = (j - left) / (center - left)
        if right > center:
            j = np.arange(center, min(right, n_spec))
            out[j, i] = (right - j) / (right - center)
    return out.astype(np_dtype(ctx["output_datatype"]))
