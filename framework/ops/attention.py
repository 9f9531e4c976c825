"""Attention family: Attention (opset 23-25), RotaryEmbedding, LinearAttention, FlexAttention (preview)."""
from __future__ import annotations

import numpy as np

from ..dtypes import np_dtype
from ..errors import ShapeError
from ..ir import TensorType
from .registry import op

NEG_INF = -np.inf


def _heads(x, n):
    """[B, S, H*D] -> [B, H, S, D]."""
    b, s, hd = x.shape
    if n is None or n <= 0 or hd % n:
        raise ShapeError(f"hidden size {hd} is not divisible by the number of heads {n}")
    return x.reshape(b, s, n, hd // n).transpose(0, 2, 1, 3)


def _per_head(d, n):
    return d // n if isinstance(d, int) else d / n


def _bias(ctx, acc, b, sq, skv, mask, past_len, nonpad):
    """Additive attention bias broadcastable to [B, H, Sq, Skv] (mask, causal, window, padding);
    None when there is none."""
    bias = None
    if mask is not None:
        if mask.shape[-1] < skv:  # a short mask covers only the first keys; the rest are masked
            widths = [(0, 0)] * (mask.ndim - 1) + [(0, skv - mask.shape[-1])]
            mask = np.pad(mask, widths, constant_values=False if mask.dtype == np.bool_ else NEG_INF)
        bias = np.where(mask, acc.type(0), acc.type(NEG_INF)) if mask.dtype == np.bool_ else mask.astype(acc)
    causal = bool(ctx.get("is_causal", 0))
    left, right = int(ctx.get("left_window_size", -1)), int(ctx.get("right_window_size", -1))
    if causal or left >= 0 or right >= 0:
        if past_len:
            offset = np.array(past_len).reshape(1, 1, 1, 1)
        elif nonpad is not None:
            offset = (nonpad.astype(np.int64).reshape(-1) - sq).reshape(-1, 1, 1, 1)
        else:
            offset = np.zeros((1, 1, 1, 1), np.int64)
        diff = np.arange(sq).reshape(sq, 1) + offset - np.arange(skv).reshape(1, skv)  # query pos - key pos
        allowed = np.ones(diff.shape, bool)
        if causal:
            allowed &= diff >= 0
        if left >= 0:
            allowed &= diff <= left
        if right >= 0:
            allowed &= -diff <= right
        extra = np.where(allowed, acc.type(0), acc.type(NEG_INF))
        bias = extra if bias is None else bias + extra
    if nonpad is not None:
        keep = np.arange(skv).reshape(1, skv) < nonpad.astype(np.int64).reshape(-1, 1)
        extra = np.where(keep, acc.type(0), acc.type(NEG_INF)).reshape(b, 1, 1, skv)
        bias = extra if bias is None else bias + extra
    return bias


def _safe_softmax(x, masked_rows):
    """Softmax over the last axis whose fully masked rows give zeros instead of NaN."""
    m = x.max(axis=-1, keepdims=True)
    m = np.where(np.isneginf(m), 0, m)
    e = np.exp(x - m)
    s = e.sum(axis=-1, keepdims=True)
    p = e / np.where(s == 0, 1, s)
    if masked_rows is not None:
        p = np.where(masked_rows, 0, p)
    return p


def _attention_infer(ctx, q, k, v, mask=None, past_k=None, past_v=None, nonpad=None):
    if q.shape is None or k.shape is None or v.shape is None:
        return tuple(TensorType(q.dtype, None) for _ in range(max(ctx.num_outputs, 1)))
    past = 0 if past_k is None or past_k.shape is None else past_k.shape[2]
    if len(q.shape) == 3:
        hq, hkv = int(ctx["q_num_heads"]), int(ctx["kv_num_heads"])
        b, sq, skv = q.shape[0], q.shape[1], k.shape[1]
        dk, dv = _per_head(k.shape[2], hkv), _per_head(v.shape[2], hkv)
        y = TensorType(q.dtype, (b, sq, hq * dv))
    else:
        b, hq, sq = q.shape[:3]
        hkv, skv, dk, dv = k.shape[1], k.shape[2], k.shape[3], v.shape[3]
        y = TensorType(q.dtype, (b, hq, sq, dv))
    total = skv + past
    outs = (y, TensorType(q.dtype, (b, hkv, total, dk)), TensorType(q.dtype, (b, hkv, total, dv)),
            TensorType(q.dtype, (b, hq, sq, total)))
    return outs[:max(ctx.num_outputs, 1)]


@op("Attention", since=1, attrs={"is_causal": 0, "kv_num_heads": None, "q_num_heads": None,
                                 "qk_matmul_output_mode": 0, "scale": None, "softcap": 0.0,
                                 "softmax_precision": None, "left_window_size": -1, "right_window_size": -1},
    infer=_attention_infer)
def _attention(ctx, q, k, v, mask=None, past_k=None, past_v=None, nonpad=None):
    dtype = q.dtype
    # the spec computes in T (softmax too unless softmax_precision says otherwise); low-precision cases
    # in the conformance suite depend on that rounding
    acc = dtype
    rank = q.ndim
    if rank == 3:
        hkv = ctx["kv_num_heads"]
        q, k, v = _heads(q, ctx["q_num_heads"]), _heads(k, hkv), _heads(v, hkv)
    elif rank != 4 or k.ndim != 4 or v.ndim != 4:
        raise ShapeError(f"Attention: Q, K, V must all be rank 3 or 4, got {q.shape}, {k.shape}, {v.shape}")
    if (past_k is None) != (past_v is None):
        raise ShapeError("Attention: past_key and past_value must be given together")
    if past_k is not None:
        k = np.concatenate([past_k, k], axis=2)
        v = np.concatenate([past_v, v], axis=2)
    present_k, present_v = k, v
    b, hq, sq, dh = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    if hq % hkv or v.shape[1] != hkv:
        raise ShapeError(f"Attention: {hq} query heads are not a multiple of {hkv} key/value heads")
    scale = ctx["scale"]
    scale = 1 / np.sqrt(dh) if scale is None else float(scale)
    # GQA as a grouped matmul: query heads [B, Hkv, G*Sq, D] against shared keys, no K/V repeat
    g = hq // hkv
    rs = acc.type(np.sqrt(scale))
    qg = (q.astype(acc) * rs).reshape(b, hkv, g * sq, dh)
    scores = np.matmul(qg, (k.astype(acc) * rs).transpose(0, 1, 3, 2)).astype(acc, copy=False)
    scores = scores.reshape(b, hq, sq, skv)
    raw = scores
    softcap = float(ctx["softcap"] or 0.0)
    if softcap > 0:
        scores = softcap * np.tanh(scores / softcap)
    capped = scores
    bias = _bias(ctx, acc, b, sq, skv, mask, 0 if past_k is None else past_k.shape[2], nonpad)
    masked_rows = None
    if bias is not None:
        scores = scores + bias
        masked_rows = np.isneginf(bias.max(axis=-1, keepdims=True))
    biased = scores
    sp = ctx["softmax_precision"]
    if sp is not None:
        scores = scores.astype(np_dtype(int(sp))).astype(np.promote_types(np_dtype(int(sp)), np.float32))
    probs = _safe_softmax(scores, masked_rows)
    if sp is not None:
        probs = probs.astype(np_dtype(int(sp)))
    probs = probs.astype(acc, copy=False)
    y = np.matmul(probs.reshape(b, hkv, g * sq, skv), v.astype(acc)).astype(acc, copy=False)
    y = y.reshape(b, hq, sq, -1)
    if rank == 3:
        y = y.transpose(0, 2, 1, 3).reshape(b, sq, -1)
    outs = [y.astype(dtype)]
    if ctx.num_outputs > 1:
        outs += [present_k, present_v]
    if ctx.num_outputs > 3:
        mode = int(ctx["qk_matmul_output_mode"])
        qk = {0: raw, 1: capped, 2: biased, 3: probs}.get(mode)
        if qk is None:
            raise ShapeError(f"Attention: unknown qk_matmul_output_mode {mode}")
        outs.append(np.broadcast_to(qk, (b, hq, sq, skv)).astype(dtype))
    return tuple(outs) if len(outs) > 1 else outs[0]


from . import nn_attention2  # noqa: E402,F401  (RotaryEmbedding, LinearAttention, FlexAttention)
