"""Random ops (RandomUniform/Normal[Like], Bernoulli, Multinomial: never folded, seeded by `seed` when given)
and the optimizers of domain ai.onnx.preview.training (Adagrad, Momentum, Adam)."""
from __future__ import annotations

import numpy as np

from ..dtypes import np_dtype
from ..errors import KernelError
from ..ir import TensorType
from .registry import op

TRAIN = "ai.onnx.preview.training"


def _rng(ctx):
    seed = ctx.get("seed")
    # a seeded node draws the same values on every run, as a freshly seeded generator would
    return np.random.default_rng(None if seed is None else int(np.float32(seed).view(np.uint32)))


def _out_dtype(ctx, like=None, default=1):
    dt = ctx.get("dtype")
    if dt is not None:
        return np_dtype(dt)
    return like.dtype if like is not None else np_dtype(default)


@op("RandomUniform", attrs={"dtype": 1, "high": 1.0, "low": 0.0, "seed": None, "shape": ()},
    deterministic=False, infer=lambda ctx: TensorType(np_dtype(ctx["dtype"]), tuple(ctx["shape"])))
def _random_uniform(ctx):
    return _rng(ctx).uniform(ctx["low"], ctx["high"], tuple(ctx["shape"])).astype(np_dtype(ctx["dtype"]))


@op("RandomNormal", attrs={"dtype": 1, "mean": 0.0, "scale": 1.0, "seed": None, "shape": ()},
    deterministic=False, infer=lambda ctx: TensorType(np_dtype(ctx["dtype"]), tuple(ctx["shape"])))
def _random_normal(ctx):
    return _rng(ctx).normal(ctx["mean"], ctx["scale"], tuple(ctx["shape"])).astype(np_dtype(ctx["dtype"]))


def _like_infer(ctx, x):
    return TensorType(_out_dtype(ctx) if ctx.get("dtype") is not None else x.dtype, x.shape)


@op("RandomUniformLike", attrs={"dtype": None, "high": 1.0, "low": 0.0, "seed": None}, deterministic=False,
    infer=_like_infer)
def _random_uniform_like(ctx, x):
    return _rng(ctx).uniform(ctx["low"], ctx["high"], x.shape).astype(_out_dtype(ctx, x))


@op("RandomNormalLike", attrs={"dtype": None, "mean": 0.0, "scale": 1.0, "seed": None}, deterministic=False,
    infer=_like_infer)
def _random_normal_like(ctx, x):
    return _rng(ctx).normal(ctx["mean"], ctx["scale"], x.shape).astype(_out_dtype(ctx, x))


@op("Bernoulli", since=15, attrs={"dtype": None, "seed": None}, deterministic=False, infer=_like_infer)
def _bernoulli(ctx, p):
    return (_rng(ctx).uniform(0.0, 1.0, p.shape) < p).astype(_out_dtype(ctx, p))


@op("Multinomial", since=7, attrs={"dtype": 6, "sample_size": 1, "seed": None}, deterministic=False)
def _multinomial(ctx, logits):
    if logits.ndim != 2:
        raise KernelError(f"Multinomial input must be [batch, classes], got shape {logits.shape}")
    lg = logits.astype(np.float64)
    probs = np.exp(lg - lg.max(axis=1, keepdims=True))
    cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    u = _rng(ctx).uniform(0.0, 1.0, (logits.shape[0], ctx["sample_size"]))
    idx = np.minimum((u[:, :, None] >= cdf[:, None, :]).sum(axis=2), logits.shape[1] - 1)
    return idx.astype(np_dtype(ctx["dtype"]))


def _split(tensors, groups):
    n = len(tensors) // groups
    if n * groups != len(tensors):
        raise KernelError(f"optimizer expects {groups} groups of tensors, got {len(tensors)} inputs")
    return [tensors[i * n:(i + 1) * n] for i in range(groups)]


@op("Adagrad", domain=TRAIN, attrs={"decay_factor": 0.0, "epsilon": 0.0, "norm_coefficient": 0.0})
def _adagrad(ctx, r, t, *tensors):
    xs, gs, hs = _split(tensors, 3)
    rate = float(r) / (1 + float(t) * ctx["decay_factor"])
    new_x, new_h = [], []
    for x, g, h in zip(xs, gs, hs):
        g = ctx["norm_coefficient"] * x + g
        h2 = h + g * g
        new_x.append((x - rate * g / (np.sqrt(h2) + ctx["epsilon"])).astype(x.dtype))
        new_h.append(h2.astype(h.dtype))
    return tuple(new_x + new_h)


@op("Momentum", domain=TRAIN, attrs={"alpha": 0.0, "beta": 0.0, "mode": "standard", "norm_coefficient": 0.0})
def _momentum(ctx, r, t, *tensors):
    xs, gs, vs = _split(tensors, 3)
    alpha, beta = ctx["alpha"], ctx["beta"] if int(t) > 0 else 1.0  # the first step takes the whole gradient
    new_x, new_v = [], []
    for x, g, v in zip(xs, gs, vs):
        g = ctx["norm_coefficient"] * x + g
        v2 = alpha * v + beta * g
        step = v2 if ctx["mode"] == "standard" else g + alpha * v2
        new_x.append((x - float(r) * step).astype(x.dtype))
        new_v.append(v2.astype(v.dtype))
    return tuple(new_x + new_v)


@op("Adam", domain=TRAIN, attrs={"alpha": 0.9, "beta": 0.999, "epsilon": 1e-6, "norm_coefficient": 0.0,
                                 "norm_coefficient_post": 0.0})
def _adam(ctx, r, t, *tensors):
    xs, gs, vs, hs = _split(tensors, 4)
    alpha, beta, steps = ctx["alpha"], ctx["beta"], int(t)
    rate = float(r) * np.sqrt(1 - beta ** steps) / (1 - alpha ** steps) if steps > 0 else float(r)
    new_x, new_v, new_h = [], [], []
    for x, g, v, h in zip(xs, gs, vs, hs):
        g = ctx["norm_coefficient"] * x + g
        v2 = alpha * v + (1 - alpha) * g
        h2 = beta * h + (1 - beta) * g * g
        x2 = (1 - ctx["norm_coefficient_post"]) * (x - rate * (v2 / (np.sqrt(h2) + ctx["epsilon"])))
        new_x.append(x2.astype(x.dtype))
        new_v.append(v2.astype(v.dtype))
        new_h.append(h2.astype(h.dtype))
    return tuple(new_x + new_v + new_h)
