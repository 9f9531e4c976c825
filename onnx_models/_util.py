"""Small shared helpers for building ONNX graphs with ``onnx.helper``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# onnxruntime 1.32 loads IR 8 and newer, but older tooling may not; stay at the lowest that fits opset 17.
IR_VERSION = 8


class GraphBuilder:
    """Accumulates nodes and initializers; op() returns output names so graphs read as expressions."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counts: dict[str, int] = {}

    def _unique(self, base: str) -> str:
        n = self._counts.get(base, 0)
        self._counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def const(self, name: str, value, dtype=np.float32) -> str:
        """Add an initializer holding ``value`` (scalars stay 0-d) and return its name."""
        name = self._unique(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def weight(self, name: str, shape: Sequence[int], std: float) -> str:
        """Add a seeded normal(0, std) float32 initializer."""
        return self.const(name, self.rng.normal(0.0, std, size=tuple(shape)))

    def op(self, op_type: str, inputs: Sequence[str], name: str | None = None, n_out: int = 1, **attrs):
        """Append a node; returns its output name, or a list of names when n_out > 1."""
        base = self._unique(name or op_type)
        outputs = [base] if n_out == 1 else [f"{base}_out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=base, **attrs))
        return outputs[0] if n_out == 1 else outputs

    def model(
        self,
        name: str,
        inputs: Sequence[onnx.ValueInfoProto],
        outputs: Sequence[onnx.ValueInfoProto],
        doc: str = "",
    ) -> onnx.ModelProto:
        """Wrap the accumulated graph into a checked opset-17 / IR-8 model."""
        graph = helper.make_graph(self.nodes, name, list(inputs), list(outputs), self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="msgx.onnx_models",
            doc_string=doc,
        )
        onnx.checker.check_model(model, full_check=True)
        return model


def tensor_info(name: str, elem_type: int, dims: Sequence[int | str]) -> onnx.ValueInfoProto:
    """Value info with a mix of fixed and symbolic dims."""
    return helper.make_tensor_value_info(name, elem_type, list(dims))


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
