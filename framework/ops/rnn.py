"""Recurrent ops: RNN, GRU, LSTM (all directions, layouts, sequence_lens, clip, custom activations).

The input projection X @ W^T of all time steps is one GEMM; only the recurrence loops over time.
"""
from __future__ import annotations

import numpy as np

from ..errors import KernelError, ShapeError
from ..ir import TensorType
from .nn import acc_dtype
from .registry import op


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))  # overflow-free logistic


ACTIVATIONS = {
    "relu": lambda x, a, b: np.maximum(x, 0),
    "tanh": lambda x, a, b: np.tanh(x),
    "sigmoid": lambda x, a, b: _sigmoid(x),
    "affine": lambda x, a, b: a * x + b,
    "leakyrelu": lambda x, a, b: np.where(x >= 0, x, a * x),
    "thresholdedrelu": lambda x, a, b: np.where(x > a, x, 0),
    "scaledtanh": lambda x, a, b: a * np.tanh(b * x),
    "hardsigmoid": lambda x, a, b: np.clip(a * x + b, 0, 1),
    "elu": lambda x, a, b: np.where(x >= 0, x, a * (np.exp(np.minimum(x, 0)) - 1)),
    "softsign": lambda x, a, b: x / (1 + np.abs(x)),
    "softplus": lambda x, a, b: np.logaddexp(0, x),
}
# alpha/beta defaults of each activation when the node does not list them (ONNX RNN activation table)
DEFAULT_AB = {"leakyrelu": (0.01, 0.0), "thresholdedrelu": (1.0, 0.0), "hardsigmoid": (0.2, 0.5),
              "elu": (1.0, 0.0), "affine": (1.0, 0.0), "scaledtanh": (1.0, 1.0)}


def _activations(ctx, defaults, num_dir):
    """Per direction, the list of activation callables (alpha/beta consumed in order from the attrs)."""
    names = list(ctx.get("activations") or []) or defaults * num_dir
    names = [n.decode() if isinstance(n, bytes) else n for n in names]
    if len(names) != len(defaults) * num_dir:
        raise ShapeError(f"expected {len(defaults) * num_dir} activations, got {names}")
    alphas = list(ctx.get("activation_alpha") or [])
    betas = list(ctx.get("activation_beta") or [])
    fns = []
    for i, name in enumerate(names):
        key = name.lower()
        if key not in ACTIVATIONS:
            raise KernelError(f"unsupported RNN activation {name!r}")
        a, b = DEFAULT_AB.get(key, (0.0, 0.0))
        a = alphas[i] if i < len(alphas) else a
        b = betas[i] if i < len(betas) else b
        fns.append(lambda x, f=ACTIVATIONS[key], a=a, b=b: f(x, a, b))
    k = len(defaults)
    return [fns[d * k:(d + 1) * k] for d in range(num_dir)]


def _rnn_infer(ctx, x, w, *rest):
    if x.shape is None or w is None or w.shape is None:
        return tuple(TensorType(x.dtype, None) for _ in range(max(ctx.num_outputs, 1)))
    h = ctx["hidden_size"] if ctx.get("hidden_size") else None
    nd = w.shape[0]
    if h is None:
        return tuple(TensorType(x.dtype, None) for _ in range(max(ctx.num_outputs, 1)))
    if ctx.get("layout", 0):
        b, s = x.shape[0], x.shape[1]
        y, yh = (b, s, nd, h), (b, nd, h)
    else:
        s, b = x.shape[0], x.shape[1]
        y, yh = (s, nd, b, h), (nd, b, h)
    outs = (TensorType(x.dtype, y), TensorType(x.dtype, yh), TensorType(x.dtype, yh))
    return outs[:max(ctx.num_outputs, 1)]


RNN_ATTRS = {"activation_alpha": None, "activation_beta": None, "activations": None, "clip": None,
             "direction": "forward", "hidden_size": None, "layout": 0}


def _run(ctx, kind, x, w, r, b, seq_lens, states, p=None):
    """Shared driver: returns (Y, Y_h[, Y_c]) as arrays in the ONNX layout."""
    layout = int(ctx.get("layout", 0))
    direction = ctx["direction"]
    num_dir = 2 if direction == "bidirectional" else 1
    if w.shape[0] != num_dir:
        raise ShapeError(f"{kind}: W has {w.shape[0]} directions, direction={direction!r}")
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
    hidden = int(ctx["hidden_size"] or w.shape[1] // gates)
    f = acc_dtype(x.dtype)
    xs = x.astype(f)
    if layout:
        xs = xs.transpose(1, 0, 2)
        states = [None if s is None else s.transpose(1, 0, 2) for s in states]
    t_len, batch = xs.shape[:2]
    lens = np.full(batch, t_len, np.int64) if seq_lens is None else seq_lens.astype(np.int64)
    clip = ctx.get("clip")
    defaults = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}[kind]
    acts = _activations(ctx, defaults, num_dir)
    y = np.zeros((t_len, num_dir, batch, hidden), f)
    finals = [np.zeros((num_dir, batch, hidden), f) for _ in range(2 if kind == "LSTM" else 1)]
    for d in range(num_dir):
        reverse = direction == "reverse" or d == 1
        wd, rd = w[d].astype(f), r[d].astype(f)
        bd = np.zeros(2 * gates * hidden, f) if b is None else b[d].astype(f)
        wb, rb = bd[:gates * hidden], bd[gates * hidden:]
        xw = np.matmul(xs, wd.T) + wb  # [T, B, G*H] for all steps at once
        h = np.zeros((batch, hidden), f) if states[0] is None else states[0][d].astype(f)
        c = None
        if kind == "LSTM":
            c = np.zeros((batch, hidden), f) if states[1] is None else states[1][d].astype(f)
            pd = np.zeros(3 * hidden, f) if p is None else p[d].astype(f)
        steps = range(t_len - 1, -1, -1) if reverse else range(t_len)
        for t in steps:
            valid = (t < lens)[:, None]
            pre = xw[t]
            if kind == "GRU":
                h_new = _gru_step(ctx, pre, h, rd, rb, hidden, clip, acts[d])
            elif kind == "LSTM":
                h_new, c_new = _lstm_step(ctx, pre + h @ rd.T + rb, c, pd, hidden, clip, acts[d])
                c = np.where(valid, c_new, c)
            else:
                g = pre + h @ rd.T + rb
                h_new = acts[d][0](np.clip(g, -clip, clip) if clip else g)
            h = np.where(valid, h_new, h)
            y[t, d] = np.where(valid, h_new, 0)
        finals[0][d] = h
        if kind == "LSTM":
            finals[1][d] = c
    if layout:
        y = y.transpose(2, 0, 1, 3)
        finals = [s.transpose(1, 0, 2) for s in finals]
    outs = (y.astype(x.dtype),) + tuple(s.astype(x.dtype) for s in finals)
    return outs[:max(ctx.num_outputs, 1)] if ctx.num_outputs > 1 else outs[0]


def _gru_step(ctx, pre, h, rd, rb, hidden, clip, acts):
    f_act, g_act = acts
    rz = h @ rd[:2 * hidden].T + rb[:2 * hidden]
    zr = pre[:, :2 * hidden] + rz
    if clip:
        zr = np.clip(zr, -clip, clip)
    zr = f_act(zr)
    z, rgate = zr[:, :hidden], zr[:, hidden:]
    rh, rbh = rd[2 * hidden:], rb[2 * hidden:]
    if ctx.get("linear_before_reset", 0):
        hh = pre[:, 2 * hidden:] + rgate * (h @ rh.T + rbh)
    else:
        hh = pre[:, 2 * hidden:] + (rgate * h) @ rh.T + rbh
    if clip:
        hh = np.clip(hh, -clip, clip)
    hh = g_act(hh)
    return (1 - z) * hh + z * h


def _lstm_step(ctx, g, c, pd, hidden, clip, acts):
    f_act, g_act, h_act = acts
    # clip bounds the inputs of the gate activations, peephole terms included (as onnxruntime does)
    gate_in = (lambda v: np.clip(v, -clip, clip)) if clip else (lambda v: v)
    gi, go, gf, gc = (g[:, k * hidden:(k + 1) * hidden] for k in range(4))
    pi, po, pf = pd[:hidden], pd[hidden:2 * hidden], pd[2 * hidden:]
    i = f_act(gate_in(gi + pi * c))
    fgate = 1 - i if ctx.get("input_forget", 0) else f_act(gate_in(gf + pf * c))
    c_new = fgate * c + i * g_act(gate_in(gc))
    o = f_act(gate_in(go + po * c_new))
    return o * h_act(c_new), c_new


@op("RNN", since=1, attrs=RNN_ATTRS, infer=_rnn_infer)
def _rnn(ctx, x, w, r, b=None, seq_lens=None, h0=None):
    return _run(ctx, "RNN", x, w, r, b, seq_lens, [h0])


@op("GRU", since=1, attrs={**RNN_ATTRS, "linear_before_reset": 0}, infer=_rnn_infer)
def _gru(ctx, x, w, r, b=None, seq_lens=None, h0=None):
    return _run(ctx, "GRU", x, w, r, b, seq_lens, [h0])


@op("LSTM", since=1, attrs={**RNN_ATTRS, "input_forget": 0}, infer=_rnn_infer)
def _lstm(ctx, x, w, r, b=None, seq_lens=None, h0=None, c0=None, p=None):
    return _run(ctx, "LSTM", x, w, r, b, seq_lens, [h0, c0], p)
