"""Reusable shape/dtype inference rules. Dims are ints or sympy expressions; None means unknown."""
from __future__ import annotations

import numpy as np
import sympy

from ..errors import ShapeError
from ..ir import TensorType


def broadcast_dims(a, b):
    """Multidirectional (numpy) broadcast of two dims, exact for symbols: either equal or one is 1."""
    if a == 1:
        return b
    if b == 1 or a == b:
        return a
    if isinstance(a, int) and isinstance(b, int):
        raise ShapeError(f"dims {a} and {b} do not broadcast")
    return sympy.Max(a, b)


def broadcast_shapes(*shapes):
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for s in shapes:
        for i, d in enumerate(s, start=rank - len(s)):
            out[i] = broadcast_dims(out[i], d)
    return tuple(out)


def same(index: int = 0):
    """Output has the type of input `index`."""
    def rule(ctx, *types):
        return types[index]
    return rule


def broadcast(ctx, *types):
    """Elementwise op over broadcast inputs; dtype of the first input."""
    return TensorType(types[0].dtype, broadcast_shapes(*(t.shape for t in types if t is not None)))


def broadcast_to(dtype):
    """Elementwise op over broadcast inputs with a fixed output dtype (compare ops give bool)."""
    def rule(ctx, *types):
        return TensorType(np.dtype(dtype), broadcast_shapes(*(t.shape for t in types if t is not None)))
    return rule


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"{what} {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def reduce_shape(shape, axes, keepdims: bool):
    """Shape after reducing `axes` (None = all axes)."""
    if shape is None:
        return None
    rank = len(shape)
    axes = range(rank) if axes is None else {norm_axis(int(a), rank) for a in axes}
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def numel(shape):
    n = 1
    for d in shape:
        n = n * d
    return n
