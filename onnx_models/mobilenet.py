"""MobileNet-style CNN (depthwise-separable + inverted-residual blocks) with dynamic batch and image size."""

from __future__ import annotations

import math

import numpy as np
import onnx

from ._util import FLOAT, GraphBuilder, tensor_info

N_CLASSES = 10
DEFAULT_DIMS = {"batch": 2, "height": 32, "width": 32}


def _conv_bn(
    g: GraphBuilder,
    x: str,
    c_in: int,
    c_out: int,
    name: str,
    k: int = 3,
    stride: int = 1,
    group: int = 1,
    relu6: bool = True,
) -> str:
    """Conv (no bias, folded into BN as exporters keep it) + BatchNormalization + optional ReLU6."""
    fan_in = (c_in // group) * k * k
    w = g.weight(f"{name}.conv.weight", (c_out, c_in // group, k, k), math.sqrt(2.0 / fan_in))
    pad = k // 2
    attrs = {"kernel_shape": [k, k], "strides": [stride, stride], "pads": [pad] * 4, "group": group}
    y = g.op("Conv", [x, w], f"{name}/Conv", **attrs)
    bn = [
        g.const(f"{name}.bn.weight", 1.0 + g.rng.normal(0.0, 0.1, c_out)),
        g.weight(f"{name}.bn.bias", (c_out,), 0.1),
        g.weight(f"{name}.bn.running_mean", (c_out,), 0.1),
        g.const(f"{name}.bn.running_var", g.rng.uniform(0.5, 1.5, c_out)),
    ]
    y = g.op("BatchNormalization", [y, *bn], f"{name}/BatchNormalization", epsilon=1e-5)
    if relu6:
        # Clip takes min/max as inputs since opset 11; these shared scalars make it ReLU6.
        y = g.op("Clip", [y, "clip_min", "clip_max"], f"{name}/Clip")
    return y


def _separable(g: GraphBuilder, x: str, c_in: int, c_out: int, stride: int, name: str) -> str:
    y = _conv_bn(g, x, c_in, c_in, f"{name}.dw", stride=stride, group=c_in)
    return _conv_bn(g, y, c_in, c_out, f"{name}.pw", k=1)


def _inverted_residual(g: GraphBuilder, x: str, c: int, expand: int, name: str) -> str:
    hidden = c * expand
    y = _conv_bn(g, x, c, hidden, f"{name}.expand", k=1)
    y = _conv_bn(g, y, hidden, hidden, f"{name}.dw", group=hidden)
    # The projection is linear (no ReLU6) so the residual sum keeps negative values, as in MobileNetV2.
    y = _conv_bn(g, y, hidden, c, f"{name}.project", k=1, relu6=False)
    return g.op("Add", [x, y], f"{name}/Add")


def build(*, seed: int = 0) -> onnx.ModelProto:
    """Build the CNN: image float32 [batch, 3, height, width] -> logits float32 [batch, 10]."""
    g = GraphBuilder(seed)
    g.const("clip_min", 0.0)
    g.const("clip_max", 6.0)
    x = _conv_bn(g, "image", 3, 16, "stem", stride=2)
    x = g.op("MaxPool", [x], "stem/MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    x = _separable(g, x, 16, 24, 1, "block1")
    x = _separable(g, x, 24, 32, 2, "block2")
    x = _inverted_residual(g, x, 32, 2, "block3")
    x = _separable(g, x, 32, 64, 2, "block4")
    x = g.op("GlobalAveragePool", [x], "GlobalAveragePool")
    x = g.op("Flatten", [x], "Flatten", axis=1)
    w = g.weight("classifier.weight", (N_CLASSES, 64), 1.0 / math.sqrt(64))
    b = g.weight("classifier.bias", (N_CLASSES,), 0.02)
    g.op("Gemm", [x, w, b], "logits", transB=1)
    return g.model(
        "mobilenet",
        [tensor_info("image", FLOAT, ["batch", 3, "height", "width"])],
        [tensor_info("logits", FLOAT, ["batch", N_CLASSES])],
        doc="MobileNet-style CNN: stem, depthwise-separable and inverted-residual blocks, 10 classes.",
    )


def make_inputs(dims: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Standard-normal image batch."""
    shape = (dims["batch"], 3, dims["height"], dims["width"])
    return {"image": rng.standard_normal(shape, dtype=np.float32)}
