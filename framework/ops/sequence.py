"""Sequence and optional ops. Sequences are Python lists of arrays; an empty optional is None.

Kernels return 1-tuples so the backend keeps a list (or None) as one output instead of unpacking it.
Constant folding leaves sequence values to run time.
"""
from __future__ import annotations

import numpy as np

from ..errors import KernelError
from ..ir import OptionalType, SequenceType, TensorType
from .infer import norm_axis
from .registry import op

BOOL_SCALAR = TensorType(np.dtype(np.bool_), ())


def _position(pos, n, inclusive_end=False):
    """A sequence position, negative counting from the back; insertion may also target n."""
    p = int(np.asarray(pos).reshape(-1)[0])
    hi = n if inclusive_end else n - 1
    if not -n <= p <= hi:
        raise KernelError(f"sequence position {p} out of range for length {n}")
    return p + n if p < 0 else p


def _seq_type(t):
    return t if isinstance(t, SequenceType) else SequenceType(TensorType(None, None))


@op("SequenceEmpty", since=11, attrs={"dtype": 1},
    infer=lambda ctx: SequenceType(TensorType(_dtype(ctx["dtype"]), None)))
def _sequence_empty(ctx):
    return ([],)


def _dtype(code):
    from ..dtypes import np_dtype
    return np_dtype(code)


@op("SequenceConstruct", since=11,
    infer=lambda ctx, *xs: SequenceType(TensorType(xs[0].dtype, xs[0].shape if all(
        x.shape == xs[0].shape for x in xs) else None)))
def _sequence_construct(ctx, *xs):
    return (list(xs),)


@op("SequenceInsert", since=11, infer=lambda ctx, s, t, p=None: _seq_type(s))
def _sequence_insert(ctx, seq, tensor, position=None):
    out = list(seq)
    if len(seq) and seq[0].dtype != tensor.dtype:
        raise KernelError(f"SequenceInsert: tensor of {tensor.dtype} into a sequence of {seq[0].dtype}")
    out.insert(len(out) if position is None else _position(position, len(out), True), tensor)
    return (out,)


@op("SequenceAt", since=11,
    infer=lambda ctx, s, p: s.elem if isinstance(s, SequenceType) else TensorType(None, None))
def _sequence_at(ctx, seq, position):
    return seq[_position(position, len(seq))]


@op("SequenceErase", since=11, infer=lambda ctx, s, p=None: _seq_type(s))
def _sequence_erase(ctx, seq, position=None):
    out = list(seq)
    if not out:
        raise KernelError("SequenceErase on an empty sequence")
    del out[len(out) - 1 if position is None else _position(position, len(out))]
    return (out,)


@op("SequenceLength", since=11, infer=lambda ctx, s: TensorType(np.dtype(np.int64), ()))
def _sequence_length(ctx, seq):
    return np.array(len(seq), dtype=np.int64)


@op("ConcatFromSequence", since=11, attrs={"new_axis": 0})
def _concat_from_sequence(ctx, seq):
    if not seq:
        raise KernelError("ConcatFromSequence of an empty sequence")
    if ctx["new_axis"]:
        return np.stack(seq, axis=norm_axis(ctx["axis"], seq[0].ndim + 1))
    return np.concatenate(seq, axis=norm_axis(ctx["axis"], seq[0].ndim))


@op("SplitToSequence", since=11, attrs={"axis": 0, "keepdims": 1})
def _split_to_sequence(ctx, x, split=None):
    axis = norm_axis(ctx["axis"], x.ndim)
    n = x.shape[axis]
    if split is None:
        parts = [np.take(x, [i], axis=axis) for i in range(n)]
        if not ctx["keepdims"]:
            parts = [np.squeeze(p, axis=axis) for p in parts]
        return (parts,)
    split = np.asarray(split)
    if split.ndim == 0:
        size = int(split)
        if size <= 0:
            raise KernelError(f"SplitToSequence: split {size} must be positive")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sizes = [int(s) for s in split.reshape(-1)]
        if sum(sizes) != n:
            raise KernelError(f"SplitToSequence: sizes {sizes} do not sum to {n}")
    bounds = np.cumsum([0] + sizes)
    return ([np.take(x, np.arange(bounds[i], bounds[i + 1]), axis=axis) for i in range(len(sizes))],)


# ---------------------------------------------------------------- optionals

@op("Optional", since=15, infer=lambda ctx, x=None: OptionalType(x if x is not None else ctx.get("type")))
def _optional(ctx, x=None):
    return (x,)


@op("OptionalHasElement", since=15, infer=lambda ctx, x=None: BOOL_SCALAR)
def _optional_has_element(ctx, x=None):
    return np.array(x is not None)


def _infer_get(ctx, x):
    return x.elem if isinstance(x, OptionalType) else x


@op("OptionalGetElement", since=15, infer=_infer_get)
def _optional_get_element(ctx, x):
    if x is None:
        raise KernelError("OptionalGetElement of an empty optional")
    return (x,)
