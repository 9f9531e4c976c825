"""More gradient rules, attached to existing registry entries: inverse trig/hyperbolic functions, the ELU
family and other activations, the remaining reductions, CastLike, Tile and CumSum."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .grads_nn import _chain, _k, attach_grad
from .reduce import _reduced_axes


def _sqrt(b, x):
    return b.op("Sqrt", x)


def _inv(b, x):
    return b.op("Div", _k(b, x, 1), x)


def _sq(b, x):
    return b.op("Mul", x, x)


INVERSE = {
    "Asin": lambda b, x, y: _inv(b, _sqrt(b, b.op("Sub", _k(b, x, 1), _sq(b, x)))),
    "Acos": lambda b, x, y: b.op("Neg", _inv(b, _sqrt(b, b.op("Sub", _k(b, x, 1), _sq(b, x))))),
    "Asinh": lambda b, x, y: _inv(b, _sqrt(b, b.op("Add", _sq(b, x), _k(b, x, 1)))),
    "Acosh": lambda b, x, y: _inv(b, _sqrt(b, b.op("Sub", _sq(b, x), _k(b, x, 1)))),
    "Atanh": lambda b, x, y: _inv(b, b.op("Sub", _k(b, x, 1), _sq(b, x))),
}
for _name, _d in INVERSE.items():
    attach_grad(_name, _chain(_d))


def _positive(b, x):
    return b.op("Greater", x, _k(b, x, 0))


def _act(deriv):
    """Rule for an activation with attributes: deriv(b, x, y, attrs) -> dy/dx."""
    return lambda b, n, g: [b.op("Mul", g[0], deriv(b, n.inputs[0], n.outputs[0], b.attrs(n)))]


def _mish(b, x, y, a):
    t = b.op("Tanh", b.op("Softplus", x))
    return b.op(
        "Add", t, b.op("Mul", b.op("Mul", x, b.op("Sigmoid", x)), b.op("Sub", _k(b, x, 1), _sq(b, t)))
    )


def _swish(b, x, y, a):
    s = b.op("Sigmoid", b.op("Mul", x, _k(b, x, a["alpha"])))
    return b.op(
        "Add",
        s,
        b.op("Mul", b.op("Mul", x, _k(b, x, a["alpha"])), b.op("Mul", s, b.op("Sub", _k(b, x, 1), s))),
    )


def _hard_sigmoid(b, x, y, a):
    z = b.op("Add", b.op("Mul", x, _k(b, x, a["alpha"])), _k(b, x, a["beta"]))
    inside = b.op("And", b.op("Greater", z, _k(b, x, 0)), b.op("Less", z, _k(b, x, 1)))
    return b.op("Where", inside, _k(b, x, a["alpha"]), _k(b, x, 0))


def _hard_swish(b, x, y, a):
    mid = b.op("Add", b.op("Mul", x, _k(b, x, 1 / 3)), _k(b, x, 0.5))
    lo = b.op("Where", b.op("Less", x, _k(b, x, -3)), _k(b, x, 0), mid)
    return b.op("Where", b.op("Greater", x, _k(b, x, 3)), _k(b, x, 1), lo)


ACTIVATIONS = {
    "Elu": lambda b, x, y, a: b.op(
        "Where", _positive(b, x), _k(b, x, 1), b.op("Add", y, _k(b, x, a["alpha"]))
    ),
    "Selu": lambda b, x, y, a: b.op(
        "Where", _positive(b, x), _k(b, x, a["gamma"]), b.op("Add", y, _k(b, x, a["alpha"] * a["gamma"]))
    ),
    "Celu": lambda b, x, y, a: b.op(
        "Where", _positive(b, x), _k(b, x, 1), b.op("Exp", b.op("Div", x, _k(b, x, a["alpha"])))
    ),
    "ThresholdedRelu": lambda b, x, y, a: b.op(
        "Where", b.op("Greater", x, _k(b, x, a["alpha"])), _k(b, x, 1), _k(b, x, 0)
    ),
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _hard_swish,
    "Mish": _mish,
    "Swish": _swish,
}
for _name, _d in ACTIVATIONS.items():
    attach_grad(_name, _act(_d))


def _prelu_grad(b, n, g):
    x, slope = n.inputs
    pos = _positive(b, x)
    dx = b.op("Where", pos, g[0], b.op("Mul", g[0], slope))
    ds = b.sum_to(b.op("Where", pos, _k(b, x, 0), b.op("Mul", g[0], x)), slope) if b.needs(slope) else None
    return [dx, ds]


attach_grad("PRelu", _prelu_grad)


# ---------------------------------------------------------------- reductions


def _back(b, n, v):
    """A reduced-shape value (the gradient or the result) broadcast back to the input's shape."""
    axes = _reduced_axes(b, n)
    x = n.inputs[0]
    if axes is None or not axes:
        return v
    if not b.attrs(n)["keepdims"]:
        v = b.op("Unsqueeze", v, b.ints(axes))
    return b.op("Expand", v, b.shape(x))


def _reduce_rule(local):
    """dx = broadcast(g) * local(b, x, broadcast(y), node)."""

    def rule(b, n, g):
        x = n.inputs[0]
        return [b.op("Mul", _back(b, n, g[0]), local(b, x, lambda: _back(b, n, n.outputs[0]), n))] + [
            None
        ] * (len(n.inputs) - 1)

    return rule


def _select(b, x, y, n):
    """Max/Min reductions: ties share the gradient evenly."""
    hit = b.cast(b.op("Equal", x, y()), x.type.dtype)
    count = b.op(
        "ReduceSum", hit, *([b.ints(_reduced_axes(b, n))] if _reduced_axes(b, n) else []), keepdims=1
    )
    return b.op("Div", hit, b.op("Expand", count, b.shape(x)))


REDUCTIONS = {
    "ReduceSumSquare": lambda b, x, y, n: b.op("Mul", x, _k(b, x, 2)),
    "ReduceL1": lambda b, x, y, n: b.op("Sign", x),
    "ReduceL2": lambda b, x, y, n: b.op("Div", x, y()),
    "ReduceLogSum": lambda b, x, y, n: _inv(b, b.op("Exp", y())),
    "ReduceLogSumExp": lambda b, x, y, n: b.op("Exp", b.op("Sub", x, y())),
    "ReduceMax": _select,
    "ReduceMin": _select,
}
for _name, _d in REDUCTIONS.items():
    attach_grad(_name, _reduce_rule(_d))


# ---------------------------------------------------------------- CastLike, Tile, CumSum

attach_grad("CastLike", lambda b, n, g: [b.cast(g[0], n.inputs[0].type.dtype), None])


def _tile_grad(b, n, g):
    """Sum the gradient over the repeats: reshape [r0, d0, r1, d1, ...] and reduce the repeat axes."""
    x, reps = n.inputs
    r = b.known.get(reps)
    shape = x.type.shape
    if r is None or shape is None or not all(isinstance(d, int) for d in shape):
        raise ShapeError(f"{n.describe()}: gradient needs static shapes and repeats")
    split = [v for rep, d in zip(np.ravel(r), shape) for v in (int(rep), d)]
    gs = b.op("Reshape", g[0], b.ints(split))
    return [b.op("ReduceSum", gs, b.ints(range(0, 2 * len(shape), 2)), keepdims=0), None]


attach_grad("Tile", _tile_grad)


def _cumsum_grad(b, n, g):
    """The gradient of a (reverse/exclusive) cumulative sum is the cumulative sum in the other direction."""
    a = b.attrs(n)
    return [b.op("CumSum", g[0], n.inputs[1], exclusive=a["exclusive"], reverse=1 - a["reverse"]), None]


attach_grad("CumSum", _cumsum_grad)
