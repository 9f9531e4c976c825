"""Miscellaneous ops: NonMaxSuppression, TfIdfVectorizer and the string ops (StringNormalizer, StringSplit,
StringConcat, RegexFullMatch). Strings are object arrays of Python str."""
from __future__ import annotations

import re

import numpy as np

from ..errors import KernelError
from ..ir import TensorType
from .infer import broadcast_shapes
from .registry import op


def _scalar(v, default):
    return default if v is None or np.size(v) == 0 else np.ravel(v)[0]


def _corners(boxes, center):
    """[y1, x1, y2, x2] with y1 <= y2, x1 <= x2, from either box encoding."""
    b = boxes.astype(np.float64)
    if center:
        xc, yc, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)
    return np.stack([np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                     np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])], axis=1)


def _iou(box, others):
    ih = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    iw = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.where((ih > 0) & (iw > 0), ih * iw, 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    with np.errstate(all="ignore"):
        iou = inter / union
    # degenerate boxes never suppress anything
    return np.where((area > 0) & (areas > 0) & (union > 0) & (inter > 0), iou, 0.0)


@op("NonMaxSuppression", since=10, attrs={"center_point_box": 0})
def _nms(ctx, boxes, scores, max_out=None, iou_threshold=None, score_threshold=None):
    limit = int(_scalar(max_out, 0))
    iou_thr = float(_scalar(iou_threshold, 0.0))
    score_thr = None if score_threshold is None or np.size(score_threshold) == 0 else float(
        np.ravel(score_threshold)[0])
    selected = []
    if limit > 0:
        for b in range(scores.shape[0]):
            corners = _corners(boxes[b], ctx["center_point_box"])
            for c in range(scores.shape[1]):
                s = scores[b, c]
                cand = np.arange(s.shape[0]) if score_thr is None else np.nonzero(s > score_thr)[0]
                order = cand[np.lexsort((cand, -s[cand].astype(np.float64)))]  # score desc, index asc
                keep: list[int] = []
                for i in order:
                    if len(keep) >= limit:
                        break
                    if keep and np.any(_iou(corners[i], corners[keep]) > iou_thr):
                        continue
                    keep.append(int(i))
                selected.extend((b, c, i) for i in keep)
    return np.array(selected, dtype=np.int64).reshape(-1, 3)


def _tfidf_pool(ctx):
    """Map n-gram tuple -> output coordinate, from the pool/ngram_counts/ngram_indexes attributes."""
    pool = ctx.get("pool_strings") or ctx.get("pool_int64s")
    if pool is None:
        raise KernelError("TfIdfVectorizer needs pool_strings or pool_int64s")
    pool = list(pool)
    starts = list(ctx["ngram_counts"]) + [len(pool)]
    indexes = list(ctx["ngram_indexes"])
    table, k = {}, 0
    for n in range(1, len(starts)):
        for pos in range(starts[n - 1], starts[n], n):
            table[tuple(pool[pos:pos + n])] = k
            k += 1
    return table, indexes


TFIDF_ATTRS = {"max_gram_length": 1, "min_gram_length": 1, "max_skip_count": 0, "mode": "TF",
               "ngram_counts": (), "ngram_indexes": (), "pool_int64s": None, "pool_strings": None, "weights": None}


@op("TfIdfVectorizer", since=9, attrs=TFIDF_ATTRS)
def _tfidf(ctx, x):
    table, indexes = _tfidf_pool(ctx)
    width = max(indexes) + 1 if indexes else 0
    rows = x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)
    out = np.zeros((rows.shape[0], width), dtype=np.float32)
    lo, hi, skips = ctx["min_gram_length"], ctx["max_gram_length"], ctx["max_skip_count"]
    for r, row in enumerate(rows):
        items = [v if isinstance(v, str) else int(v) for v in row.tolist()]
        for n in range(lo, hi + 1):
            for skip in range(0, (skips if n > 1 else 0) + 1):  # 1-grams ignore skips: count once
                step = skip + 1
                for start in range(len(items) - (n - 1) * step):
                    k = table.get(tuple(items[start:start + (n - 1) * step + 1:step]))
                    if k is not None:
                        out[r, indexes[k]] += 1
    mode = ctx["mode"]
    weights = ctx.get("weights")
    if mode in ("IDF", "TFIDF"):
        if mode == "IDF":
            out = np.minimum(out, 1)
        if weights is not None:
            scale = np.zeros(width, dtype=np.float32)
            for k, w in enumerate(weights):
                scale[indexes[k]] = w
            out = out * scale
    return out if x.ndim > 1 else out[0]


@op("StringNormalizer", since=10, attrs={"case_change_action": "NONE", "is_case_sensitive": 0, "locale": "",
                                         "stopwords": ()})
def _string_normalizer(ctx, x):
    words = [str(w) for w in np.ravel(x)]
    stop = set(ctx.get("stopwords") or ())
    if ctx["is_case_sensitive"]:
        words = [w for w in words if w not in stop]
    else:
        lowered = {s.lower() for s in stop}
        words = [w for w in words if w.lower() not in lowered]
    action = ctx["case_change_action"]
    if action == "LOWER":
        words = [w.lower() for w in words]
    elif action == "UPPER":
        words = [w.upper() for w in words]
    if not words:
        words = [""]
    out = np.array(words, dtype=object)
    return out.reshape(1, -1) if x.ndim == 2 else out


@op("StringSplit", since=20, attrs={"delimiter": "", "maxsplit": None})
def _string_split(ctx, x):
    delim = ctx.get("delimiter") or None
    maxsplit = ctx.get("maxsplit")
    maxsplit = -1 if maxsplit is None else int(maxsplit)
    parts = [str(s).split(delim, maxsplit) for s in np.ravel(x)]
    width = max((len(p) for p in parts), default=0)
    y = np.full((len(parts), width), "", dtype=object)
    for i, p in enumerate(parts):
        y[i, :len(p)] = p
    z = np.array([len(p) for p in parts], dtype=np.int64)
    return y.reshape(x.shape + (width,)), z.reshape(x.shape)


@op("StringConcat", since=20, infer=lambda ctx, a, b: TensorType(a.dtype, broadcast_shapes(a.shape, b.shape)))
def _string_concat(ctx, a, b):
    a, b = np.broadcast_arrays(a, b)
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(a.shape):
        out[idx] = str(a[idx]) + str(b[idx])
    return out


@op("RegexFullMatch", since=20, attrs={"pattern": ""}, infer=lambda ctx, x: TensorType(np.bool_, x.shape))
def _regex_full_match(ctx, x):
    try:
        pattern = re.compile(ctx["pattern"])
    except re.error as e:
        raise KernelError(f"RegexFullMatch: invalid pattern {ctx['pattern']!r}: {e}") from None
    out = np.zeros(x.shape, dtype=np.bool_)
    for idx in np.ndindex(x.shape):
        out[idx] = pattern.fullmatch(str(x[idx])) is not None
    return out


from . import misc_image, misc_ml, misc_train  # noqa: E402,F401  (more op families of this module's owner)
