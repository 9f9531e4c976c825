"""Type conversion ops: Cast, CastLike, BitCast, with ONNX's float8/float4/int4/e8m0 and string rules."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import sympy
from onnx import TensorProto

from ..dtypes import np_dtype
from ..errors import KernelError
from ..ir import TensorType
from .registry import Fusion, op

_F8_SATURATING = {np.dtype(t) for t in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz,
                                        ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz)}
_F4 = {np.dtype(getattr(ml_dtypes, "float4_e2m1fn"))} if hasattr(ml_dtypes, "float4_e2m1fn") else set()
_E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu) if hasattr(ml_dtypes, "float8_e8m0fnu") else None
_SUBBYTE_INT = {np.dtype(getattr(ml_dtypes, n)): bits for n, bits in
                (("int4", 4), ("uint4", 4), ("int2", 2), ("uint2", 2)) if hasattr(ml_dtypes, n)}


def _is_ml(dtype: np.dtype) -> bool:
    """ml_dtypes types (bfloat16, float8, int4...) report kind 'V'; numpy's own do not."""
    return dtype.kind == "V"


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or (_is_ml(dtype) and dtype not in _SUBBYTE_INT)


def _parse_string(s) -> float | int:
    """ONNX string -> number: plain or scientific notation, INF/+INF/-INF/NaN in any case."""
    s = s.decode() if isinstance(s, bytes) else str(s)
    t = s.strip()
    try:
        return int(t)
    except ValueError:
        return float(t)  # float() already accepts inf, +inf, -inf, nan case-insensitively


def _to_string(x: np.ndarray) -> np.ndarray:
    """Numbers -> strings as numpy prints them (shortest round-trip form, e.g. "0.47892547")."""
    if _is_ml(x.dtype):
        x = x.astype(np.float32) if x.dtype not in _SUBBYTE_INT else x.astype(np.int8)
    return x.astype(np.str_).astype(object)


def _to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """float8 e8m0 holds only a biased exponent, the same byte as float32's exponent field."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32)
    exp = ((bits >> 23) & 0xFF).astype(np.int32)
    frac = bits & 0x7FFFFF
    special = exp == 0xFF
    if round_mode == "up":
        exp = exp + (frac > 0)
    elif round_mode == "nearest":
        guard, rest = (bits & 0x400000) > 0, (bits & 0x3FFFFF) > 0
        exp = exp + (guard & (rest | (exp > 0)))
    elif round_mode != "down":
        raise KernelError(f"Cast: unknown round_mode {round_mode!r}")
    exp = np.minimum(exp, 0xFE) if saturate else np.minimum(exp, 0xFF)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    out = np.where(special, np.where(nan | (not saturate), 0xFF, 0xFE), exp).astype(np.uint8)
    return out.view(_E8M0)


def _float_to_int(x: np.ndarray, to: np.dtype) -> np.ndarray:
    """Truncate toward zero; out-of-range is undefined by ONNX, so wrap like C on most targets."""
    with np.errstate(all="ignore"):
        f = np.nan_to_num(np.trunc(x.astype(np.float64)), nan=0.0, posinf=0.0, neginf=0.0)
        if to.kind == "u" and to.itemsize == 8:
            return np.where(f < 0, f.astype(np.int64).view(np.uint64), f.astype(np.uint64)).astype(to)
        return f.astype(np.int64).astype(to) if to.itemsize < 8 else f.astype(to)


def _wrap_subbyte(x: np.ndarray, to: np.dtype) -> np.ndarray:
    bits = _SUBBYTE_INT[to]
    v = x.astype(np.int64) & ((1 << bits) - 1)
    if ml_dtypes.iinfo(to).min < 0:
        v = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
    return v.astype(to)


def cast_array(x: np.ndarray, to: np.dtype, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """ONNX Cast semantics for one array (see the Cast op's spec)."""
    to = np.dtype(to)
    x = np.asarray(x)
    if x.dtype == to:
        return x.copy() if to != object else np.array(x, dtype=object)
    if x.dtype == object:
        if x.size and not all(isinstance(v, (str, bytes)) for v in x.flat):
            if to.kind in "iu" or to == object:  # symbolic shape values stay symbolic
                return np.array([sympy.sympify(v) if not isinstance(v, (int, np.integer)) else int(v)
                                 for v in x.flat], dtype=object).reshape(x.shape)
            raise KernelError("Cast: cannot cast symbolic values to floats")
        vals = [_parse_string(v) for v in x.flat]
        is_float = any(isinstance(v, float) for v in vals)
        src = np.array(vals, dtype=np.float64 if is_float or _is_float(to) else np.int64).reshape(x.shape)
        return cast_array(src, to, saturate, round_mode)
    if to == object:
        return _to_string(x)
    with np.errstate(all="ignore"):
        if to == np.bool_:
            return x.astype(np.float32).astype(np.bool_) if _is_ml(x.dtype) else x.astype(np.bool_)
        if _is_ml(x.dtype) and x.dtype not in _SUBBYTE_INT and not _is_ml(to):
            x = x.astype(np.float32)  # widen exotic floats first; float32 holds all of them exactly
        elif x.dtype in _SUBBYTE_INT:
            x = x.astype(np.int8)
        if to == _E8M0:
            return _to_e8m0(x.astype(np.float32), saturate, round_mode)
        if to in _F8_SATURATING or to in _F4:
            f = x.astype(np.float32) if x.dtype != np.float64 else x
            if saturate:
                big = float(ml_dtypes.finfo(to).max)
                f = np.clip(f, -big, big)  # clip keeps NaN; infinities saturate too
            return f.astype(to)
        if to in _SUBBYTE_INT:
            if x.dtype.kind != "f":
                return _wrap_subbyte(x.astype(np.int64), to)  # fixed -> fixed: keep the low bits (spec)
            # float -> fixed out of range is undefined by ONNX; like its reference (ml_dtypes), give 0.
            v = _float_to_int(x, np.dtype(np.int64))
            info = ml_dtypes.iinfo(to)
            return np.where((v < info.min) | (v > info.max), 0, v).astype(to)
        if to.kind in "iu" and x.dtype.kind == "f":
            return _float_to_int(x, to)
        return x.astype(to)


def _target(ctx) -> np.dtype:
    """Cast-1 names the target type as a string ("FLOAT"); later versions use the TensorProto enum."""
    to = ctx["to"]
    if isinstance(to, (str, bytes)):
        to = TensorProto.DataType.Value((to.decode() if isinstance(to, bytes) else to).upper())
    return np_dtype(to)


def _infer_cast(ctx, x):
    return TensorType(_target(ctx), x.shape if x is not None else None)


def _cast_grad(b, n, g):
    """Float -> float casts pass the gradient back in the input's dtype; others stop it."""
    x, y = n.inputs[0], n.outputs[0]
    floats = all(v.type.dtype is not None and v.type.dtype.kind == "f" for v in (x, y))
    return [b.cast(g[0], x.type.dtype) if floats else None]


@op("Cast", fusion=Fusion.ELEMWISE, attrs={"saturate": 1, "round_mode": "up"}, infer=_infer_cast,
    shape_op=True, grad=_cast_grad)
def _cast(ctx, x):
    return cast_array(x, _target(ctx), bool(ctx["saturate"]), ctx["round_mode"])


@op("CastLike", since=1, fusion=Fusion.ELEMWISE, attrs={"saturate": 1, "round_mode": "up"},
    infer=lambda ctx, x, like: TensorType(like.dtype, x.shape), shape_op=True)
def _cast_like(ctx, x, like):
    return cast_array(x, like.dtype, bool(ctx["saturate"]), ctx["round_mode"])


@op("BitCast", since=1, fusion=Fusion.ELEMWISE, infer=_infer_cast)
def _bitcast(ctx, x):
    to = _target(ctx)
    if to.itemsize != x.dtype.itemsize or to == object or x.dtype == object:
        raise KernelError(f"BitCast: {x.dtype} and {to} differ in bit width")
    out = np.ascontiguousarray(x).view(to)
    return out.reshape(x.shape)
