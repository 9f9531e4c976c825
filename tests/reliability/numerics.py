"""Numerics: reduced-precision models against an exact (float64) reference, and run-to-run determinism."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import framework

from .differential import configs

# The documented tolerance of reduced-precision paths: |ours - exact| <= TOL * max(1, max |exact|), with the
# exact result computed in float64 from the same (already rounded) inputs. float16 keeps 11 significant bits
# (2**-11 ~ 4.9e-4 per rounding); our kernels round once per op or once per fused cluster, so a few roundings
# over a softmax or LayerNorm chain stay well inside 4e-3. bfloat16 keeps 8 bits: 2**-8 per rounding.
TOL = {"float16": 4e-3, "bfloat16": 3e-2}
ELEM = {"float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16}


def _ln(x, axis=-1):
    m = x.mean(axis, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(axis, keepdims=True) + 1e-5)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# name -> (nodes over input x [8, 64] and weight w [64, 32], exact float64 reference)
CHAINS = {
    "elementwise": (
        [("Mul", ["x", "x"], "a"), ("Tanh", ["a"], "b"), ("Add", ["b", "x"], "y")],
        lambda x, w: np.tanh(x * x) + x,
    ),
    "softmax": ([("Softmax", ["x"], "y")], lambda x, w: _softmax(x)),
    "layernorm": ([("LayerNormalization", ["x", "g", "z"], "y")], lambda x, w: _ln(x)),
    "reduce_mean": ([("ReduceMean", ["x", "ax"], "y")], lambda x, w: x.mean(-1, keepdims=True)),
    "matmul_gelu": ([("MatMul", ["x", "w"], "m"), ("Gelu", ["m"], "y")], lambda x, w: _gelu(x @ w)),
}


def _gelu(v):
    from math import erf

    return 0.5 * v * (1 + np.vectorize(erf)(v / np.sqrt(2)))


def chain_model(name: str, dtype: str):
    import ml_dtypes  # noqa: F401 - registers bfloat16 with numpy

    nodes, _ = CHAINS[name]
    np_dt = np.dtype(dtype)
    w = (np.random.default_rng(1).standard_normal((64, 32)) / 8).astype(np_dt)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.ones(64, np_dt), "g"),
        numpy_helper.from_array(np.zeros(64, np_dt), "z"),
        numpy_helper.from_array(np.array([-1], np.int64), "ax"),
    ]
    used = {i for _, ins, _ in nodes for i in ins}
    g = helper.make_graph(
        [helper.make_node(op, ins, [out]) for op, ins, out in nodes],
        name,
        [helper.make_tensor_value_info("x", ELEM[dtype], [8, 64])],
        [helper.make_tensor_value_info("y", ELEM[dtype], None)],
        [t for t in inits if t.name in used],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]), w


def reduced_precision_errors(dtype: str) -> dict:
    """Largest scaled error per (chain, configuration) against the float64 reference."""
    import ml_dtypes  # noqa: F401

    x = (np.random.default_rng(0).standard_normal((8, 64)) * 2).astype(dtype)
    out = {}
    for name, (_, ref) in CHAINS.items():
        model, w = chain_model(name, dtype)
        exact = ref(x.astype(np.float64), w.astype(np.float64))
        scale = max(1.0, float(np.abs(exact).max()))
        for label, kw in configs():
            got = framework.InferenceSession(model, **kw).run(None, {"x": x})[0]
            assert got.dtype == np.dtype(dtype), (name, label, got.dtype)
            out[(name, label)] = float(np.abs(got.astype(np.float64) - exact).max()) / scale
    return out


def reduction_model(shape: tuple, op: str):
    nodes = {
        "ReduceSum": [helper.make_node("ReduceSum", ["x", "ax"], ["y"], keepdims=0)],
        "Softmax": [helper.make_node("Softmax", ["x"], ["y"], axis=-1)],
        "LayerNorm": [helper.make_node("LayerNormalization", ["x", "g", "z"], ["y"], axis=-1)],
        "SumOfSquares": [
            helper.make_node("Mul", ["x", "x"], ["sq"]),
            helper.make_node("ReduceSum", ["sq", "ax"], ["y"], keepdims=0),
        ],
    }[op]
    inits = [
        numpy_helper.from_array(np.array([-1], np.int64), "ax"),
        numpy_helper.from_array(np.ones(shape[-1], np.float32), "g"),
        numpy_helper.from_array(np.zeros(shape[-1], np.float32), "z"),
    ]
    used = {i for n in nodes for i in n.input}
    g = helper.make_graph(
        nodes,
        op,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [t for t in inits if t.name in used],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])


def reduction_repeats(op: str, shape: tuple, repeats: int = 5) -> dict:
    """Per configuration: the number of distinct results over `repeats` runs (and a second session)."""
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32) * 100
    out = {}
    for label, kw in configs():
        model = reduction_model(shape, op)
        runs = [framework.InferenceSession(model, **kw).run(None, {"x": x})[0] for _ in range(2)]
        sess = framework.InferenceSession(model, **kw)
        runs += [sess.run(None, {"x": x})[0] for _ in range(repeats)]
        out[label] = len({r.tobytes() for r in runs})
    return out
