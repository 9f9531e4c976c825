"""ONNX frontend: a model (path, bytes or ModelProto) becomes an msgx Graph with typed, symbolic values."""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from . import ops
from .dtypes import np_dtype, type_string
from .errors import ModelError, MsgxError, UnsupportedOpError
from .ir import UNKNOWN, Graph, Node, OptionalType, SequenceType, TensorType, Value, symbol, verify

MAX_OPSET = onnx.defs.onnx_opset_version()


def load_model(model, base_dir: str | os.PathLike | None = None) -> tuple[onnx.ModelProto, Path | None]:
    """Parse a path, bytes or ModelProto; external data is read only from inside the model's folder."""
    if isinstance(model, onnx.ModelProto):
        proto = model
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto = _parse(bytes(model), "<bytes>")
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelError(f"cannot read model {str(path)!r}: {e.strerror or e}") from None
        proto = _parse(data, str(path))
        base_dir = path.resolve().parent
    else:
        raise ModelError(f"a model is a path, bytes or onnx.ModelProto, not {type(model).__name__}")
    if not proto.HasField("graph"):
        raise ModelError("model has no graph (empty or not an ONNX model)")
    _load_external_data(proto, Path(base_dir) if base_dir is not None else None)
    return proto, base_dir


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelError(f"{where}: not a valid ONNX protobuf ({e})") from None
    return proto


def _external_tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for n in graph.node:
        for a in n.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _external_tensors(g)


def _load_external_data(proto: onnx.ModelProto, base_dir: Path | None) -> None:
    for t in _external_tensors(proto.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        where = info.get("location", "")
        if base_dir is None:
            raise ModelError(f"tensor {t.name!r} has external data {where!r} but the model was not loaded from a path")
        target = (base_dir / where).resolve()
        if not where or os.path.isabs(where) or not target.is_relative_to(base_dir.resolve()):
            raise ModelError(f"tensor {t.name!r}: external data location {where!r} escapes the model folder")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
            with open(target, "rb") as f:
                f.seek(offset)
                raw = f.read(length if length >= 0 else -1)
        except (OSError, ValueError) as e:
            raise ModelError(f"tensor {t.name!r}: cannot read external data {where!r}: {e}") from None
        if length >= 0 and len(raw) != length:
            raise ModelError(f"tensor {t.name!r}: external data {where!r} is truncated")
        t.raw_data = raw
        t.data_location = onnx.TensorProto.DEFAULT
        del t.external_data[:]


def to_array(t: onnx.TensorProto) -> np.ndarray:
    if any(d < 0 for d in t.dims):  # numpy's reshape would read any negative dim as -1 and accept it
        raise ModelError(f"tensor {t.name!r} has a negative dimension: {list(t.dims)}")
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:  # onnx raises several types on malformed tensors
        raise ModelError(f"tensor {t.name!r} is malformed: {e}") from None
    if arr.dtype.kind in "SU":
        arr = arr.astype(object)
    if arr.dtype == object:
        arr = np.vectorize(lambda s: s.decode() if isinstance(s, bytes) else s, otypes=[object])(arr) \
            if arr.size else arr
    return arr


class _Importer:
    def __init__(self, proto: onnx.ModelProto):
        self.opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in proto.opset_import}
        self.opsets.setdefault("", MAX_OPSET)  # a model importing no default opset uses no default-domain op
        if self.opsets[""] > MAX_OPSET or self.opsets[""] < 1:
            raise UnsupportedOpError("*", "", self.opsets[""], why=f"opset must be 1..{MAX_OPSET}")
        self.fresh = itertools.count()
        self.dims: dict[str, object] = {}
        for f in proto.functions:
            for o in f.opset_import:
                self.opsets.setdefault(o.domain, o.version)

    def type_of(self, tp: onnx.TypeProto):
        kind = tp.WhichOneof("value")
        if kind == "tensor_type" or kind == "sparse_tensor_type":
            tt = getattr(tp, kind)
            dtype = np_dtype(tt.elem_type) if tt.elem_type else None
            if not tt.HasField("shape"):
                return TensorType(dtype, None)
            return TensorType(dtype, tuple(self.dim(d) for d in tt.shape.dim))
        if kind == "sequence_type":
            return SequenceType(self.type_of(tp.sequence_type.elem_type))
        if kind == "optional_type":
            return OptionalType(self.type_of(tp.optional_type.elem_type))
        return UNKNOWN

    def dim(self, d: onnx.TensorShapeProto.Dimension):
        if d.HasField("dim_value"):
            if d.dim_value < 0:
                raise ModelError(f"negative dimension {d.dim_value} in a declared shape")
            return int(d.dim_value)
        name = d.dim_param or f"unk{next(self.fresh)}"
        return self.dims.setdefault(name, symbol(name))

    def graph(self, g: onnx.GraphProto, outer: dict[str, Value], hints: dict[str, onnx.TypeProto]) -> Graph:
        scope = dict(outer)
        constants: dict[Value, np.ndarray] = {}
        for t in g.initializer:
            arr = to_array(t)
            v = Value(TensorType(arr.dtype, arr.shape), t.name)
            scope[t.name] = v
            constants[v] = arr
        for t in g.sparse_initializer:
            raise ModelError(f"sparse initializer {t.values.name!r} is not supported")
        inputs = []
        for vi in g.input:
            if vi.name in scope and scope[vi.name] in constants:
                continue  # IR<4 models list initializers as inputs too; they are constants here
            v = Value(self.type_of(vi.type), vi.name)
            scope[vi.name] = v
            inputs.append(v)
        for vi in list(g.value_info) + list(g.output):
            hints.setdefault(vi.name, vi.type)
        nodes = []
        for n in _topological(g, scope):
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                arr = self.constant(n)
                v = Value(TensorType(arr.dtype, arr.shape), n.output[0])
                scope[n.output[0]] = v
                constants[v] = arr
                continue
            ins = tuple(scope[name] if name else None for name in n.input)
            _check_schema_types(n, ins, self.opsets.get("" if n.domain == "ai.onnx" else n.domain, 1))
            attrs = {a.name: self.attr(a, scope, hints, n) for a in n.attribute}
            outs = tuple(Value(self.type_of(hints[o]) if o in hints else UNKNOWN, o) for o in n.output)
            for name, v in zip(n.output, outs):
                if name:
                    scope[name] = v
            domain = "" if n.domain == "ai.onnx" else n.domain
            nodes.append(Node(n.op_type, ins, outs, attrs, domain, self.opsets.get(domain, 1), n.name))
        try:
            outputs = tuple(scope[o.name] for o in g.output)
        except KeyError as e:
            raise ModelError(f"graph {g.name!r}: output {e.args[0]!r} is never produced") from None
        for v, vi in zip(outputs, g.output):
            hints.setdefault(v.name, vi.type)
        return Graph(tuple(inputs), outputs, tuple(nodes), constants, g.name or "graph")

    def constant(self, n: onnx.NodeProto) -> np.ndarray:
        if len(n.attribute) != 1:
            raise ModelError(f"Constant node {n.name!r} must have exactly one value attribute")
        a = n.attribute[0]
        value = helper.get_attribute_value(a)
        if a.name == "value":
            return to_array(value)
        if a.name == "sparse_value":
            raise ModelError(f"Constant node {n.name!r}: sparse values are not supported")
        dtypes = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                  "value_ints": np.int64, "value_string": object, "value_strings": object}
        if a.name not in dtypes:
            raise ModelError(f"Constant node {n.name!r}: unknown attribute {a.name!r}")
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        return np.array(value, dtype=dtypes[a.name])

    def attr(self, a: onnx.AttributeProto, scope, hints, n):
        if a.ref_attr_name:
            raise ModelError(f"node {n.name!r}: attribute reference {a.ref_attr_name!r} outside a function")
        if a.type == onnx.AttributeProto.GRAPH:
            return self.graph(a.g, scope, hints)
        if a.type == onnx.AttributeProto.GRAPHS:
            return tuple(self.graph(g, scope, hints) for g in a.graphs)
        if a.type == onnx.AttributeProto.TENSOR:
            return to_array(a.t)
        if a.type == onnx.AttributeProto.TENSORS:
            return tuple(to_array(t) for t in a.tensors)
        if a.type == onnx.AttributeProto.TYPE_PROTO:
            return self.type_of(a.tp)
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            return value.decode(errors="replace")
        if isinstance(value, list):
            return tuple(v.decode(errors="replace") if isinstance(v, bytes) else v for v in value)
        return value


_CHECKED_TYPES = {f"tensor({t})" for t in ("float", "double", "float16", "bfloat16", "bool", "string", "int8",
                                             "int16", "int32", "int64", "uint8", "uint16", "uint32",
                                             "uint64")}


def _check_schema_types(n: onnx.NodeProto, ins, opset: int) -> None:
    """Attribute types and known input dtypes against the ONNX schema: a string where an int belongs is a
    malformed model, not something for numpy to coerce."""
    try:
        schema = onnx.defs.get_schema(n.op_type, opset, n.domain)
    except onnx.defs.SchemaError:
        return  # msgx and custom ops: their kernels check
    who = f"node {n.name or n.op_type!r} ({n.op_type})"
    if not schema.min_input <= len(n.input) <= schema.max_input:
        raise ModelError(f"{who}: {len(n.input)} inputs, the op takes {schema.min_input} to {schema.max_input}")
    for a in n.attribute:
        spec = schema.attributes.get(a.name)
        if spec is not None and a.type and spec.type != onnx.AttributeProto.UNDEFINED and a.type != spec.type:
            raise ModelError(f"{who}: attribute {a.name!r} must be {spec.type.name}, "
                             f"got {onnx.AttributeProto.AttributeType.Name(a.type)}")
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    formals = list(schema.inputs)
    for i, v in enumerate(ins):
        if v is None or not formals or not isinstance(v.type, TensorType) or v.type.dtype is None:
            continue
        f = formals[min(i, len(formals) - 1)]
        if i >= len(formals) and f.option != onnx.defs.OpSchema.FormalParameterOption.Variadic:
            continue
        got = type_string(v.type.dtype)
        ok = allowed.get(f.type_str, {f.type_str})
        if got in _CHECKED_TYPES and got not in ok and any(t.startswith("tensor(") for t in ok):
            raise ModelError(f"{who}: input {i} ({f.name}) is {got}; the op takes {', '.join(sorted(ok))}")


def _topological(g: onnx.GraphProto, scope: dict) -> list[onnx.NodeProto]:
    """Nodes in a valid order (ONNX requires one, but exporters slip); cycles and dangling inputs are errors."""
    produced = {o: i for i, n in enumerate(g.node) for o in n.output if o}
    available = set(scope)
    for i, n in enumerate(g.node):
        for o in n.output:
            if o and produced[o] != i:
                raise ModelError(f"value {o!r} is produced by two nodes")
    pending, order, waiting = list(range(len(g.node))), [], {}
    needs = {i: {x for x in _free_names(n) if x not in available} for i, n in enumerate(g.node)}
    for i, need in needs.items():
        for x in need:
            if x not in produced:
                raise ModelError(f"node {g.node[i].name or g.node[i].op_type!r} reads {x!r}, which no node, "
                                 "input or initializer defines (dangling input)")
            waiting.setdefault(x, []).append(i)
    ready = [i for i in pending if not needs[i]]
    while ready:
        i = ready.pop(0)
        order.append(g.node[i])
        for o in g.node[i].output:
            for j in waiting.get(o, ()):
                needs[j].discard(o)
                if not needs[j]:
                    ready.append(j)
    if len(order) != len(g.node):
        stuck = next(g.node[i] for i in pending if needs[i])
        raise ModelError(f"graph {g.name!r} has a cycle through node {stuck.name or stuck.op_type!r}")
    return order


def _free_names(n: onnx.NodeProto) -> set[str]:
    """Names a node reads, including those its subgraphs capture from the enclosing scope."""
    names = {x for x in n.input if x}
    for a in n.attribute:
        for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            local = {t.name for t in sub.initializer} | {i.name for i in sub.input}
            local |= {o for m in sub.node for o in m.output}
            for m in sub.node:
                names |= {x for x in _free_names(m) if x not in local}
            names |= {o.name for o in sub.output if o.name not in local}
    return names


def import_model(model, base_dir=None) -> Graph:
    """Load and convert a model; types come from ONNX shape inference, refined by ours (symbolic)."""
    from .functions import inline_functions
    from .gradient_op import expand_gradient_ops, is_gradient
    from .passes import infer_shapes

    proto, _ = load_model(model, base_dir)
    importer = _Importer(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(_typed_view(proto), strict_mode=False, data_prop=True)
    except Exception:  # ONNX's inference is advisory; ours runs after it either way
        inferred = proto
    hints = {vi.name: vi.type for vi in list(inferred.graph.value_info) + list(inferred.graph.input)}
    try:
        if proto.functions or any(ops.lookup(n.op_type, n.domain, importer.opsets.get(n.domain, 1)) is None
                                  for n in _proto_nodes(proto.graph)):
            proto = inline_functions(proto, importer.opsets, hints)
        graph = importer.graph(proto.graph, {}, hints)
    except MsgxError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as e:
        raise ModelError(f"malformed model: {type(e).__name__}: {e}") from None
    verify(graph)
    if any(is_gradient(n) for n in graph.nodes):
        graph = expand_gradient_ops(graph)
        verify(graph)
    for n in _all_nodes(graph):
        ops.get(n.op, n.domain, n.opset, n.name or n.op)
    return infer_shapes(graph)


# initializers up to this many elements keep their data for ONNX's inference (shape operands, axes, pads)
INFERENCE_DATA_ELEMS = 1024
_INT_TENSORS = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}


def _typed_view(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model for ONNX's shape inference: its big float initializers declared as typed graph inputs
    instead. Inference serializes the model it is given and parses the result: zfnet512's 330 MB of weights
    made that 2.3 s of a 2.9 s session setup, and inference needs only their types."""
    graph = proto.graph
    big = [t for t in graph.initializer
           if t.data_type not in _INT_TENSORS and int(np.prod(t.dims)) > INFERENCE_DATA_ELEMS]
    if not big:
        return proto
    view = onnx.ModelProto(ir_version=proto.ir_version, opset_import=proto.opset_import,
                           functions=proto.functions)
    g = view.graph
    g.name = graph.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(g, field).extend(getattr(graph, field))
    dropped = {t.name for t in big}
    g.initializer.extend(t for t in graph.initializer if t.name not in dropped)
    declared = {i.name for i in graph.input}
    g.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                   for t in big if t.name not in declared)
    return view


def _proto_nodes(g: onnx.GraphProto):
    for n in g.node:
        yield n
        for a in n.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _proto_nodes(sub)


def _all_nodes(graph: Graph):
    for n in graph.nodes:
        yield n
        for a in n.attrs.values():
            for g in (a if isinstance(a, tuple) else (a,)):
                if isinstance(g, Graph):
                    yield from _all_nodes(g)
