"""Elementwise ops: unary math, binary arithmetic, comparisons, logic, activations. Mostly one row each."""
from __future__ import annotations

import math

import numpy as np
import sympy

from ..ir import TensorType
from . import row_ckernels
from .infer import broadcast, broadcast_to, same
from .registry import Fusion, op

E, B = Fusion.ELEMWISE, Fusion.BROADCAST


def _keep(fn, quiet=False):
    """Wrap a numpy ufunc so the result keeps the input dtype and stays an ndarray. Functions that raise no
    floating-point error on any input (quiet) skip np.errstate, which costs more than a small ufunc."""
    if quiet:
        return lambda ctx, x: np.asarray(fn(x)).astype(x.dtype, copy=False)

    def kernel(ctx, x):
        with np.errstate(all="ignore"):
            return np.asarray(fn(x)).astype(x.dtype, copy=False)
    return kernel


# Odd/even minimax rational fit of erf on [-4, 4] for single precision (the coefficients Eigen uses); beyond
# 4, erf is +-1 in float32. Relative error stays ~1 ulp-scale near zero because the numerator is x * P(x^2).
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)


def _horner(coeffs, z):
    acc = np.full_like(z, coeffs[0])
    for c in coeffs[1:]:
        acc *= z
        acc += z.dtype.type(c)
    return acc


def _erf(x):
    """erf in the input's precision: the rational fit for <= 32-bit floats, erfc-based series for float64."""
    if x.dtype == np.float64:
        with np.errstate(all="ignore"):  # x*x overflows for huge x; the fit's select discards that lane
            return _erf64(x)
    if (y := row_ckernels.erf(x)) is not None:
        return y
    xf = np.clip(x.astype(np.float32), -4.0, 4.0)
    z = xf * xf
    return (xf * _horner(_ERF_P, z) / _horner(_ERF_Q, z)).astype(x.dtype, copy=False)


def _erf64(xf):
    """Taylor series near zero (relative accuracy), Numerical Recipes' erfc Chebyshev fit elsewhere."""
    a = np.abs(xf)
    x2 = xf * xf
    taylor = 1.1283791670955126 * xf * (1 - x2 / 3 + x2 * x2 / 10 - x2 ** 3 / 42 + x2 ** 4 / 216 - x2 ** 5 / 1320)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = (-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277)))))))))
    fit = np.sign(xf) * (1.0 - t * np.exp(poly))
    return np.where(a < 0.5, taylor, fit)


# ---------------------------------------------------------------- gradients (framework/autodiff.py)

def _k(b, like, c):
    return b.scalar(c, like.type.dtype)


def _chain(deriv):
    """Rule for y = f(x) from dy/dx, written with the builder: deriv(b, x, y) -> Value."""
    return lambda b, n, g: [b.op("Mul", g[0], deriv(b, n.inputs[0], n.outputs[0]))]


UNARY_GRADS = {
    "Neg": lambda b, n, g: [b.op("Neg", g[0])],
    "Exp": _chain(lambda b, x, y: y),
    "Log": lambda b, n, g: [b.op("Div", g[0], n.inputs[0])],
    "Sqrt": lambda b, n, g: [b.op("Div", g[0], b.op("Add", n.outputs[0], n.outputs[0]))],
    "Abs": _chain(lambda b, x, y: b.op("Sign", x)),
    "Tanh": _chain(lambda b, x, y: b.op("Sub", _k(b, y, 1), b.op("Mul", y, y))),
    "Sigmoid": _chain(lambda b, x, y: b.op("Mul", y, b.op("Sub", _k(b, y, 1), y))),
    "Relu": lambda b, n, g: [b.op("Where", b.op("Greater", n.inputs[0], _k(b, n.inputs[0], 0)), g[0],
                                  _k(b, g[0], 0))],
    "Erf": _chain(lambda b, x, y: b.op("Mul", _k(b, x, 2 / math.sqrt(math.pi)),
                                       b.op("Exp", b.op("Neg", b.op("Mul", x, x))))),
}


def _pow_grad(b, n, g):
    x, e = n.inputs
    ef = b.cast(e, x.type.dtype)
    dx = b.op("Mul", b.op("Mul", g[0], ef), b.op("Pow", x, b.op("Sub", ef, _k(b, ef, 1))))
    de = b.op("Mul", b.op("Mul", g[0], n.outputs[0]), b.op("Log", x)) if b.needs(e) else None
    return [b.sum_to(dx, x), de and b.sum_to(b.cast(de, e.type.dtype), e)]


def _div_grad(b, n, g):
    x, d = n.inputs
    dd = b.op("Neg", b.op("Div", b.op("Mul", g[0], n.outputs[0]), d)) if b.needs(d) else None
    return [b.sum_to(b.op("Div", g[0], d), x) if b.needs(x) else None, dd and b.sum_to(dd, d)]


BINARY_GRADS = {
    "Add": lambda b, n, g: [b.sum_to(g[0], v) for v in n.inputs],
    "Sub": lambda b, n, g: [b.sum_to(g[0], n.inputs[0]), b.sum_to(b.op("Neg", g[0]), n.inputs[1])],
    "Mul": lambda b, n, g: [b.sum_to(b.op("Mul", g[0], o), v) if b.needs(v) else None
                            for v, o in zip(n.inputs, n.inputs[::-1])],
    "Div": _div_grad,
    "Pow": _pow_grad,
}


def _select_grad(b, n, g):
    """Max/Min: the gradient goes to the inputs equal to the result, split evenly among ties."""
    y = n.outputs[0]
    hits = [b.op("Equal", x, y) for x in n.inputs]
    count = hits[0] if len(hits) == 1 else b.op("Sum", *(b.cast(h, y.type.dtype) for h in hits))
    share = g[0] if len(hits) == 1 else b.op("Div", g[0], count)
    return [b.sum_to(b.op("Where", h, share, _k(b, y, 0)), x) if b.needs(x) else None
            for x, h in zip(n.inputs, hits)]


def _where_grad(b, n, g):
    c, x, y = n.inputs
    zero = _k(b, g[0], 0)
    return [None, b.sum_to(b.op("Where", c, g[0], zero), x) if b.needs(x) else None,
            b.sum_to(b.op("Where", c, zero, g[0]), y) if b.needs(y) else None]


def _mean_grad(b, n, g):
    share = b.op("Div", g[0], _k(b, g[0], len(n.inputs)))
    return [b.sum_to(share, x) for x in n.inputs]


UNARY = {
    "Abs": np.abs, "Neg": np.negative, "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal,
    "Floor": np.floor, "Ceil": np.ceil, "Round": np.round, "Sign": np.sign, "Tanh": np.tanh,
    "Sin": np.sin, "Cos": np.cos, "Tan": np.tan, "Asin": np.arcsin, "Acos": np.arccos, "Atan": np.arctan,
    "Sinh": np.sinh, "Cosh": np.cosh, "Asinh": np.arcsinh, "Acosh": np.arccosh, "Atanh": np.arctanh,
    "Erf": _erf, "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "Relu": lambda x: np.maximum(x, np.zeros((), x.dtype)),
    "Softsign": lambda x: x / (1 + np.abs(x)),
    "Softplus": lambda x: np.logaddexp(0, x),
    "Mish": lambda x: x * np.tanh(np.logaddexp(0, x)),
    "HardSwish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
}
# no floating-point error on any input, NaN/Inf included (checked with -W error in tests/framework)
QUIET_UNARY = {"Abs", "Neg", "Floor", "Ceil", "Round", "Sign", "Tanh", "Relu", "Atan", "Asinh", "Erf"}
for _name, _fn in UNARY.items():
    op(_name, fusion=E, infer=same(), grad=UNARY_GRADS.get(_name))(_keep(_fn, _name in QUIET_UNARY))

op("Not", fusion=E, infer=same())(lambda ctx, x: np.logical_not(x))
op("BitwiseNot", fusion=E, infer=same())(lambda ctx, x: np.invert(x))
op("IsNaN", fusion=E, infer=broadcast_to(np.bool_))(lambda ctx, x: np.isnan(x))


@op("IsInf", fusion=E, attrs={"detect_negative": 1, "detect_positive": 1}, infer=broadcast_to(np.bool_))
def _isinf(ctx, x):
    neg = np.isneginf(x) if ctx["detect_negative"] else np.zeros(x.shape, bool)
    pos = np.isposinf(x) if ctx["detect_positive"] else np.zeros(x.shape, bool)
    return neg | pos


def _int_div(a, b):
    """ONNX integer Div truncates toward zero, like C."""
    with np.errstate(all="ignore"):
        q = np.abs(a) // np.where(b == 0, 1, np.abs(b))
        return np.where((a < 0) != (b < 0), -q, q).astype(a.dtype)


def _symbolic_int_div(a, b):
    """Div on shape values (object arrays of ints and positive integer dims, from Shape): ONNX's int64 Div,
    truncating toward zero; floor where the sign is not known (dims are positive)."""
    def div(x, y):
        if isinstance(x, (int, np.integer)) and isinstance(y, (int, np.integer)):
            return int(x) // int(y) if (x < 0) == (y < 0) or x % y == 0 else -(abs(int(x)) // abs(int(y)))
        return sympy.floor(sympy.sympify(x) / y)
    return np.frompyfunc(div, 2, 1)(a, b).astype(object)


def _div(a, b):
    if a.dtype.kind in "iu":
        return _int_div(a, b)
    if a.dtype == object and (b.dtype == object or b.dtype.kind in "iu"):
        return _symbolic_int_div(a, b)
    return a / b


def _pow(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.power(a.astype(np.int64), b.astype(np.int64)).astype(a.dtype)
    return np.power(a.astype(np.float64) if a.dtype.kind in "iu" else a, b).astype(a.dtype)


BINARY = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _div, "Pow": _pow,
    "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
    "BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or, "BitwiseXor": np.bitwise_xor,
}
def _bind_binary(fn):
    """bind for a binary op: the graph kernel calls fn directly when the result is already an array of the
    first input's dtype (the common case; a binary op runs once per node per run, often on small arrays)."""
    def bind(ctx):
        def kernel(a, b):
            r = fn(a, b)
            if type(r) is np.ndarray and r.dtype == a.dtype:
                return [r]
            return [np.asarray(r).astype(a.dtype, copy=False) if a.dtype != object else np.asarray(r)]
        return kernel
    return bind


for _name, _fn in BINARY.items():
    op(_name, fusion=B, infer=broadcast, shape_op=_name in ("Add", "Sub", "Mul", "Div"),
       grad=BINARY_GRADS.get(_name), bind=_bind_binary(_fn))(
        lambda ctx, a, b, _fn=_fn: np.asarray(_fn(a, b)).astype(a.dtype, copy=False)
        if a.dtype != object else _fn(a, b))

COMPARE = {"Equal": np.equal, "Less": np.less, "LessOrEqual": np.less_equal, "Greater": np.greater,
           "GreaterOrEqual": np.greater_equal}
for _name, _fn in COMPARE.items():
    op(_name, fusion=B, infer=broadcast_to(np.bool_))(lambda ctx, a, b, _fn=_fn: np.asarray(_fn(a, b)))


@op("Mod", fusion=B, attrs={"fmod": 0}, infer=broadcast)
def _mod(ctx, a, b):
    with np.errstate(all="ignore"):
        out = np.fmod(a, b) if ctx["fmod"] else np.mod(a, b)
    return np.asarray(out).astype(a.dtype, copy=False)


@op("BitShift", fusion=B, attrs={"direction": "LEFT"}, infer=broadcast)
def _bitshift(ctx, a, b):
    fn = np.left_shift if ctx["direction"] == "LEFT" else np.right_shift
    return fn(a, b).astype(a.dtype)


def _variadic(fn):
    def kernel(ctx, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return np.asarray(out).astype(xs[0].dtype, copy=False)
    return kernel


op("Sum", fusion=B, infer=broadcast, grad=BINARY_GRADS["Add"])(_variadic(np.add))
op("Max", fusion=B, infer=broadcast, grad=_select_grad)(_variadic(np.maximum))
op("Min", fusion=B, infer=broadcast, grad=_select_grad)(_variadic(np.minimum))


@op("Mean", fusion=B, infer=broadcast, grad=_mean_grad)
def _mean(ctx, *xs):
    return (_variadic(np.add)(ctx, *xs) / len(xs)).astype(xs[0].dtype)


@op("Where", fusion=B, infer=lambda ctx, c, x, y: TensorType(x.dtype, broadcast(ctx, c, x, y).shape),
    grad=_where_grad)
def _where(ctx, c, x, y):
    return np.where(c, x, y)


def _act(name, attrs, fn):
    op(name, fusion=E, attrs=attrs, infer=same())(
        lambda ctx, x: np.asarray(fn(ctx, x)).astype(x.dtype, copy=False))


_act("LeakyRelu", {"alpha": 0.01}, lambda c, x: np.where(x >= 0, x, x * c["alpha"]))
_act("Elu", {"alpha": 1.0}, lambda c, x: np.where(x > 0, x, c["alpha"] * np.expm1(np.minimum(x, 0))))
_act("Celu", {"alpha": 1.0}, lambda c, x: np.maximum(0, x) + np.minimum(0, c["alpha"] * np.expm1(x / c["alpha"])))
_act("Selu", {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
     lambda c, x: c["gamma"] * np.where(x > 0, x, c["alpha"] * np.expm1(np.minimum(x, 0))))
_act("ThresholdedRelu", {"alpha": 1.0}, lambda c, x: np.where(x > c["alpha"], x, 0))
_act("HardSigmoid", {"alpha": 0.2, "beta": 0.5}, lambda c, x: np.clip(c["alpha"] * x + c["beta"], 0, 1))
_act("Shrink", {"bias": 0.0, "lambd": 0.5},
     lambda c, x: np.where(x < -c["lambd"], x + c["bias"], np.where(x > c["lambd"], x - c["bias"], 0)))
_act("Swish", {"alpha": 1.0}, lambda c, x: x / (1 + np.exp(-c["alpha"] * x)))


@op("Gelu", since=20, fusion=E, attrs={"approximate": "none"}, infer=same())
def _gelu(ctx, x):
    if ctx["approximate"] == "tanh":
        y = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    else:
        y = 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    return np.asarray(y).astype(x.dtype)


def _legacy_slope(x, slope):
    """Before opset 7 a 1-D slope of length C applied per channel (axis 1), as Caffe-era exporters assumed."""
    if slope.ndim == 1 and x.ndim > 2 and slope.shape[0] == x.shape[1] != x.shape[-1]:
        return slope.reshape((-1,) + (1,) * (x.ndim - 2))
    return slope


def _legacy_prelu_infer(ctx, x, slope):
    return x


@op("PRelu", fusion=B, infer=_legacy_prelu_infer)
def _prelu_v1(ctx, x, slope):
    return _prelu(ctx, x, _legacy_slope(x, slope))


@op("PRelu", since=7, fusion=B, infer=broadcast)
def _prelu(ctx, x, slope):
    return np.where(x >= 0, x, x * slope).astype(x.dtype)


@op("Clip", fusion=E, infer=same(), attrs={"min": -3.4028234663852886e38, "max": 3.4028234663852886e38})
def _clip_v1(ctx, x):
    return np.clip(x, ctx["min"], ctx["max"]).astype(x.dtype)


@op("Clip", since=11, fusion=E, infer=same())
def _clip(ctx, x, lo=None, hi=None):
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return x
