"""Three-layer MLP classifier mixing Gemm and MatMul+Add layers."""

from __future__ import annotations

import math

import numpy as np
import onnx

from ._util import FLOAT, GraphBuilder, tensor_info

D_IN = 32
D_HIDDEN = 64
N_CLASSES = 10
DEFAULT_DIMS = {"batch": 2}


def build(*, seed: int = 0) -> onnx.ModelProto:
    """Build the MLP: x float32 [batch, 32] -> probs float32 [batch, 10]."""
    g = GraphBuilder(seed)
    # fc1 uses Gemm with transB (PyTorch's Linear layout); fc2 uses MatMul+Add so both lowerings are covered.
    w1 = g.weight("fc1.weight", (D_HIDDEN, D_IN), math.sqrt(2.0 / D_IN))
    b1 = g.weight("fc1.bias", (D_HIDDEN,), 0.1)
    h = g.op("Relu", [g.op("Gemm", ["x", w1, b1], "fc1/Gemm", transB=1)], "fc1/Relu")
    w2 = g.weight("fc2.weight", (D_HIDDEN, D_HIDDEN), 1.0 / math.sqrt(D_HIDDEN))
    b2 = g.weight("fc2.bias", (D_HIDDEN,), 0.1)
    h = g.op("Add", [g.op("MatMul", [h, w2], "fc2/MatMul"), b2], "fc2/Add")
    h = g.op("Tanh", [h], "fc2/Tanh")
    w3 = g.weight("fc3.weight", (D_HIDDEN, N_CLASSES), 1.0 / math.sqrt(D_HIDDEN))
    b3 = g.weight("fc3.bias", (N_CLASSES,), 0.1)
    h = g.op("Gemm", [h, w3, b3], "fc3/Gemm")
    g.op("Softmax", [h], "probs", axis=-1)
    return g.model(
        "mlp",
        [tensor_info("x", FLOAT, ["batch", D_IN])],
        [tensor_info("probs", FLOAT, ["batch", N_CLASSES])],
        doc="MLP 32 -> 64 -> 64 -> 10 with Relu, Tanh and a Softmax output.",
    )


def make_inputs(dims: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Standard-normal features."""
    return {"x": rng.standard_normal((dims["batch"], D_IN), dtype=np.float32)}
