"""The onnx package's model-zoo architectures (light_*.onnx), given seeded random weights and inputs.

Their weights are ConstantOfShape(0.02) fills: every channel equal, so they become random initializers.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from framework.dtypes import random_tensor

# Ops a weight may pass through before it reaches the op that gives it its role.
_PASS_THROUGH = {"Unsqueeze", "Squeeze", "Reshape", "Identity", "Cast", "Transpose", "Expand", "Flatten"}


def zoo_dir() -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def zoo_models() -> dict[str, Path]:
    """Name (file stem without `light_`) -> path, sorted by name."""
    return {p.stem.removeprefix("light_"): p for p in sorted(zoo_dir().glob("light_*.onnx"))}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    out: dict[str, list] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            out.setdefault(name, []).append((node, i))
    return out


def _role(name: str, cons: dict) -> tuple[str, int, onnx.NodeProto | None]:
    """(op, input index, node) of the first consumer that is not a pass-through op."""
    seen = set()
    while name not in seen:
        seen.add(name)
        uses = cons.get(name, [])
        if not uses:
            return "", -1, None
        node, idx = uses[0]
        if node.op_type in _PASS_THROUGH and idx == 0 and node.output:
            name = node.output[0]
            continue
        return node.op_type, idx, node
    return "", -1, None


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _fan_in(shape: tuple[int, ...], op: str, idx: int, node) -> int:
    if op == "Gemm" and idx == 1:
        s = list(shape)
        while len(s) > 2 and s[0] == 1:  # e.g. [1, 1, 1000, 1024] reshaped to [1000, 1024]
            s.pop(0)
        return s[-1] if _attr(node, "transB", 0) else s[-2] if len(s) > 1 else s[0]
    if op == "MatMul":
        return shape[-2] if idx == 1 and len(shape) > 1 else shape[-1]
    return max(1, math.prod(shape[1:]))


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype, role: tuple) -> np.ndarray:
    """Random values whose scale suits the tensor's role: He-scaled weights, BN stats with variance > 0."""
    op, idx, node = role
    if op == "BatchNormalization" and idx == 4:
        a = rng.uniform(0.5, 1.5, shape)
    elif (op == "BatchNormalization" and idx == 1) or (op == "Mul" and len(shape) <= 1):
        a = 1.0 + 0.1 * rng.standard_normal(shape)
    elif len(shape) >= 2 and math.prod(shape) > 1:
        std = math.sqrt(2.0 / _fan_in(shape, op, idx, node))  # He: keeps the scale through ReLU layers
        a = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
    else:  # biases, BN bias/mean, other small vectors
        a = 0.05 * rng.standard_normal(shape)
    return np.asarray(a, dtype=dtype)


def _float_value(node: onnx.NodeProto) -> np.dtype | None:
    """The float dtype a ConstantOfShape fills with, or None if it is not a float fill."""
    value = _attr(node, "value", None)
    dtype = np.dtype(np.float32) if value is None else helper.tensor_dtype_to_np_dtype(value.data_type)
    return dtype if dtype.kind == "f" else None


def _materialize(graph: onnx.GraphProto, ir_version: int) -> None:
    """Turn ConstantOfShape(float) of a shape initializer into a float initializer (data filled later)."""
    inits = {t.name: t for t in graph.initializer}
    for i in reversed(range(len(graph.node))):
        node = graph.node[i]
        dtype = _float_value(node) if node.op_type == "ConstantOfShape" else None
        if dtype is None or node.input[0] not in inits:
            continue
        shape = [int(d) for d in numpy_helper.to_array(inits[node.input[0]])]
        elem = helper.np_dtype_to_tensor_dtype(dtype)
        graph.initializer.append(onnx.TensorProto(name=node.output[0], dims=shape, data_type=elem))
        if ir_version < 4:  # IR 3 wants every initializer listed among the graph inputs
            graph.input.append(helper.make_tensor_value_info(node.output[0], elem, shape))
        del graph.node[i]
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for container in (graph.initializer, graph.input):
        for i in reversed(range(len(container))):
            if container[i].name in inits and container[i].name not in used:
                del container[i]


def _fill(t: onnx.TensorProto, a: np.ndarray) -> None:
    """Store `a` as t's raw data in place (no copy of the proto, unlike numpy_helper.from_array)."""
    for f in ("float_data", "double_data", "int32_data", "raw_data"):
        t.ClearField(f)
    t.raw_data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()


def randomize_weights(model: onnx.ModelProto, seed: int = 0, temper: bool = True) -> onnx.ModelProto:
    """A copy whose float initializers are seeded random (fan-in-scaled); int/shape initializers stay.

    With `temper`, logits feeding a final Softmax are rescaled to std ~2 (see `temper_logits`)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    _materialize(out.graph, out.ir_version)
    rng = np.random.default_rng(seed)
    cons = _consumers(out.graph)
    for t in out.graph.initializer:
        dtype = helper.tensor_dtype_to_np_dtype(t.data_type)
        if dtype.kind == "f":
            _fill(t, _draw(rng, tuple(int(d) for d in t.dims), dtype, _role(t.name, cons)))
    return temper_logits(out, random_feed(out, seed)) if temper else out


# Ops through which a positive factor on the logits layer's weight and bias reaches the logits unchanged.
_HOMOGENEOUS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Relu", "MaxPool",
                "AveragePool", "GlobalAveragePool", "Transpose"}


def _logits_layer(graph: onnx.GraphProto, name: str) -> onnx.NodeProto | None:
    producer = {o: n for n in graph.node for o in n.output}
    node = producer.get(name)
    while node is not None and node.op_type in _HOMOGENEOUS:
        node = producer.get(node.input[0])
    return node if node is not None and node.op_type in ("Gemm", "Conv", "MatMul") else None


def temper_logits(model: onnx.ModelProto, feed: dict, target_std: float = 2.0) -> onnx.ModelProto:
    """Scale (in place) the layer making a final Softmax's logits to logits std `target_std`.

    Random BN statistics let residual nets grow ~2x per block: a one-hot softmax would blind the check."""
    outputs = {o.name for o in model.graph.output}
    softmaxes = [n for n in model.graph.node if n.op_type == "Softmax" and n.output[0] in outputs]
    layers = [(n.input[0], _logits_layer(model.graph, n.input[0])) for n in softmaxes]
    layers = [(name, layer) for name, layer in layers if layer is not None]
    try:
        import onnxruntime  # noqa: F401 - an oracle, allowed in benchmarks
    except ImportError:
        return model
    if not layers:
        return model
    from .peers import ort_session

    n_out = len(model.graph.output)
    for name, _ in layers:  # expose the logits for one run, without copying the weights
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    try:
        logits = ort_session(model, optimize=False).run([name for name, _ in layers], feed)
    finally:
        del model.graph.output[n_out:]
    inits = {t.name: t for t in model.graph.initializer}
    for (_, layer), z in zip(layers, logits):
        std = float(np.std(z))
        if not np.isfinite(std) or std == 0:
            continue
        for x in layer.input[1:]:
            t = inits.get(_source(model.graph, x))
            if t is not None:
                a = numpy_helper.to_array(t)
                _fill(t, (a * (target_std / std)).astype(a.dtype))
    return model


def _source(graph: onnx.GraphProto, name: str) -> str:
    """The initializer a value is a pass-through (Reshape, Unsqueeze...) of, else the name itself."""
    producer = {o: n for n in graph.node for o in n.output}
    while name in producer and producer[name].op_type in _PASS_THROUGH:
        name = producer[name].input[0]
    return name


def _input_dtype(vi: onnx.ValueInfoProto) -> np.dtype:
    return helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)


def random_feed(model: onnx.ModelProto, seed: int = 0, dims: dict | None = None) -> dict[str, np.ndarray]:
    """Random data for every graph input that is not an initializer; `dims` binds symbolic dims (else 1)."""
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feed = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else int((dims or {}).get(d.dim_param, 1))
                      for d in vi.type.tensor_type.shape.dim)
        feed[vi.name] = random_tensor(rng, shape, _input_dtype(vi), int_high=8)
    return feed
