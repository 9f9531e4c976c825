"""Losses: CrossEntropyLoss (logits and integer labels) and MSELoss."""

from __future__ import annotations

from .. import ops
from ..errors import ShapeError
from .cell import Cell


class CrossEntropyLoss(Cell):
    """Softmax cross entropy of logits [N, C] (or [..., C]) against int labels [N] (or [...])."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ShapeError(f"CrossEntropyLoss: unknown reduction {reduction!r}")
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
        return ops.cross_entropy(logits, labels, self.reduction, self.label_smoothing)


class MSELoss(Cell):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def construct(self, pred, target):
        if len(pred.shape) != len(target.shape):
            raise ShapeError(
                f"MSELoss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ"
            )
        return ops.mse_loss(pred, target, self.reduction)
