"""Mapping between ONNX element types, numpy dtypes and short type names used by the printer."""
import ml_dtypes
import numpy as np
from onnx import TensorProto

from .errors import ModelError

_ONNX_TO_NP = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.FLOAT16: np.dtype(np.float16),
    TensorProto.BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.INT16: np.dtype(np.int16),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.UINT8: np.dtype(np.uint8),
    TensorProto.UINT16: np.dtype(np.uint16),
    TensorProto.UINT32: np.dtype(np.uint32),
    TensorProto.UINT64: np.dtype(np.uint64),
    TensorProto.BOOL: np.dtype(np.bool_),
    TensorProto.STRING: np.dtype(object),
    TensorProto.COMPLEX64: np.dtype(np.complex64),
    TensorProto.COMPLEX128: np.dtype(np.complex128),
    TensorProto.FLOAT8E4M3FN: np.dtype(ml_dtypes.float8_e4m3fn),
    TensorProto.FLOAT8E4M3FNUZ: np.dtype(ml_dtypes.float8_e4m3fnuz),
    TensorProto.FLOAT8E5M2: np.dtype(ml_dtypes.float8_e5m2),
    TensorProto.FLOAT8E5M2FNUZ: np.dtype(ml_dtypes.float8_e5m2fnuz),
    TensorProto.INT4: np.dtype(ml_dtypes.int4),
    TensorProto.UINT4: np.dtype(ml_dtypes.uint4),
}
for _name, _ml in (("FLOAT4E2M1", "float4_e2m1fn"), ("INT2", "int2"), ("UINT2", "uint2"),
                   ("FLOAT8E8M0", "float8_e8m0fnu")):
    if hasattr(TensorProto, _name) and hasattr(ml_dtypes, _ml):
        _ONNX_TO_NP[getattr(TensorProto, _name)] = np.dtype(getattr(ml_dtypes, _ml))

_NP_TO_ONNX = {v: k for k, v in _ONNX_TO_NP.items()}

_SHORT = {
    "float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16", "int8": "i8", "int16": "i16",
    "int32": "i32", "int64": "i64", "uint8": "u8", "uint16": "u16", "uint32": "u32", "uint64": "u64",
    "bool": "bool", "object": "str", "complex64": "c64", "complex128": "c128",
}
# onnxruntime-style type strings, e.g. "tensor(float)".
_ORT_NAME = {
    "float32": "float", "float64": "double", "object": "string", "float16": "float16", "bfloat16": "bfloat16",
}


def np_dtype(elem_type: int) -> np.dtype:
    """numpy dtype of an ONNX TensorProto element type."""
    try:
        return _ONNX_TO_NP[elem_type]
    except KeyError:
        raise ModelError(f"unknown or unsupported ONNX element type {elem_type}") from None


def onnx_elem_type(dtype) -> int:
    """ONNX element type of a numpy dtype."""
    dtype = np.dtype(dtype)
    try:
        return _NP_TO_ONNX[dtype]
    except KeyError:
        raise ModelError(f"dtype {dtype} has no ONNX element type") from None


def short_name(dtype) -> str:
    """Short name for the printer: f32, i64, bf16..."""
    if dtype is None:
        return "?"
    name = np.dtype(dtype).name
    return _SHORT.get(name, name)


def type_string(dtype) -> str:
    """onnxruntime-style type string of a tensor dtype."""
    if dtype is None:
        return "tensor(undefined)"
    name = np.dtype(dtype).name
    return f"tensor({_ORT_NAME.get(name, name)})"


def random_tensor(rng: np.random.Generator, shape, dtype, int_high: int = 2) -> np.ndarray:
    """Random data of a dtype for feeds: normal floats, fair booleans, integers in [0, int_high)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, int_high, shape).astype(dtype)


_TINY32 = float(np.finfo(np.float32).tiny)


def f32_reciprocal(c: float) -> float | None:
    """1 / c in float32 where c and 1 / c are both normal finite float32 values, else None. Generated kernels
    divide by a constant c as a product by this (within an ulp of the quotient, as their exp and erf are of
    libm's): a vector division costs as much as a GELU's other steps together (bias+GELU's x / sqrt(2))."""
    c = np.float32(c)
    if not (np.isfinite(c) and abs(c) >= _TINY32):
        return None
    r = np.float32(1) / c
    return float(r) if abs(r) >= _TINY32 else None

