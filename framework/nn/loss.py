"""Losses: CrossEntropyLoss (logits and integer labels) and MSELoss."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import ArgumentError, ShapeError
from ..ops.functional import check_reduction
from ..tensor import Tensor
from .cell import Cell


class CrossEntropyLoss(Cell):
    """Softmax cross entropy of logits [N, C] (or [..., C]) against int labels [N] (or [...])."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__()
        check_reduction("CrossEntropyLoss", reduction)
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def construct(self, logits, labels):
        if labels.dtype.kind not in "iu":
            raise ShapeError(f"CrossEntropyLoss: labels must be class indices (integers), got {labels.dtype}")
        if len(labels.shape) != len(logits.shape) - 1 or any(
            isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(labels.shape, logits.shape)
        ):
            raise ShapeError(
                f"CrossEntropyLoss: logits {tuple(logits.shape)} and labels {tuple(labels.shape)} "
                "do not match (labels must be logits' shape without the class dim)"
            )
        c = logits.shape[-1]
        # a label outside [0, C) matches no class in the one-hot target and silently gives that row loss 0
        # (there is no ignore index here). The check needs the labels' values, so it is done only when they
        # exist, i.e. eagerly (PyNative, including under value_and_grad's eager tape); a jit-traced label
        # tensor has no values at trace time and its graph cannot be checked per run here.
        if isinstance(labels, Tensor):
            data = labels._data if labels._trace is None or labels._trace.eager else None
        else:
            data = np.asarray(labels)
        if data is not None and isinstance(c, int) and data.size:
            lo, hi = int(data.min()), int(data.max())
            if lo < 0 or hi >= c:
                bad = lo if lo < 0 else hi
                raise ArgumentError(
                    f"CrossEntropyLoss: label {bad} is out of range for {c} classes (labels must be in "
                    f"[0, {c - 1}])"
                )
        return ops.cross_entropy(logits, labels, self.reduction, self.label_smoothing)


class MSELoss(Cell):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        check_reduction("MSELoss", reduction)
        self.reduction = reduction

    def construct(self, pred, target):
        if len(pred.shape) != len(target.shape):
            raise ShapeError(
                f"MSELoss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ"
            )
        return ops.mse_loss(pred, target, self.reduction)
