"""Function inlining: model-local functions (ModelProto.functions) always, and ops the ONNX spec defines by a
function body when no kernel is registered for them. Works on protos, before the graph is imported."""
from __future__ import annotations

import itertools

import onnx
import onnx.defs
from onnx import helper

from . import ops
from .errors import ModelError

MAX_DEPTH = 32  # deeper nesting means a recursive function


class Inliner:
    def __init__(self, functions, opsets: dict[str, int], type_hints: dict[str, onnx.TypeProto]):
        self.functions = {(f.domain, f.name): f for f in functions}
        self.opsets, self.hints = opsets, type_hints
        self.counter = itertools.count()

    def expand_graph(self, graph: onnx.GraphProto) -> None:
        """Replace, in place, every call of a function in `graph` (and its subgraphs) by the body."""
        new_nodes = []
        for n in graph.node:
            new_nodes.extend(self.expand_node(n, 0))
        del graph.node[:]
        graph.node.extend(new_nodes)

    def expand_node(self, n: onnx.NodeProto, depth: int) -> list[onnx.NodeProto]:
        for a in n.attribute:
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                self.expand_graph(g)
        body = self.body_of(n)
        if body is None:
            return [n]
        if depth >= MAX_DEPTH:
            raise ModelError(f"function {n.domain}::{n.op_type} nests deeper than {MAX_DEPTH} (recursive?)")
        out = []
        for m in self.instantiate(n, body):
            out.extend(self.expand_node(m, depth + 1))
        return out

    def body_of(self, n: onnx.NodeProto) -> onnx.FunctionProto | None:
        domain = "" if n.domain == "ai.onnx" else n.domain
        local = self.functions.get((n.domain, n.op_type))
        if local is not None:
            return local
        opset = self.opsets.get(domain, 1)
        if ops.lookup(n.op_type, domain, opset) is not None or domain not in ("", "ai.onnx.ml"):
            return None
        try:
            schema = onnx.defs.get_schema(n.op_type, opset, domain)
        except onnx.defs.SchemaError:
            return None
        try:
            if schema.has_function:
                return schema.get_function_with_opset_version(opset) or schema.function_body
            if schema.has_context_dependent_function:
                types = [self.hints[i].SerializeToString() if i in self.hints else b"" for i in n.input]
                if any(not t for t in types):
                    return None
                data = schema.get_context_dependent_function_with_opset_version(
                    opset, n.SerializeToString(), types)
                fn = onnx.FunctionProto()
                fn.ParseFromString(data)
                return fn
        except Exception:  # a body ONNX cannot build for these types: the op stays unsupported
            return None
        return None

    def instantiate(self, call: onnx.NodeProto, fn: onnx.FunctionProto) -> list[onnx.NodeProto]:
        prefix = f"_f{next(self.counter)}_{fn.name}_"
        rename = {formal: actual for formal, actual in zip(fn.input, call.input)}
        rename.update({formal: "" for formal in fn.input[len(call.input):]})
        rename.update({formal: actual for formal, actual in zip(fn.output, call.output)})
        given = {a.name: a for a in call.attribute}
        defaults = {a.name: a for a in fn.attribute_proto}

        def name(x):
            if not x:
                return x
            return rename.setdefault(x, prefix + x)

        body = []
        for m in fn.node:
            attrs = []
            for a in m.attribute:
                if a.ref_attr_name:
                    src = given.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
                    if src is None:
                        continue
                    b = onnx.AttributeProto()
                    b.CopyFrom(src)
                    b.name = a.name
                    attrs.append(b)
                else:
                    attrs.append(a)
            node = helper.make_node(m.op_type, [name(i) for i in m.input], [name(o) for o in m.output],
                                    name=prefix + (m.name or m.op_type), domain=m.domain)
            node.attribute.extend(attrs)
            body.append(node)
        return body


def inline_functions(proto: onnx.ModelProto, opsets: dict[str, int], hints) -> onnx.ModelProto:
    """A copy of `proto` with function calls replaced by their bodies."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    Inliner(model.functions, opsets, hints).expand_graph(model.graph)
    return model
