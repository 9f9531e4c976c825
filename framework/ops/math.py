"""Linear algebra ops: MatMul, Gemm, Einsum, Det. MatMul/Gemm are on every benchmark's hot path: they call
BLAS directly on the input dtype, never upcast, and only copy where the dtype must change."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import TensorType
from . import gemm
from .infer import broadcast_shapes
from .registry import Fusion, op, single_output_kernel

OUT = Fusion.OUT_FUSABLE


def _same_dim(a, b, what):
    """Check two contraction dims agree where both are known ints; prefer the int one."""
    if isinstance(a, int) and isinstance(b, int) and a != b:
        raise ShapeError(f"{what}: inner dims {a} and {b} differ")
    return a if isinstance(a, int) else b


def matmul_shape(sa, sb):
    """numpy matmul output shape on symbolic dims, with the 1-D promotion rules."""
    if sa is None or sb is None:
        return None
    if len(sa) == 0 or len(sb) == 0:
        raise ShapeError("MatMul inputs must have rank >= 1")
    a = (1,) + tuple(sa) if len(sa) == 1 else tuple(sa)
    b = tuple(sb) + (1,) if len(sb) == 1 else tuple(sb)
    _same_dim(a[-1], b[-2], "MatMul")
    out = broadcast_shapes(a[:-2], b[:-2]) + (a[-2], b[-1])
    if len(sb) == 1:
        out = out[:-1]
    if len(sa) == 1:
        out = out[:-2] + out[-1:] if len(sb) != 1 else out[:-1]
    return out


def _infer_matmul(ctx, a, b):
    return TensorType(a.dtype, matmul_shape(a.shape, b.shape))


def _swap_last(b, v):
    """Transpose of the last two axes (v has rank >= 2)."""
    r = v.type.rank
    return b.op("Transpose", v, perm=list(range(r - 2)) + [r - 1, r - 2])


def _linear_grad(b, a, c, g):
    """x [..., K] @ W [K, N] (a linear layer): both gradients as single 2-D GEMMs over the flattened rows,
    so dW is one BLAS call instead of a batched matmul followed by a reduction over the batch."""
    k, m = c.type.shape
    flat_a = b.op("Reshape", a, b.ints([-1, k]))
    flat_g = b.op("Reshape", g, b.ints([-1, m]))
    da = b.op("Reshape", b.op("Gemm", flat_g, c, transB=1), b.shape(a)) if b.needs(a) else None
    dc = b.op("Gemm", flat_a, flat_g, transA=1) if b.needs(c) else None
    return [da, dc]


def _matmul_grad(b, n, gouts):
    """dA = g @ B^T, dB = A^T @ g, on 1-D operands promoted to 2-D, summed over broadcast batch dims."""
    a, c = n.inputs
    g, a2, c2 = gouts[0], a, c
    if a.type.rank is not None and a.type.rank >= 3 and c.type.rank == 2 and \
            all(isinstance(d, int) for d in c.type.shape):
        return _linear_grad(b, a, c, g)
    if c.type.rank == 1:
        c2, g = b.op("Unsqueeze", c, b.ints([1])), b.op("Unsqueeze", g, b.ints([-1]))
    if a.type.rank == 1:
        a2, g = b.op("Unsqueeze", a, b.ints([0])), b.op("Unsqueeze", g, b.ints([-2]))
    da = b.sum_to(b.op("MatMul", g, _swap_last(b, c2)), a2) if b.needs(a) else None
    dc = b.sum_to(b.op("MatMul", _swap_last(b, a2), g), c2) if b.needs(c) else None
    if da is not None and a.type.rank == 1:
        da = b.op("Squeeze", da, b.ints([0]))
    if dc is not None and c.type.rank == 1:
        dc = b.op("Squeeze", dc, b.ints([1]))
    return [da, dc]


def _bind_matmul(ctx):
    """MatMul with a specialisation for fixed shapes (each step of a decoding loop): below our GEMM's size
    the numpy call _matmul would choose, without its per-call checks (a third of a small product's time)."""
    def direct(a, b):
        return _matmul(ctx, a, b)

    def specialize(a, b):
        if type(a) is not np.ndarray or type(b) is not np.ndarray or a.dtype != b.dtype or a.dtype == object \
                or min(a.ndim, b.ndim) == 0 or a.size * b.shape[-1] > gemm.BLAS_ONE_THREAD_MACS:
            return direct   # (scalars: the general kernel's error)
        if a.ndim == 2 and b.ndim == 2:
            return np.dot
        if a.ndim > 2 and b.ndim == 2:
            rows, out = (-1, a.shape[-1]), a.shape[:-1] + b.shape[1:]
            return lambda a, b: np.dot(a.reshape(rows), b).reshape(out)
        return np.matmul
    return single_output_kernel(direct, specialize)


@op("MatMul", fusion=OUT, infer=_infer_matmul, grad=_matmul_grad, bind=_bind_matmul)
def _matmul(ctx, a, b):
    if a.dtype != b.dtype and a.dtype != object:
        b = b.astype(a.dtype)
    if (out := gemm.matmul(a, b)) is not None:
        return out
    if b.ndim == 2 and a.ndim == 2:
        out = np.dot(a, b)  # the same GEMM as np.matmul with a third less call overhead (small matrices)
    elif a.ndim > 2 and b.ndim == 2 and a.flags.c_contiguous:
        # [..., K] @ [K, N] as one [rows, K] GEMM: numpy would call BLAS once per leading index (3x slower)
        out = np.dot(a.reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + (b.shape[1],))
    else:
        out = np.matmul(a, b)
    return out if out.dtype == a.dtype else out.astype(a.dtype)


def _infer_gemm(ctx, a, b, c=None):
    if a.shape is None or b.shape is None:
        return TensorType(a.dtype, None)
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ShapeError(f"Gemm inputs must be 2-D, got ranks {len(a.shape)} and {len(b.shape)}")
    m, ka = a.shape[::-1] if ctx["transA"] else a.shape
    kb, n = b.shape[::-1] if ctx["transB"] else b.shape
    _same_dim(ka, kb, "Gemm")
    return TensorType(a.dtype, (m, n))


def _gemm_grad(b, n, gouts):
    """Y = alpha A' B' + beta C: dA' = alpha g B'^T, dB' = alpha A'^T g (transposed back), dC = beta g."""
    at = b.attrs(n)
    a, c = n.inputs[:2]
    bias = n.inputs[2] if len(n.inputs) > 2 else None
    g, alpha = gouts[0], float(at["alpha"])
    da = db = dbias = None
    if b.needs(a):  # dA = alpha g B'^T, or its transpose alpha B' g^T when transA
        da = b.op("Gemm", c, g, transA=at["transB"], transB=1, alpha=alpha) if at["transA"] else \
            b.op("Gemm", g, c, transB=1 - at["transB"], alpha=alpha)
    if b.needs(c):  # dB = alpha A'^T g, or alpha g^T A' when transB
        db = b.op("Gemm", g, a, transA=1, transB=at["transA"], alpha=alpha) if at["transB"] else \
            b.op("Gemm", a, g, transA=1 - at["transA"], alpha=alpha)
    if b.needs(bias):
        dbias = b.sum_to(b.op("Mul", g, b.scalar(at["beta"], g.type.dtype)), bias)
    return [da, db, dbias]


@op("Gemm", fusion=OUT, attrs={"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0, "broadcast": 0},
    infer=_infer_gemm, grad=_gemm_grad)
def _gemm(ctx, a, b, c=None):
    dtype = a.dtype
    if ctx["transA"]:
        a = a.T  # a view: BLAS handles transposed operands without a copy
    if ctx["transB"]:
        b = b.T
    # one row (a classifier on one image): our GEMV, on our pool. numpy's OpenBLAS runs it 1.3-2.5x faster
    # alone but then spins its threads for ~0.1 s, which held the cores of the next run's convs (ResNet-50 at
    # 2 threads, runs back to back: 46-47.5 ms a run with the classifier on OpenBLAS, 38-39 on ours).
    # Otherwise np.dot (2-D: np.matmul's product at half the call overhead), where ours trails OpenBLAS by
    # 10-20% with a transposed b.
    y = gemm.matmul(a, b) if a.shape[0] == 1 else None
    if y is None:
        y = np.dot(a, b)
    alpha, beta = ctx["alpha"], ctx["beta"]
    if dtype.kind == "f" and y.dtype == dtype:
        if alpha != 1.0:
            y *= dtype.type(alpha)  # in place: keeps float32 and avoids a temporary
        if c is not None and beta != 0.0:
            if beta == 1.0:
                y += c
            else:
                y += dtype.type(beta) * c
        return y
    y = y.astype(np.float64) * alpha if alpha != 1.0 else y
    if c is not None and beta != 0.0:
        y = y + (c if beta == 1.0 else c.astype(np.float64) * beta)
    return np.asarray(y).astype(dtype, copy=False)


def _einsum_terms(equation: str):
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    return lhs.split(","), (rhs if arrow else None)


def _infer_einsum(ctx, *types):
    terms, rhs = _einsum_terms(ctx["equation"])
    if len(terms) != len(types):
        raise ShapeError(f"Einsum equation has {len(terms)} operands but {len(types)} inputs")
    if any(t.shape is None for t in types):
        return TensorType(types[0].dtype, None)
    dims, ell, counts = {}, (), {}
    for term, t in zip(terms, types):
        letters = term.replace("...", "")
        n_ell = len(t.shape) - len(letters)
        if ("..." not in term and n_ell != 0) or n_ell < 0:
            raise ShapeError(f"Einsum term {term!r} does not match rank {len(t.shape)}")
        shape = list(t.shape)
        if "..." in term:
            pre = term.index("...")
            ell = broadcast_shapes(ell, tuple(shape[pre:pre + n_ell]))
            shape = shape[:pre] + shape[pre + n_ell:]
        for ch, d in zip(letters, shape):
            counts[ch] = counts.get(ch, 0) + 1
            if ch in dims and dims[ch] != 1 and d != 1:
                dims[ch] = _same_dim(dims[ch], d, "Einsum")
            elif ch not in dims or dims[ch] == 1:
                dims[ch] = d
    if rhs is None:
        rhs = ("..." if ell else "") + "".join(sorted(c for c, k in counts.items() if k == 1))
    if "..." in rhs:
        pre, post = rhs.split("...")
        out = [dims[c] for c in pre] + list(ell) + [dims[c] for c in post]
    else:
        out = [dims[c] for c in rhs]
    return TensorType(types[0].dtype, tuple(out))


@op("Einsum", since=12, fusion=OUT, attrs={"equation": ""}, infer=_infer_einsum)
def _einsum(ctx, *xs):
    eq = ctx["equation"].replace(" ", "")
    dtype = xs[0].dtype
    if dtype.type.__module__.startswith("ml_dtypes"):  # numpy's einsum lacks bfloat16/float8 loops
        xs = [x.astype(np.float32) for x in xs]
    out = np.einsum(eq, *xs, optimize=len(xs) > 2)
    return np.asarray(out).astype(dtype, copy=False)


def _infer_det(ctx, x):
    if x.shape is None:
        return TensorType(x.dtype, None)
    return TensorType(x.dtype, tuple(x.shape[:-2]))


@op("Det", since=11, infer=_infer_det)
def _det(ctx, x):
    work = x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)
    return np.asarray(np.linalg.det(work)).astype(x.dtype, copy=False)
