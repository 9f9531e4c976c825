"""Shape and layout ops: Shape, Reshape, Concat, Transpose, Squeeze/Unsqueeze, Slice, Gather, Expand, Split...

The small shape ops (shape_op=True) also run on object arrays of sympy dims during shape inference, so an
exported transformer's Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain yields symbolic dims.
"""
from __future__ import annotations

import math
import operator

import numpy as np
import sympy

from ..errors import KernelError, ShapeError
from ..ir import TensorType
from .infer import broadcast_shapes, norm_axis, numel, same
from .registry import Fusion, op, single_output_kernel

INJ = Fusion.INJECTIVE
I64 = np.dtype(np.int64)
_BIG = 2 ** 31 - 1  # ends at or beyond this mean "to the end" whatever the dim


def vals(a) -> list:
    """A small int tensor (maybe object-dtype with sympy dims) as a list of python ints / sympy exprs."""
    return [v if isinstance(v, sympy.Basic) else int(v) for v in np.asarray(a).reshape(-1)]


def _rank(t) -> int:
    if t is None or t.shape is None:
        raise ValueError("unknown rank")
    return len(t.shape)


def _dim_ok(d) -> bool:
    return isinstance(d, (int, sympy.Basic))


def _eval_dim(d):
    """Integer-valued expressions (e.g. 64/4) become ints; others stay symbolic."""
    d = sympy.sympify(d)
    if d.is_Integer:
        return int(d)
    if d.is_number:
        raise ShapeError(f"dimension {d} is not an integer")
    return d


# ---------------------------------------------------------------- Shape, Size, Identity

def _shape_slice(ctx, rank):
    start, end = ctx.get("start", 0), ctx.get("end")
    return slice(start, end)


@op("Shape", fusion=Fusion.OPAQUE, attrs={"start": 0}, shape_op=True,
    infer=lambda ctx, x: TensorType(I64, (len(range(_rank(x))[_shape_slice(ctx, _rank(x))]),)))
def _shape(ctx, x):
    return np.array(x.shape[_shape_slice(ctx, x.ndim)], dtype=np.int64)


@op("Size", shape_op=True, infer=lambda ctx, x: TensorType(I64, ()))
def _size(ctx, x):
    return np.array(x.size, dtype=np.int64)


@op("Identity", fusion=INJ, infer=same(0), shape_op=True, grad=lambda b, n, g: g)
def _identity(ctx, x):
    return (x,)  # a tuple, so a sequence (list) or an empty optional (None) passes through whole


# ---------------------------------------------------------------- Reshape, Flatten

def reshape_target(in_shape, target, allowzero=False) -> list:
    """Resolve 0 (copy the input dim unless allowzero) and -1 (inferred) in a Reshape target."""
    out = [in_shape[i] if (not isinstance(d, sympy.Basic) and d == 0 and not allowzero) else d
           for i, d in enumerate(target)]
    minus = [i for i, d in enumerate(out) if not isinstance(d, sympy.Basic) and d == -1]
    if len(minus) > 1:
        raise ShapeError(f"Reshape target {list(target)} has more than one -1")
    if minus:
        known = numel(d for i, d in enumerate(out) if i != minus[0])
        total = numel(in_shape)
        if isinstance(known, int) and isinstance(total, int):
            if known == 0 or total % known:
                raise ShapeError(f"cannot reshape {list(in_shape)} to {list(target)}")
            out[minus[0]] = total // known
        else:
            out[minus[0]] = _eval_dim(sympy.sympify(total) / known)
    elif all(isinstance(d, int) for d in list(in_shape) + out) and numel(in_shape) != numel(out):
        raise ShapeError(f"cannot reshape {list(in_shape)} ({numel(in_shape)} elements) to {out}")
    return out


def _infer_reshape_from(ctx, x, target):
    if target is None:
        raise ValueError("target unknown")
    t = vals(target)
    if x.shape is None:  # unknown input rank: a target without 0 or -1 is the output shape, unchecked
        if any(not isinstance(d, sympy.Basic) and d in (0, -1) for d in t):
            raise ValueError("unknown input rank")
        return TensorType(x.dtype, list(t))
    return TensorType(x.dtype, reshape_target(x.shape, t, bool(ctx.get("allowzero", 0))))


def _reshape_grad(b, n, g):
    return [b.op("Reshape", g[0], b.shape(n.inputs[0]))] + [None] * (len(n.inputs) - 1)


@op("Reshape", fusion=INJ, attrs={"allowzero": 0}, shape_op=True, grad=_reshape_grad,
    infer=lambda ctx, x: _infer_reshape_from(ctx, x, ctx.get("shape")))
def _reshape_v1(ctx, x):
    return x.reshape(reshape_target(x.shape, vals(ctx["shape"]), False))


@op("Reshape", since=5, fusion=INJ, attrs={"allowzero": 0}, shape_op=True, grad=_reshape_grad,
    bind=lambda ctx: _bind_reshape(ctx), infer=lambda ctx, x, s: _infer_reshape_from(ctx, x, ctx.const(1)))
def _reshape(ctx, x, shape):
    if type(shape) is np.ndarray and shape.dtype.kind == "i":  # the run-time case: skip the per-dim Python
        t = shape.tolist()
        if 0 in t and not ctx["allowzero"] and len(t) <= x.ndim:  # 0 copies the input's dim at its index
            t = [x.shape[i] if d == 0 else d for i, d in enumerate(t)]
        if 0 not in t:  # without 0 entries ONNX's target means what numpy's does (-1 inferred)
            try:
                return x.reshape(t)
            except ValueError:
                pass  # the general path below raises the typed error
    return x.reshape(reshape_target(x.shape, vals(shape), bool(ctx["allowzero"])))


def _flatten_shape(shape, axis):
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis <= len(shape):
        raise ShapeError(f"Flatten axis {axis} out of range for rank {len(shape)}")
    return (numel(shape[:axis]), numel(shape[axis:]))


@op("Flatten", fusion=INJ, attrs={"axis": 1}, shape_op=True,
    infer=lambda ctx, x: TensorType(x.dtype, _flatten_shape(x.shape, ctx["axis"])))
def _flatten(ctx, x):
    return x.reshape(_flatten_shape(x.shape, ctx["axis"]))


# ---------------------------------------------------------------- Concat, Transpose, Expand

def _infer_concat(ctx, *xs):
    known = [t for t in xs if t is not None and t.shape is not None]
    if len(known) < len(xs):
        raise ValueError("unknown rank")
    rank = len(known[0].shape)
    axis = norm_axis(ctx["axis"], rank)
    out = list(known[0].shape)
    for t in known[1:]:
        if len(t.shape) != rank:
            raise ShapeError(f"Concat inputs have ranks {rank} and {len(t.shape)}")
        for i, d in enumerate(t.shape):
            if i == axis:
                continue
            if isinstance(d, int) and isinstance(out[i], int) and d != out[i]:
                raise ShapeError(f"Concat inputs differ in dim {i}: {out[i]} vs {d}")
            if isinstance(d, int):
                out[i] = d  # a static dim is more precise than a symbol it must equal
    out[axis] = sum((t.shape[axis] for t in known), 0)
    return TensorType(known[0].dtype, out)


def _concat_grad(b, n, g):
    """Each input's slice of g along the axis; offsets stay constants while the dims are static."""
    axis = norm_axis(n.attrs.get("axis", 0), n.inputs[0].type.rank)
    start, out = 0, []

    def val(i):
        return b.ints([i]) if isinstance(i, int) else i
    for x in n.inputs:
        d = x.type.shape[axis]
        if isinstance(start, int) and isinstance(d, int):
            end = start + d
        else:  # the symbolic operand first, so the builder can track the sum's value
            end = b.op("Add", b.dim(x, axis), val(start)) if isinstance(start, int) else \
                b.op("Add", start, b.dim(x, axis))
        out.append(b.op("Slice", g[0], val(start), val(end), b.ints([axis])))
        start = end
    return out


@op("Concat", fusion=INJ, attrs={"axis": 0}, shape_op=True, infer=_infer_concat, grad=_concat_grad)
def _concat(ctx, *xs):
    return np.concatenate(xs, axis=ctx["axis"])


def _perm(ctx, rank):
    perm = ctx.get("perm")
    return tuple(range(rank))[::-1] if perm is None else tuple(int(p) % rank if rank else 0 for p in perm)


def _transpose_grad(b, n, g):
    perm = _perm(b.attrs(n), n.inputs[0].type.rank)
    return [b.op("Transpose", g[0], perm=[int(i) for i in np.argsort(perm)])]


def _bind_transpose(ctx):
    """A node's Transpose with its permutation worked out once per input rank (a view, no copy)."""
    perms: dict = {}

    def direct(x):
        perm = perms.get(x.ndim)
        if perm is None:
            perm = perms[x.ndim] = _perm(ctx, x.ndim)
        return np.asarray(x).transpose(perm)

    def specialize(x):
        """For later calls on arrays of x's shape (the executor's shape cache): the array's own transpose."""
        return operator.methodcaller("transpose", _perm(ctx, x.ndim)) if type(x) is np.ndarray else direct
    return single_output_kernel(direct, specialize)


def _bind_reshape(ctx):
    """Reshape (opset 5+) with a specialisation: where the input shape and the shape operand are fixed (a
    repeated input-shape signature of a graph whose shapes follow its inputs'), the target is too."""
    def direct(x, shape):
        return _reshape(ctx, x, shape)

    def specialize(x, shape):
        if type(x) is not np.ndarray:
            return direct
        target = direct(x, shape).shape
        return lambda x, shape: x.reshape(target)
    return single_output_kernel(direct, specialize)


@op("Transpose", fusion=INJ, shape_op=True, grad=_transpose_grad, bind=_bind_transpose,
    infer=lambda ctx, x: TensorType(x.dtype, tuple(x.shape[p] for p in _perm(ctx, _rank(x)))))
def _transpose(ctx, x):
    return np.transpose(x, _perm(ctx, x.ndim))


def _infer_expand(ctx, x, s):
    target = ctx.const(1)
    if target is None or x.shape is None:
        raise ValueError("target unknown")
    return TensorType(x.dtype, broadcast_shapes(x.shape, tuple(vals(target))))


@op("Expand", since=8, fusion=Fusion.BROADCAST, shape_op=True, infer=_infer_expand)
def _expand(ctx, x, shape):
    out = np.broadcast_shapes(x.shape, tuple(vals(shape)))
    return np.array(np.broadcast_to(x, out))


# ---------------------------------------------------------------- Squeeze, Unsqueeze

def _unsqueeze_shape(shape, axes):
    rank = len(shape) + len(axes)
    axes = sorted(norm_axis(a, rank) for a in axes)
    if len(set(axes)) != len(axes):
        raise ShapeError(f"Unsqueeze axes {axes} repeat")
    out, it = [], iter(shape)
    for i in range(rank):
        out.append(1 if i in axes else next(it))
    return out


def _squeeze_shape(shape, axes):
    if axes is None:
        if any(not isinstance(d, int) for d in shape):
            raise ValueError("cannot tell whether a symbolic dim is 1")
        return [d for d in shape if d != 1]
    axes = {norm_axis(a, len(shape)) for a in axes}
    for a in axes:
        if isinstance(shape[a], int) and shape[a] != 1:
            raise ShapeError(f"Squeeze axis {a} has size {shape[a]}, not 1")
    return [d for i, d in enumerate(shape) if i not in axes]


def _axes_const(ctx, i):
    c = ctx.const(i)
    return None if c is None else vals(c)


@op("Unsqueeze", fusion=INJ, shape_op=True,
    infer=lambda ctx, x: TensorType(x.dtype, _unsqueeze_shape(x.shape, ctx["axes"])))
def _unsqueeze_v1(ctx, x):
    return x.reshape(_unsqueeze_shape(x.shape, ctx["axes"]))


def _infer_unsqueeze13(ctx, x, axes):
    a = _axes_const(ctx, 1)
    if a is None:
        raise ValueError("axes unknown")
    return TensorType(x.dtype, _unsqueeze_shape(x.shape, a))


@op("Unsqueeze", since=13, fusion=INJ, shape_op=True, infer=_infer_unsqueeze13)
def _unsqueeze(ctx, x, axes):
    if type(axes) is np.ndarray and axes.dtype.kind == "i":
        try:
            return np.expand_dims(x, tuple(axes.reshape(-1).tolist()))
        except ValueError:  # a repeated or out-of-range axis: the general path raises the typed error
            pass
    return x.reshape(_unsqueeze_shape(x.shape, vals(axes)))


@op("Squeeze", fusion=INJ, shape_op=True,
    infer=lambda ctx, x: TensorType(x.dtype, _squeeze_shape(x.shape, ctx.get("axes"))))
def _squeeze_v1(ctx, x):
    return x.reshape(_squeeze_shape(x.shape, ctx.get("axes")))


def _infer_squeeze13(ctx, x, axes=None):
    a = _axes_const(ctx, 1) if axes is not None else None
    if axes is not None and a is None:
        raise ValueError("axes unknown")
    return TensorType(x.dtype, _squeeze_shape(x.shape, a))


@op("Squeeze", since=13, fusion=INJ, shape_op=True, infer=_infer_squeeze13)
def _squeeze(ctx, x, axes=None):
    return x.reshape(_squeeze_shape(x.shape, None if axes is None else vals(axes)))


# ---------------------------------------------------------------- Slice

def _slice_len(dim, start, end, step):
    """Output length of one sliced axis with ONNX's clamping; exact for ints. For symbolic dims, starts
    and ends are assumed in range (as in any well-formed model) except for the usual 'to the end' ends."""
    if step == 0:
        raise ShapeError("Slice step cannot be 0")
    if all(isinstance(v, int) for v in (dim, start, end)):
        return len(range(dim)[slice(start, end, step)])
    if step > 0:
        s = start + dim if _neg(start) else start
        e = dim if _int(end) and end >= _BIG else end + dim if _neg(end) else \
            end if not (_int(end) and not _int(dim)) else sympy.Min(end, dim)
        n = (e - s) if step == 1 else sympy.ceiling(sympy.sympify(e - s) / step)
    else:
        s = start + dim if _neg(start) else start if _int(start) and _int(dim) or not _int(start) else \
            sympy.Min(start, dim - 1)
        e = -1 if _int(end) and end <= -_BIG else end + dim if _neg(end) else end
        n = (s - e) if step == -1 else sympy.ceiling(sympy.sympify(s - e) / -step)
    return _eval_dim(n)


def _int(v):
    return isinstance(v, int)


def _neg(v):
    return isinstance(v, int) and v < 0


def _nonneg(e):
    return bool(sympy.sympify(e).is_nonnegative)


def _slice_params(rank, starts, ends, axes, steps):
    axes = list(range(len(starts))) if axes is None else [norm_axis(a, rank) for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ShapeError("Slice starts, ends, axes and steps differ in length")
    return axes, steps


def _slice_kernel(x, starts, ends, axes, steps):
    axes, steps = _slice_params(x.ndim, starts, ends, axes, steps)
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise KernelError("Slice step cannot be 0")
        index[a] = slice(s, e, st)  # python slicing clamps exactly as ONNX specifies
    return x[tuple(index)]


def _slice_infer(x, starts, ends, axes, steps):
    axes, steps = _slice_params(_rank(x), starts, ends, axes, steps)
    out = list(x.shape)
    for a, s, e, st in zip(axes, starts, ends, steps):
        out[a] = _slice_len(out[a], s, e, st)
    return TensorType(x.dtype, out)


@op("Slice", fusion=INJ, shape_op=True,
    infer=lambda ctx, x: _slice_infer(x, list(ctx["starts"]), list(ctx["ends"]), ctx.get("axes"), None))
def _slice_v1(ctx, x):
    return _slice_kernel(x, list(ctx["starts"]), list(ctx["ends"]), ctx.get("axes"), None)


def _infer_slice10(ctx, x, *rest):
    consts = [None if i >= len(rest) + 1 or rest[i - 1] is None else ctx.const(i) for i in range(1, 5)]
    for i, c in enumerate(consts):
        if c is None and i < len(rest) and rest[i] is not None:
            raise ValueError("slice parameters unknown")
    starts, ends, axes, steps = (None if c is None else vals(c) for c in consts)
    if any(not isinstance(s, int) for s in (axes or []) + (steps or [])):
        raise ValueError("symbolic axes or steps")
    return _slice_infer(x, starts, ends, axes, steps)


@op("Slice", since=10, fusion=INJ, shape_op=True, infer=_infer_slice10)
def _slice(ctx, x, starts, ends, axes=None, steps=None):
    return _slice_kernel(x, vals(starts), vals(ends), None if axes is None else vals(axes),
                         None if steps is None else vals(steps))


# ---------------------------------------------------------------- Gather

def _infer_gather(ctx, data, idx):
    axis = norm_axis(ctx["axis"], _rank(data))
    return TensorType(data.dtype, data.shape[:axis] + tuple(idx.shape) + data.shape[axis + 1:])


def _gather_grad(b, n, g):
    """Scatter-add g into zeros of data's shape, the indices flattened and broadcast along the other axes."""
    data, idx = n.inputs
    r = data.type.rank
    axis = norm_axis(n.attrs.get("axis", 0), r)
    if data.type.is_static:
        target = b.ints(data.type.shape[:axis] + (-1,) + data.type.shape[axis + 1:])
    else:
        parts = ([b.op("Shape", data, end=axis)] if axis else []) + [b.ints([-1])]
        parts += [b.op("Shape", data, start=axis + 1)] if axis + 1 < r else []
        target = b.op("Concat", *parts, axis=0) if len(parts) > 1 else parts[0]
    g2 = b.op("Reshape", g[0], target)
    flat = b.op("Reshape", idx, b.ints([1] * axis + [-1] + [1] * (r - axis - 1)))
    flat = b.op("Expand", flat, b.shape(g2))
    return [b.op("ScatterElements", b.fill(data, 0), flat, g2, axis=axis, reduction="add"), None]


def _take(data, indices, axis):
    try:  # numpy's take accepts [-n, n) as ONNX does and checks the range itself
        return data.take(indices, axis=axis)
    except IndexError:
        n = data.shape[axis]
        raise KernelError(f"Gather index out of range [{-n}, {n - 1}] on axis {axis}") from None


def _bind_gather(ctx):
    """Gather with a specialisation for fixed shapes (an embedding lookup per decoding step): the axis
    worked out once, and int64 index arrays taken as they are."""
    def direct(data, indices):
        return _gather(ctx, data, indices)

    def specialize(data, indices):
        if type(data) is not np.ndarray or type(indices) is not np.ndarray or indices.dtype != np.int64:
            return direct
        axis = norm_axis(ctx["axis"], data.ndim)
        return lambda data, indices: _take(data, indices, axis) if indices.dtype == np.int64 else \
            direct(data, indices)
    return single_output_kernel(direct, specialize)


@op("Gather", fusion=INJ, attrs={"axis": 0}, shape_op=True, infer=_infer_gather, grad=_gather_grad,
    bind=_bind_gather)
def _gather(ctx, data, indices):
    return _take(np.asarray(data), np.asarray(indices, dtype=np.int64), norm_axis(ctx["axis"], np.ndim(data)))


# ---------------------------------------------------------------- ConstantOfShape, Range

def _cos_value(ctx):
    v = ctx.get("value")
    return np.zeros((), np.float32) if v is None else np.asarray(v).reshape(())


def _infer_cos(ctx, s):
    shape = ctx.const(0)
    if shape is None:
        if s is None or s.shape is None or not isinstance(s.shape[0], int):
            raise ValueError("shape unknown")
        raise ValueError("values of the shape unknown")
    return TensorType(_cos_value(ctx).dtype, vals(shape))


@op("ConstantOfShape", since=9, shape_op=True, infer=_infer_cos)
def _constant_of_shape(ctx, shape):
    dims = vals(shape)
    if any(not isinstance(d, int) or d < 0 for d in dims):
        raise KernelError(f"ConstantOfShape: bad shape {dims}")
    v = _cos_value(ctx)
    return np.full(dims, v, dtype=v.dtype)


def _range_len(start, limit, delta):
    if all(isinstance(v, (int, float)) for v in (start, limit, delta)):
        return max(int(math.ceil((limit - start) / delta)), 0)
    n = sympy.ceiling((sympy.sympify(limit) - start) / delta)
    return _eval_dim(n if _nonneg(n) else sympy.Max(n, 0))


def _scalar(a):
    v = np.asarray(a).reshape(-1)[0]
    if isinstance(v, sympy.Basic):
        return v
    return int(v) if np.asarray(a).dtype.kind in "iu" or isinstance(v, int) else float(v)


def _infer_range(ctx, start, limit, delta):
    cs = [ctx.const(i) for i in range(3)]
    if any(c is None for c in cs):
        raise ValueError("range bounds unknown")
    return TensorType(start.dtype, (_range_len(*(_scalar(c) for c in cs)),))


@op("Range", since=11, shape_op=True, attrs={"stash_type": 1}, infer=_infer_range)
def _range(ctx, start, limit, delta):
    dtype = np.asarray(start).dtype
    s, l, d = (_scalar(a) for a in (start, limit, delta))
    if any(isinstance(v, sympy.Basic) for v in (s, l, d)):
        raise KernelError("Range over symbolic bounds")
    n = _range_len(s, l, d)
    if dtype.kind in "iu":
        return (s + np.arange(n, dtype=np.int64) * d).astype(dtype)
    # low-precision floats accumulate in float32 (stash_type=1); others in their own precision
    work = np.float32 if dtype.itemsize < 4 else dtype
    return (np.asarray(s, work) + np.arange(n, dtype=work) * np.asarray(d, work)).astype(dtype)


# ---------------------------------------------------------------- Split, Tile

def _split_sizes(dim, n_out, split, num_outputs):
    if split is not None:
        if sum(split) != dim and all(isinstance(v, int) for v in split + [dim]):
            raise ShapeError(f"Split sizes {split} do not sum to {dim}")
        return split
    n = num_outputs or n_out
    if isinstance(dim, int):
        chunk = -(-dim // n)
        if num_outputs is None and dim % n:
            raise ShapeError(f"cannot split {dim} into {n} equal parts")
        return [min(chunk, max(dim - i * chunk, 0)) for i in range(n)]
    return [_eval_dim(sympy.sympify(dim) / n)] * n


def _split(x, axis, split, n_out, num_outputs=None):
    axis = norm_axis(axis, x.ndim)
    sizes = _split_sizes(x.shape[axis], n_out, split, num_outputs)
    bounds = np.cumsum([0] + list(sizes))
    return tuple(np.take(x, np.arange(bounds[i], bounds[i + 1]), axis=axis) if x.dtype == object else
                 x[(slice(None),) * axis + (slice(int(bounds[i]), int(bounds[i + 1])),)]
                 for i in range(len(sizes)))


def _split_types(x, axis, split, n_out, num_outputs=None):
    axis = norm_axis(axis, _rank(x))
    sizes = _split_sizes(x.shape[axis], n_out, split, num_outputs)
    return tuple(TensorType(x.dtype, x.shape[:axis] + (s,) + x.shape[axis + 1:]) for s in sizes)


def _split_input(ctx, i):
    c = ctx.const(i)
    return None if c is None else vals(c)


def _attr_split(ctx):
    s = ctx.get("split")
    return None if s is None or len(s) == 0 else [int(v) for v in s]


@op("Split", fusion=INJ, attrs={"axis": 0}, shape_op=True,
    infer=lambda ctx, x, s=None: _split_types(x, ctx["axis"], _attr_split(ctx) if s is None else
                                              _need(_split_input(ctx, 1)), ctx.num_outputs))
def _split_v1(ctx, x, split=None):
    return _split(x, ctx["axis"], _attr_split(ctx) if split is None else vals(split), ctx.num_outputs)


def _need(v):
    if v is None:
        raise ValueError("value unknown")
    return v


def _infer_split13(ctx, x, s=None):
    split = None if s is None else _need(_split_input(ctx, 1))
    return _split_types(x, ctx["axis"], split, ctx.num_outputs, ctx.get("num_outputs"))


@op("Split", since=13, fusion=INJ, attrs={"axis": 0}, shape_op=True, infer=_infer_split13)
def _split13(ctx, x, split=None):
    return _split(x, ctx["axis"], None if split is None else vals(split), ctx.num_outputs,
                  ctx.get("num_outputs"))


def _infer_tile(ctx, x, reps):
    r = _need(ctx.const(1))
    return TensorType(x.dtype, [d * k for d, k in zip(x.shape, vals(r))])


@op("Tile", fusion=INJ, infer=_infer_tile, shape_op=True)
def _tile(ctx, x, repeats):
    return np.tile(x, vals(repeats))


from . import tensor_index, tensor_layout, tensor_resize  # noqa: E402,F401  (more ops of this family)
