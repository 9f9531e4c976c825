"""IR printer (golden text) and verifier."""
import numpy as np
import pytest

from framework.errors import ModelError
from framework.ir import Graph, Node, TensorType, Value, print_graph, symbol, verify


def _graph():
    B = symbol("B")
    x = Value(TensorType(np.float32, (B, 128)), "x")
    c = Value(TensorType(np.float32, (128,)), "c")
    y = Value(TensorType(np.float32, (B, 128)), "y")
    z = Value(TensorType(np.float32, (B, 128)), "z")
    nodes = (Node("Add", (x, c), (y,)), Node("Relu", (y,), (z,)))
    return Graph((x,), (z,), nodes, {c: np.zeros(128, np.float32)}, "g"), (x, c, y, z)


def test_printer_golden():
    g, _ = _graph()
    assert print_graph(g) == "\n".join([
        "graph g(",
        "  %0: f32[B,128]  # x",
        ") {",
        "  %1: f32[128] = const <f32[128]>",
        "  %2: f32[B,128] = Add(%0, %1)",
        "  %3: f32[B,128] = Relu(%2)",
        "  return %3",
        "}",
    ])


def test_symbolic_dims_print_as_expressions():
    S = symbol("seq")
    v = Value(TensorType(np.int64, (S * 2, S + 1, 3)), "v")
    assert str(v.type) == "i64[2*seq,seq + 1,3]"


def test_verifier_accepts_valid_graph():
    g, _ = _graph()
    verify(g)


def test_verifier_rejects_use_before_definition():
    g, (x, c, y, z) = _graph()
    bad = g.replace(nodes=tuple(reversed(g.nodes)))
    with pytest.raises(ModelError, match="before it is defined"):
        verify(bad)


def test_verifier_rejects_double_definition_and_missing_output():
    g, (x, c, y, z) = _graph()
    with pytest.raises(ModelError, match="defined twice"):
        verify(g.replace(nodes=g.nodes + (Node("Relu", (y,), (z,)),)))
    with pytest.raises(ModelError, match="never produced"):
        verify(g.replace(outputs=(Value(TensorType(np.float32, (1,)), "ghost"),)))


def test_values_compare_by_identity():
    a = Value(TensorType(np.float32, (1,)), "same")
    b = Value(TensorType(np.float32, (1,)), "same")
    assert a != b and len({a, b}) == 2
