"""RotaryEmbedding, LinearAttention (recurrent linear / gated / delta rules) and FlexAttention (preview)."""
from __future__ import annotations

import numpy as np

from ..dtypes import np_dtype
from ..errors import KernelError, ShapeError
from ..ir import TensorType
from .attention import _heads
from .infer import same
from .nn import acc_dtype
from .registry import op


@op("RotaryEmbedding", since=1, attrs={"interleaved": 0, "num_heads": 0, "rotary_embedding_dim": 0},
    infer=same())
def _rotary(ctx, x, cos, sin, position_ids=None):
    acc = acc_dtype(x.dtype)
    if x.ndim == 4:  # [B, H, S, D] -> [B, S, H, D]
        xs = x.transpose(0, 2, 1, 3)
    elif x.ndim == 3:
        n = int(ctx["num_heads"] or 0)
        if n <= 0 or x.shape[2] % n:
            raise ShapeError(f"RotaryEmbedding: 3D input {x.shape} needs num_heads dividing its last dim")
        xs = x.reshape(x.shape[0], x.shape[1], n, -1)
    else:
        raise ShapeError(f"RotaryEmbedding: input must be rank 3 or 4, got {x.shape}")
    d = xs.shape[3]
    rd = int(ctx["rotary_embedding_dim"] or 0) or d
    if position_ids is not None:
        cos, sin = cos[position_ids], sin[position_ids]
    if cos.shape[-1] != rd // 2 or sin.shape[-1] != rd // 2:
        raise ShapeError(f"RotaryEmbedding: cos/sin caches {cos.shape}, {sin.shape} need last dim {rd // 2}")
    c = cos.astype(acc)[:, :, None, :]
    s = sin.astype(acc)[:, :, None, :]
    xr = xs[..., :rd].astype(acc)
    if ctx["interleaved"]:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
    else:
        x1, x2 = xr[..., :rd // 2], xr[..., rd // 2:]
    real, imag = c * x1 - s * x2, s * x1 + c * x2
    rot = np.stack([real, imag], axis=-1).reshape(xr.shape) if ctx["interleaved"] else \
        np.concatenate([real, imag], axis=-1)
    out = np.concatenate([rot.astype(x.dtype), xs[..., rd:]], axis=-1)
    return out.transpose(0, 2, 1, 3) if x.ndim == 4 else out.reshape(x.shape)


def _la_infer(ctx, q, k, v, past=None, decay=None, beta=None):
    hq, hkv = int(ctx["q_num_heads"]), int(ctx["kv_num_heads"])
    if q.shape is None or k.shape is None or v.shape is None:
        return TensorType(q.dtype, None), TensorType(q.dtype, None)
    b, t = q.shape[:2]
    dk = q.shape[2] // hq if isinstance(q.shape[2], int) else q.shape[2] / hq
    dv = v.shape[2] // hkv if isinstance(v.shape[2], int) else v.shape[2] / hkv
    state_dtype = q.dtype if past is None else past.dtype
    return TensorType(q.dtype, (b, t, hq * dv)), TensorType(state_dtype, (b, hkv, dk, dv))


@op("LinearAttention", since=1, attrs={"chunk_size": 64, "kv_num_heads": None, "q_num_heads": None,
                                       "scale": 0.0, "update_rule": "gated_delta"}, infer=_la_infer)
def _linear_attention(ctx, q, k, v, past=None, decay=None, beta=None):
    rule = ctx["update_rule"]
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise KernelError(f"LinearAttention: unknown update_rule {rule!r}")
    hq, hkv = int(ctx["q_num_heads"]), int(ctx["kv_num_heads"])
    if hq <= 0 or hkv <= 0 or hq % hkv:
        raise ShapeError(f"LinearAttention: q_num_heads {hq} must be a positive multiple of kv_num_heads "
                         f"{hkv}")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if gated != (decay is not None) or delta != (beta is not None):
        raise ShapeError(f"LinearAttention: update_rule {rule!r} needs decay={gated}, beta={delta}")
    f = np.float32 if q.dtype != np.float64 else np.float64
    q4, k4, v4 = (_heads(a, n).astype(f) for a, n in ((q, hq), (k, hkv), (v, hkv)))
    b, _, t, dk = q4.shape
    dv, g = v4.shape[3], hq // hkv
    if decay is not None:
        if decay.shape[-1] == hkv:
            decay = decay.reshape(b, t, hkv, 1).transpose(0, 2, 1, 3)
        elif decay.shape[-1] == hkv * dk:
            decay = _heads(decay, hkv)
        else:
            raise ShapeError(f"LinearAttention: decay {decay.shape} must end in {hkv} or {hkv * dk}")
        gate = np.exp(decay.astype(f))
    if beta is not None:
        if beta.shape[-1] not in (hkv, 1):
            raise ShapeError(f"LinearAttention: beta {beta.shape} must end in {hkv} or 1")
        beta = beta.reshape(b, t, beta.shape[-1], 1).transpose(0, 2, 1, 3).astype(f)
    if past is not None and past.shape != (b, hkv, dk, dv):
        raise ShapeError(f"LinearAttention: past_state {past.shape} must be {(b, hkv, dk, dv)}")
    state = np.zeros((b, hkv, dk, dv), f) if past is None else past.astype(f)
    scale = float(ctx["scale"] or 0.0) or 1.0 / np.sqrt(dk)
    qg = q4.reshape(b, hkv, g, t, dk)
    out = np.empty((b, hkv, g, t, dv), f)
    for i in range(t):  # the recurrence is sequential in time
        kt, vt = k4[:, :, i], v4[:, :, i]
        if gated:
            state = state * gate[:, :, i][..., None]
        if delta:
            vt = beta[:, :, i] * (vt - np.einsum("bhkv,bhk->bhv", state, kt))
        state = state + kt[..., :, None] * vt[..., None, :]
        out[:, :, :, i] = scale * np.einsum("bhgk,bhkv->bhgv", qg[:, :, :, i], state)
    y = out.reshape(b, hq, t, dv).transpose(0, 2, 1, 3).reshape(b, t, hq * dv)
    return y.astype(q.dtype), state.astype(q.dtype if past is None else past.dtype)


def _flex_infer(ctx, q, k, v):
    if q.shape is None or v.shape is None:
        return TensorType(v.dtype, None)
    return TensorType(v.dtype, tuple(q.shape[:3]) + (v.shape[3],))


@op("FlexAttention", since=1, domain="ai.onnx.preview",
    attrs={"prob_mod": None, "score_mod": None, "scale": None, "softmax_precision": None}, infer=_flex_infer)
def _flex_attention(ctx, q, k, v):
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ShapeError(f"FlexAttention needs rank-4 Q, K, V, got {q.shape}, {k.shape}, {v.shape}")
    b, hq, sq, e = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    if v.shape[1] != hkv or v.shape[2] != skv or k.shape[3] != e or hq % hkv:
        raise ShapeError(f"FlexAttention: inconsistent shapes Q {q.shape}, K {k.shape}, V {v.shape}")
    sp = ctx["softmax_precision"]
    cd = np_dtype(int(sp)) if sp is not None else (np.dtype(np.float64) if q.dtype == np.float64
                                                   else np.dtype(np.float32))
    scale = ctx["scale"]
    scale = 1.0 / np.sqrt(e) if scale is None else float(scale)
    mm = np.promote_types(cd, np.float32)
    rs = np.sqrt(np.float32(scale)).astype(mm)
    g = hq // hkv
    scores = np.matmul(q.astype(mm).reshape(b, hkv, g * sq, e) * rs,
                       np.swapaxes(k.astype(mm) * rs, -1, -2)).reshape(b, hq, sq, skv).astype(cd)
    if ctx["score_mod"] is not None:
        scores = np.asarray(ctx.run_graph(ctx["score_mod"], [scores])[0]).astype(cd)
    sf = scores.astype(mm)
    e_ = np.exp(sf - sf.max(axis=-1, keepdims=True))
    probs = (e_ / e_.sum(axis=-1, keepdims=True)).astype(cd)
    if ctx["prob_mod"] is not None:
        probs = np.asarray(ctx.run_graph(ctx["prob_mod"], [probs])[0]).astype(cd)
    y = np.matmul(probs.astype(mm).reshape(b, hkv, g * sq, skv), v.astype(mm)).reshape(b, hq, sq, -1)
    return y.astype(v.dtype)
