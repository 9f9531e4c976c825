"""O0 passes, each a Graph -> Graph function: symbolic shape inference, constant folding, DCE, CSE."""
from __future__ import annotations

import numpy as np

from . import ops
from .errors import MsgxError, ShapeError
from .ir import UNKNOWN, Graph, Node, TensorType, Value, substitute

FOLD_LIMIT = 1 << 20  # elements; folding bigger tensors trades memory for nothing


def subgraphs_of(node: Node):
    for a in node.attrs.values():
        for g in (a if isinstance(a, tuple) else (a,)):
            if isinstance(g, Graph):
                yield g


def _known(v: Value, consts: dict) -> np.ndarray | None:
    return None if v is None else consts.get(v)


def infer_shapes(graph: Graph, consts: dict | None = None) -> Graph:
    """Recompute every node's output types with the registry's symbolic rules.

    Small integer tensors derived from shapes (Shape -> Gather -> Concat ...) are evaluated on symbolic
    dims, so a Reshape fed by such a chain gets symbolic output dims. Where our rule is missing or fails,
    the type from ONNX's own inference (already on the value) is kept.
    """
    consts = dict(graph.constants) if consts is None else {**consts, **graph.constants}
    mapping: dict[Value, Value] = {}
    new_nodes = []
    for n in graph.nodes:
        ins = tuple(None if v is None else mapping.get(v, v) for v in n.inputs)
        opdef = ops.get(n.op, n.domain, n.opset, n.name)
        attrs = {**opdef.attrs, **n.attrs}
        types = _infer_node(n, opdef, attrs, ins, consts)
        outs = []
        for v, t in zip(n.outputs, types):
            nv = v if t == v.type else Value(_merge(t, v.type), v.name)
            mapping[v] = nv
            outs.append(nv)
        node = Node(n.op, ins, tuple(outs), n.attrs, n.domain, n.opset, n.name)
        new_nodes.append(node)
        propagate_value(node, opdef, attrs, consts)
    return substitute(graph.replace(nodes=tuple(new_nodes)), mapping)


def _infer_node(n: Node, opdef, attrs, ins, consts) -> list:
    if opdef.infer is None:
        return [v.type for v in n.outputs]
    ctx = ops.Ctx(attrs, len(n.outputs), n.opset, n.name, tuple(_known(v, consts) for v in ins))
    try:
        result = opdef.infer(ctx, *(v.type if v is not None else None for v in ins))
    except ShapeError as e:
        raise ShapeError(f"node {n.describe()}: {e}") from None
    except Exception:  # a rule that cannot handle unknown ranks etc.: keep ONNX's answer
        return [v.type for v in n.outputs]
    result = list(result) if isinstance(result, (tuple, list)) else [result]
    return result + [v.type for v in n.outputs[len(result):]]


def _merge(ours, onnx_type):
    """Prefer our (symbolic) answer; fill what it leaves unknown from ONNX's."""
    if not isinstance(ours, TensorType) or not isinstance(onnx_type, TensorType):
        return ours if ours is not None and ours != UNKNOWN else onnx_type
    dtype = ours.dtype if ours.dtype is not None else onnx_type.dtype
    shape = ours.shape if ours.shape is not None else onnx_type.shape
    return TensorType(dtype, shape)


def propagate_value(node: Node, opdef, attrs, consts) -> None:
    """Record compile-time values of shape computations (maybe symbolic) for later inference rules."""
    if node.op == "Shape" and node.domain == "":
        t = node.inputs[0].type
        if isinstance(t, TensorType) and t.shape is not None:
            start, end = attrs.get("start", 0), attrs.get("end", None)
            dims = list(t.shape)[slice(start, end)]
            arr = np.array(dims, dtype=np.int64 if all(isinstance(d, int) for d in dims) else object)
            consts[node.outputs[0]] = arr
        return
    if not opdef.shape_op or not opdef.deterministic:
        return
    values = [_known(v, consts) for v in node.inputs]
    if any(v is not None and a is None for v, a in zip(node.inputs, values)):
        return  # some input is not known at compile time
    if all(a is None or a.size <= 64 for a in values):
        try:
            out = opdef.ref(ops.Ctx(attrs, len(node.outputs), node.opset, node.name), *values)
        except Exception:  # symbolic evaluation is best effort
            return
        for v, a in zip(node.outputs, out if isinstance(out, tuple) else (out,)):
            consts[v] = np.asarray(a)


def fold_constants(graph: Graph) -> Graph:
    """Evaluate nodes whose inputs are all constants (and Shape of static shapes) at compile time."""
    constants = dict(graph.constants)
    kept = []
    for n in graph.nodes:
        value = _fold(n, constants)
        if value is None:
            kept.append(n)
            continue
        for v, a in zip(n.outputs, value):
            constants[v] = a
    return graph.replace(nodes=tuple(kept), constants=constants)


def _fold(n: Node, constants) -> list[np.ndarray] | None:
    opdef = ops.get(n.op, n.domain, n.opset, n.name)
    if not opdef.deterministic or any(True for _ in subgraphs_of(n)):
        return None
    attrs = {**opdef.attrs, **n.attrs}
    if n.op == "Shape" and n.domain == "":
        t = n.inputs[0].type
        if not (isinstance(t, TensorType) and t.is_static):
            return None
        values = [np.zeros(t.shape, dtype=np.uint8)]  # only the shape matters to the kernel
    else:
        if any(v is not None and v not in constants for v in n.inputs):
            return None
        values = [None if v is None else constants[v] for v in n.inputs]
    try:
        out = opdef.ref(ops.Ctx(attrs, len(n.outputs), n.opset, n.name), *values)
    except MsgxError:
        return None  # leave the error to run time, where it names the feed that caused it
    except Exception:
        return None
    out = list(out) if isinstance(out, (tuple, list)) else [out]
    if any(not isinstance(a, (np.ndarray, np.generic)) for a in out):
        return None  # sequences and optionals stay runtime values
    out = [np.asarray(a) for a in out]
    if len(out) != len(n.outputs) or any(a.dtype == object and a.size and not isinstance(
            a.flat[0], str) for a in out) or sum(a.size for a in out) > FOLD_LIMIT:
        return None
    return out


def eliminate_dead_code(graph: Graph) -> Graph:
    """Drop nodes and constants no output depends on (subgraph captures count as uses)."""
    live = set(graph.outputs)
    kept = []
    for n in reversed(graph.nodes):
        if not any(v in live for v in n.outputs) and ops.get(n.op, n.domain, n.opset).deterministic:
            continue
        kept.append(n)
        live.update(v for v in n.inputs if v is not None)
        for g in subgraphs_of(n):
            live.update(captured_values(g))
    constants = {v: a for v, a in graph.constants.items() if v in live}
    return graph.replace(nodes=tuple(reversed(kept)), constants=constants)


def captured_values(g: Graph) -> set[Value]:
    """Values a subgraph reads from enclosing scopes."""
    local = set(g.inputs) | set(g.constants) | {v for n in g.nodes for v in n.outputs}
    used = {v for n in g.nodes for v in n.inputs if v is not None} | set(g.outputs)
    for n in g.nodes:
        for sub in subgraphs_of(n):
            used |= captured_values(sub)
    return used - local


def attr_key(value):
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes() if value.dtype != object else repr(value))
    if isinstance(value, (list, tuple)):
        return tuple(attr_key(v) for v in value)
    if isinstance(value, Graph):
        return ("graph", id(value))
    return value


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """Merge nodes with the same op, attributes and inputs, and identical small constants."""
    mapping: dict[Value, Value] = {}
    seen_consts: dict = {}
    constants = {}
    for v, a in graph.constants.items():
        key = attr_key(a) if a.size <= 64 else ("big", id(a))
        if key in seen_consts and seen_consts[key].type == v.type:
            mapping[v] = seen_consts[key]
        else:
            seen_consts[key] = v
            constants[v] = a
    seen: dict = {}
    kept = []
    for n in graph.nodes:
        ins = tuple(None if v is None else mapping.get(v, v) for v in n.inputs)
        deterministic = ops.get(n.op, n.domain, n.opset).deterministic
        key = (n.op, n.domain, n.opset, tuple(id(v) for v in ins), attr_key(tuple(sorted(n.attrs.items()))))
        if deterministic and key in seen:
            for old, new in zip(n.outputs, seen[key].outputs):
                mapping[old] = new
            continue
        node = Node(n.op, ins, n.outputs, n.attrs, n.domain, n.opset, n.name)
        seen[key] = node
        kept.append(node)
    # graph outputs that merged into another value keep their own Value (and name) via the mapping
    return substitute(graph.replace(nodes=tuple(kept), constants=constants), mapping)


def fold_channel_affine(graph: Graph) -> Graph:
    """A per-channel affine op after a Conv or an inference BatchNormalization folds into it, as onnxruntime's
    Conv+BatchNorm, Conv+Mul and Conv+Add fusions do: BatchNormalization with constant parameters, or Mul,
    Add or Sub by a constant that varies along the channel axis only (exporters write a bias or a scale that
    way; DenseNet's zoo model has Conv -> BatchNormalization -> Mul -> Add). Repeated until nothing folds, so
    such a chain becomes the Conv's weights and bias, or the BatchNormalization's scale and bias. Computed in
    float64, rounded once, as onnxruntime does."""
    while True:
        folded = _fold_channel_affine_once(graph)
        if folded is graph:
            return graph
        graph = folded


def _fold_channel_affine_once(graph: Graph) -> Graph:
    users, producers, consts = graph.consumers(), graph.producers(), graph.constants
    constants = dict(consts)
    replaced: dict[Node, Node] = {}
    dropped: set[Node] = set()
    for op in graph.nodes:
        if op.domain or len(op.outputs) != 1 or op.op not in ("BatchNormalization", "Mul", "Add", "Sub"):
            continue
        x = next((v for v in op.inputs if v is not None and v not in consts), None)
        prod = producers.get(x)
        if prod is None or prod in replaced or prod in dropped or len(users.get(x, ())) != 1 \
                or x in graph.outputs or (op.op in ("Sub", "BatchNormalization") and op.inputs[0] is not x):
            continue
        params = _affine_params(prod, consts)
        if params is None:
            continue
        p0, p1, channels, dtype = params
        affine = _channel_affine(op, x, consts, channels, dtype, len(x.type.shape) if x.type.shape else None)
        if affine is None:
            continue
        factor, shift = affine
        # prod computes p0 (per-channel weights) + p1 per channel: scale both by factor, add shift
        scaled = p0.astype(np.float64) * factor.reshape((-1,) + (1,) * (p0.ndim - 1))
        bias = p1.astype(np.float64) * factor + shift
        name = op.outputs[0].name
        v0 = Value(TensorType(dtype, p0.shape), f"{name}_folded_{'w' if prod.op == 'Conv' else 'scale'}")
        v1 = Value(TensorType(dtype, (channels,)), f"{name}_folded_bias")
        constants[v0], constants[v1] = scaled.astype(dtype), bias.astype(dtype)
        ins = (prod.inputs[0], v0, v1) + (prod.inputs[3:5] if prod.op == "BatchNormalization" else ())
        replaced[prod] = Node(prod.op, ins, op.outputs, prod.attrs, "", prod.opset, prod.name)
        dropped.add(op)
    if not replaced:
        return graph
    nodes = tuple(replaced.get(n, n) for n in graph.nodes if n not in dropped)
    return eliminate_dead_code(graph.replace(nodes=nodes, constants=constants))


def _affine_params(node: Node, consts: dict) -> tuple | None:
    """(the per-channel multiplied tensor, the bias, channels, dtype) of a Conv with constant float weights
    (and bias) or of an inference BatchNormalization with constant parameters; None for anything else."""
    if node.domain or len(node.outputs) != 1:
        return None
    if node.op == "Conv":
        w = consts.get(node.inputs[1])
        has_b = len(node.inputs) > 2 and node.inputs[2] is not None
        b = consts.get(node.inputs[2]) if has_b else None
        if w is None or w.dtype.kind != "f" or w.ndim < 3 or has_b and (b is None or b.shape != w.shape[:1]):
            return None
        return w, (np.zeros(w.shape[0], w.dtype) if b is None else b), w.shape[0], w.dtype
    if node.op == "BatchNormalization" and not node.attrs.get("training_mode"):
        params = [consts.get(v) for v in node.inputs[1:5]]
        if any(p is None for p in params) or params[0].dtype.kind != "f" or params[0].ndim != 1 \
                or any(p.shape != params[0].shape for p in params):
            return None
        return params[0], params[1], params[0].shape[0], params[0].dtype
    return None


def _channel_affine(op: Node, x: Value, consts: dict, channels: int, dtype, rank: int | None):
    """(factor, shift) per channel, float64, of `op` applied to x (whose axis 1 has `channels`), or None when
    op is not affine per channel with constant parameters of x's dtype."""
    if op.op == "BatchNormalization":
        if op.attrs.get("training_mode") or op.inputs[0] is not x:
            return None
        params = [consts.get(v) for v in op.inputs[1:5]]
        if any(p is None or p.shape != (channels,) for p in params):
            return None
        scale, bias, mean, var = (p.astype(np.float64) for p in params)
        factor = scale / np.sqrt(var + op.attrs.get("epsilon", 1e-5))
        return factor, bias - mean * factor
    c = next((consts.get(v) for v in op.inputs if v is not x), None)
    if c is None or c.dtype != dtype or rank is None or c.ndim > rank or rank < 2:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape  # broadcast against (N, C, spatial...): only C may differ from 1
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    per_channel = np.broadcast_to(c.reshape(-1).astype(np.float64), (channels,))
    if op.op == "Mul":
        return per_channel, np.zeros(channels)
    return np.ones(channels), per_channel if op.op == "Add" else -per_channel


def fuse_conv_epilogue(graph: Graph) -> Graph:
    """Conv -> [Add (or two-input Sum) of a residual of the conv's shape and dtype] -> [Relu / Clip (constant
    bounds)] becomes msgx::FusedConv (inputs x, w, b, z), which applies them in the pass that adds the conv's
    bias: ResNet's blocks end in Conv -> Add -> Relu. Each absorbed value must have the next op as its only
    user and not be a graph output. The fused node stands where the last absorbed op stood, after the
    residual's producer."""
    users = graph.consumers()
    placed: dict[Node, Node] = {}   # last absorbed node -> the FusedConv in its place
    dropped: set[Node] = set()

    def sole_user(v):
        got = users.get(v, ())
        return got[0] if len(got) == 1 and v not in graph.outputs and got[0] not in dropped else None

    for conv in graph.nodes:
        if conv.op != "Conv" or conv.domain or conv in dropped:
            continue
        y, inputs, attrs, absorbed = conv.outputs[0], conv.inputs, {**conv.attrs, "activation": ""}, [conv]
        add = sole_user(y)
        if add is not None and add.op in ("Add", "Sum") and not add.domain and len(add.inputs) == 2 \
                and len(set(add.inputs)) == 2:   # Sum of two: the zoo's ResNets write their residuals so
            z = add.inputs[1] if add.inputs[0] is y else add.inputs[0]
            if z.type == y.type and z.type.shape is not None:
                inputs, y = (conv.inputs + (None,))[:3] + (z,), add.outputs[0]
                absorbed.append(add)
        act = sole_user(y)
        if act is not None and act.op in ("Relu", "Clip") and not act.domain:
            bounds = _clip_bounds(act, graph.constants) if act.op == "Clip" else (None, None)
            if bounds is not None:
                attrs["activation"] = act.op
                if act.op == "Clip":
                    attrs["activation_min"], attrs["activation_max"] = bounds
                absorbed.append(act)
        if len(absorbed) > 1:
            placed[absorbed[-1]] = Node("FusedConv", inputs, absorbed[-1].outputs, attrs, "msgx", 1, conv.name)
            dropped.update(absorbed)
    if not placed:
        return graph
    return graph.replace(nodes=tuple(placed.get(n, n) for n in graph.nodes if n in placed or n not in dropped))


def _clip_bounds(clip: Node, constants) -> tuple | None:
    """(min, max) of a Clip as Python floats (None = unbounded), or None when a bound is not constant."""
    if clip.opset < 11:
        return clip.attrs.get("min"), clip.attrs.get("max")
    bounds = []
    for v in (clip.inputs[1:] + (None, None))[:2]:
        if v is None:
            bounds.append(None)
        elif v in constants and constants[v].size == 1:
            bounds.append(float(constants[v].reshape(())))
        else:
            return None
    return tuple(bounds)
