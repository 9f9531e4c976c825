"""ONNX interop for training: `load_onnx(path) -> Cell` whose float initializers are trainable Parameters,
and `export(cell, *inputs, file_name=...)` which traces a Cell and writes an ONNX model."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .dtypes import onnx_elem_type
from .errors import ContextError, InputNameError, InputShapeError, InputTypeError
from .ir import Graph, TensorType, Value
from .nn.cell import Cell
from .onnx_frontend import import_model, load_model
from .tensor import Parameter, Tensor, Trace, apply, wrap


class OnnxCell(Cell):
    """Runs an imported graph node by node through the functional layer, so it trains in both modes.
    Float initializers of rank >= 1 become Parameters; 0-d ones (scales, epsilons) stay constants."""

    def __init__(self, graph: Graph, initializers: set[str]):
        super().__init__()
        object.__setattr__(self, "graph", graph)
        leaves = {}
        for v, arr in graph.constants.items():
            if v.name in initializers and arr.dtype.kind == "f" and arr.ndim >= 1:
                p = Parameter(np.array(arr), v.name)
                self._params[v.name] = p
                leaves[v] = p
            else:
                leaves[v] = Tensor(arr)
        object.__setattr__(self, "_leaves", leaves)

    def construct(self, *inputs):
        g = self.graph
        if len(inputs) != len(g.inputs):
            raise InputNameError(
                f"the model takes {len(g.inputs)} inputs ({[v.name for v in g.inputs]}), "
                f"got {len(inputs)}"
            )
        env = dict(self._leaves)
        for v, t in zip(g.inputs, inputs):
            t = wrap(t)
            _check_input(v, t)
            env[v] = t
        for n in g.nodes:
            outs = apply(
                n.op,
                *(None if v is None else env[v] for v in n.inputs),
                outputs=len(n.outputs),
                domain=n.domain,
                opset=n.opset,
                **n.attrs,
            )
            env.update(zip(n.outputs, outs if isinstance(outs, tuple) else (outs,)))
        res = tuple(env[v] for v in g.outputs)
        return res[0] if len(res) == 1 else res


def _check_input(v, t: Tensor) -> None:
    want = v.type
    if not isinstance(want, TensorType):
        return
    if want.dtype is not None and t.dtype != want.dtype:
        raise InputTypeError(f"input {v.name!r}: dtype {t.dtype}, expected {want.dtype}")
    if want.shape is not None:
        if len(t.shape) != len(want.shape) or any(
            isinstance(d, int) and isinstance(g, int) and d != g for d, g in zip(want.shape, t.shape)
        ):
            raise InputShapeError(
                f"input {v.name!r}: shape {tuple(t.shape)}, expected "
                f"{tuple(d if isinstance(d, int) else str(d) for d in want.shape)}"
            )


def load_onnx(path) -> OnnxCell:
    """An ONNX model (path, bytes or ModelProto) as a trainable Cell."""
    proto, base = load_model(path)
    inits = {t.name for t in proto.graph.initializer}
    return OnnxCell(import_model(proto, base), inits)


# ---------------------------------------------------------------- export


def _attr(name, value):
    if isinstance(value, np.ndarray):
        return helper.make_attribute(name, numpy_helper.from_array(value))
    if isinstance(value, tuple):
        value = list(value)
    return helper.make_attribute(name, value)


def _value_info(v):
    t = v.type
    dims = [d if isinstance(d, int) else str(d) for d in t.shape]
    return helper.make_tensor_value_info(v.name, onnx_elem_type(t.dtype), dims)


def export(cell: Cell, *inputs, file_name: str, file_format: str = "ONNX") -> str:
    """Trace `cell` on example inputs (dynamic dims from `cell.set_inputs`) and write an ONNX model whose
    initializers are the current parameter values. Returns the file name written."""
    if file_format.upper() != "ONNX":
        raise ContextError(f"export: unsupported file_format {file_format!r} (only 'ONNX')")
    sig = getattr(cell, "_input_signature", None) or tuple(wrap(t) for t in inputs)
    tr = Trace(eager=False, name="export")
    args = [Value(wrap(s)._type, f"input{i}") for i, s in enumerate(sig)]
    with tr:
        out = cell(*(Tensor(None, _value=v, _trace=tr) for v in args))
        outs = [tr.value_of(wrap(o)) for o in (out if isinstance(out, tuple) else (out,))]
    inits = [numpy_helper.from_array(np.asarray(t._data), v.name) for v, t in tr.inputs]
    inits += [numpy_helper.from_array(np.asarray(a), v.name) for v, a in tr.b.constants.items()]
    nodes, opsets = [], {}
    for n in tr.b.nodes:
        node = helper.make_node(
            n.op,
            [v.name if v is not None else "" for v in n.inputs],
            [v.name for v in n.outputs],
            name=n.name,
            domain=n.domain or None,
        )
        node.attribute.extend(_attr(k, a) for k, a in n.attrs.items())
        nodes.append(node)
        opsets[n.domain] = max(opsets.get(n.domain, 1), n.opset)
    out_names = []
    for i, v in enumerate(outs):  # graph outputs get stable names
        name = f"output{i}"
        nodes.append(helper.make_node("Identity", [v.name], [name]))
        out_names.append((name, v))
    graph = helper.make_graph(
        nodes,
        type(cell).__name__,
        [_value_info(v) for v in args],
        [_value_info(Value(v.type, name)) for name, v in out_names],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, o) for d, o in opsets.items()] or [helper.make_opsetid("", 18)],
        producer_name="msgx",
    )
    model.ir_version = min(model.ir_version, 9)
    onnx.save(model, file_name)
    return file_name
