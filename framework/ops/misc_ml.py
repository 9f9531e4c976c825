"""Ops of domain ai.onnx.ml: LabelEncoder (v1, v2/v4), TreeEnsemble (v5), ArrayFeatureExtractor, Binarizer."""
from __future__ import annotations

import math

import numpy as np

from ..errors import KernelError
from .elementwise import _erf
from .registry import op

ML = "ai.onnx.ml"


@op("LabelEncoder", domain=ML, attrs={"classes_strings": (), "default_int64": -1,
                                      "default_string": "_Unused"})
def _label_encoder_v1(ctx, x):
    classes = list(ctx["classes_strings"])
    if x.dtype == object:
        index = {s: i for i, s in enumerate(classes)}
        out = [index.get(s, ctx["default_int64"]) for s in x.ravel()]
        return np.array(out, dtype=np.int64).reshape(x.shape)
    out = [classes[i] if 0 <= i < len(classes) else ctx["default_string"] for i in x.ravel().tolist()]
    return np.array(out, dtype=object).reshape(x.shape)


def _listed(ctx, kind):
    """(values, dtype) of the keys_* / values_* attribute that is set."""
    t = ctx.get(f"{kind}_tensor")
    if t is not None:
        return list(t.ravel().tolist()), t.dtype
    for suffix, dtype in (("floats", np.float32), ("int64s", np.int64), ("strings", object)):
        v = ctx.get(f"{kind}_{suffix}")
        if v is not None:
            return list(v), np.dtype(dtype)
    raise KernelError(f"LabelEncoder needs one {kind}_* attribute")


def _nan_key(v):
    return "<nan>" if isinstance(v, float) and math.isnan(v) else v


@op("LabelEncoder", since=2, domain=ML, attrs={"default_float": -0.0, "default_int64": -1,
                                                "default_string": "_Unused"})
def _label_encoder(ctx, x):
    keys, _ = _listed(ctx, "keys")
    values, vtype = _listed(ctx, "values")
    if len(keys) != len(values):
        raise KernelError(f"LabelEncoder: {len(keys)} keys but {len(values)} values")
    default = ctx.get("default_tensor")
    if default is not None:
        default = default.ravel()[0]
    elif vtype == object:
        default = ctx["default_string"]
    elif vtype.kind in "iu":
        default = ctx["default_int64"]
    else:
        default = ctx["default_float"]
    table = {_nan_key(k): v for k, v in zip(keys, values)}  # a repeated key: the last one wins
    items = x.ravel().tolist()
    if x.dtype.kind == "f":
        items = [float(v) for v in items]
    out = np.array([table.get(_nan_key(v), default) for v in items], dtype=vtype)
    return out.reshape(x.shape)


# post_transform codes: 0 NONE, 1 SOFTMAX, 2 LOGISTIC, 3 SOFTMAX_ZERO, 4 PROBIT


def _post_transform(y, kind):
    if kind == 1:
        e = np.exp(y - y.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if kind == 2:
        return 1.0 / (1.0 + np.exp(-y))
    if kind == 3:
        nz = y != 0
        e = np.where(nz, np.exp(y - np.max(np.where(nz, y, -np.inf), axis=1, keepdims=True)), 0.0)
        s = e.sum(axis=1, keepdims=True)
        return np.where(s > 0, e / np.where(s > 0, s, 1), 0.0)
    if kind == 4:
        return np.sqrt(2) * _erfinv(2 * np.clip(y, 1e-12, 1 - 1e-12) - 1)
    return y


def _erfinv(v):
    """erf^-1 by Newton steps on erf (probit is rare: clarity over speed)."""
    z = np.zeros_like(v, dtype=np.float64)
    for _ in range(60):  # Newton on erf(z) = v
        z = z - (_erf(z) - v) / (2 / np.sqrt(np.pi) * np.exp(-z * z))
    return z


def _branch(mode, x, split):
    if mode == 0:
        return x <= split
    if mode == 1:
        return x < split
    if mode == 2:
        return x >= split
    if mode == 3:
        return x > split
    if mode == 4:
        return x == split
    if mode == 5:
        return x != split
    raise KernelError(f"TreeEnsemble: unknown node mode {mode}")


@op("TreeEnsemble", since=5, domain=ML, attrs={
    "aggregate_function": 1, "post_transform": 0, "n_targets": None, "membership_values": None,
    "nodes_missing_value_tracks_true": None})
def _tree_ensemble(ctx, x):
    feat = np.asarray(ctx["nodes_featureids"], dtype=np.int64)
    splits = np.asarray(ctx["nodes_splits"], dtype=np.float64).ravel()
    modes = np.asarray(ctx["nodes_modes"]).ravel().astype(np.int64)
    t_ids, f_ids = np.asarray(ctx["nodes_truenodeids"]), np.asarray(ctx["nodes_falsenodeids"])
    t_leaf, f_leaf = np.asarray(ctx["nodes_trueleafs"]), np.asarray(ctx["nodes_falseleafs"])
    missing = np.asarray(ctx.get("nodes_missing_value_tracks_true") or [0] * len(feat), dtype=bool)
    members: dict[int, np.ndarray] = {}
    if ctx.get("membership_values") is not None:
        mv = np.asarray(ctx["membership_values"], dtype=np.float64).ravel()
        groups = np.split(mv, np.nonzero(np.isnan(mv))[0])
        sets = [g[~np.isnan(g)] for g in groups]
        for k, node in enumerate(np.nonzero(modes == 6)[0]):
            members[int(node)] = sets[k] if k < len(sets) else np.zeros(0)
    weights = np.asarray(ctx["leaf_weights"], dtype=np.float64).ravel()
    targets = np.asarray(ctx["leaf_targetids"], dtype=np.int64)
    n_targets, agg = ctx["n_targets"], ctx["aggregate_function"]
    xs = x.astype(np.float64).reshape(x.shape[0], -1)
    n = xs.shape[0]
    rows = np.arange(n)
    init = {0: 0.0, 1: 0.0, 2: np.inf, 3: -np.inf}[agg]
    y = np.full((n, n_targets), init)
    hit = np.zeros((n, n_targets), dtype=bool)
    for root in ctx["tree_roots"]:
        cur = np.full(n, root, dtype=np.int64)
        done = np.zeros(n, dtype=bool)
        for _ in range(len(feat) + 1):
            if done.all():
                break
            node = cur[~done]
            v = xs[rows[~done], feat[node]]
            cond = np.zeros(node.shape, dtype=bool)
            for m in np.unique(modes[node]):
                sel = modes[node] == m
                if m == 6:
                    cond[sel] = [np.isin(val, members.get(int(nd), ())) for val, nd in zip(v[sel], node[sel])]
                else:
                    cond[sel] = _branch(m, v[sel], splits[node[sel]])
            cond = np.where(np.isnan(v), missing[node], cond)
            nxt = np.where(cond, t_ids[node], f_ids[node])
            leaf = np.where(cond, t_leaf[node], f_leaf[node]).astype(bool)
            cur[~done] = nxt
            done[np.nonzero(~done)[0][leaf]] = True
        tid, w = targets[cur], weights[cur]
        if agg in (0, 1):
            np.add.at(y, (rows, tid), w)
        elif agg == 2:
            np.minimum.at(y, (rows, tid), w)
        else:
            np.maximum.at(y, (rows, tid), w)
        hit[rows, tid] = True
    if agg == 0:
        y /= len(ctx["tree_roots"])
    y = np.where(hit, y, 0.0)
    return _post_transform(y, ctx["post_transform"]).astype(x.dtype)


@op("ArrayFeatureExtractor", domain=ML)
def _array_feature_extractor(ctx, x, indices):
    index = np.asarray(indices, dtype=np.int64).ravel()
    if index.size and (index.max() >= x.shape[-1] or index.min() < -x.shape[-1]):
        raise KernelError(f"ArrayFeatureExtractor: index out of range for last dim {x.shape[-1]}")
    out = x[..., index]
    return out.reshape(1, -1) if x.ndim == 1 else out


@op("Binarizer", domain=ML, attrs={"threshold": 0.0}, infer=lambda ctx, x: x)
def _binarizer(ctx, x):
    return (x > ctx["threshold"]).astype(x.dtype)

