"""Bytecode templates: a program refilled from a cached template for new sizes is exactly the program a full
encode (every cache emptied) gives for those sizes, and declines what the full encode declines.

Random bodies (broadcasting, reductions over any axis, keepdims=0, reshapes, MatMul, GlobalAveragePool,
Cast, Where) meet random sizes where dims are 0, 1 or more, visited in random order so templates built at
one size are reused at others."""
from __future__ import annotations

import numpy as np
import pytest

import dvm_runtime.gpu.backend  # noqa: F401 - registers the "gpu" encoding target (no CuPy needed to encode)
import onnx_models
from dvm_runtime import encoder, pyvm
from dvm_runtime.backend import _shape_inputs
from framework.backends import NUMPY
from framework.executor import GraphExecutor, run_subgraph
from framework.ir import Graph, Node, TensorType, Value, symbol
from framework.session import InferenceSession

from .test_pyvm import SHAPES, _Capture

F32, F16, I64 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.int64)
SYMS = (symbol("a"), symbol("b"), symbol("c"))


def _node(op, ins, out, **attrs):
    return Node(op, tuple(ins), (out,), attrs, "", 18)


def random_body(rng):
    """(body, input layouts): a layout lists, per input dim, a symbol index or None (a dim of 1)."""
    kind = rng.choice(["elementwise", "matmul", "reshape", "pool"])
    rank = 3 if kind == "pool" else int(rng.integers(1, 4))
    layouts, inputs, consts, nodes = [], [], {}, []

    def new_input(full=False):
        """full: every dim a symbol; else some dims 1 and maybe fewer leading dims (broadcast)."""
        lay = [k if full or rng.random() < 0.7 else None for k in range(rank)]
        lay = lay if full else lay[int(rng.integers(0, rank)):]
        v = Value(TensorType(F32, tuple(1 if k is None else SYMS[k] for k in lay)))
        inputs.append(v)
        layouts.append(lay)
        return v
    x = new_input(full=True)
    live = [x]
    if kind == "matmul":  # a host MatMul feeding an epilogue; the weight is [last dim of x, 3]
        w = Value(TensorType(F32, (SYMS[rank - 1], 3)))
        inputs.append(w)
        layouts.append([rank - 1, "3"])
        y = Value(TensorType(F32, None))
        nodes.append(_node("MatMul", (x, w), y))
        live = [y]
    elif kind == "reshape":  # flatten the input (a buffer reshape), then compute on it
        y = Value(TensorType(F32, None))
        shape = Value(TensorType(I64, (1,)))
        consts[shape] = np.array([-1], np.int64)
        nodes.append(_node("Reshape", (x, shape), y))
        live = [y]
    elif kind == "pool":
        y = Value(TensorType(F32, None))
        nodes.append(_node("GlobalAveragePool", (x,), y))
        live = [y]
    for _ in range(int(rng.integers(1, 5))):
        a = live[int(rng.integers(len(live)))]
        y = Value(TensorType(F32, None))
        r = rng.random()
        if r < 0.35:  # a second operand broadcast against the first (only where shapes stay aligned)
            b = new_input() if kind == "elementwise" else a
            nodes.append(_node(str(rng.choice(["Add", "Mul", "Sub", "Max"])), (a, b), y))
        elif r < 0.5:
            half = Value(TensorType(F32, ()))
            consts[half] = np.float32(0.5)
            nodes.append(_node("Mul", (a, half), y))
        elif r < 0.65:
            nodes.append(_node(str(rng.choice(["Exp", "Neg", "Sqrt", "Relu"])), (a,), y))
        elif r < 0.75:  # compare, select, casts there and back
            m, c = Value(TensorType(np.dtype(bool), None)), Value(TensorType(I64, None))
            zero = Value(TensorType(F32, ()))
            consts[zero] = np.float32(0)
            nodes += [_node("Less", (a, zero), m), _node("Where", (m, zero, a), y)]
            nodes.append(_node("Cast", (y,), c, to=7))
            y = Value(TensorType(F32, None))
            nodes.append(_node("Cast", (c,), y, to=1))
        elif kind == "elementwise" and not any(n.op.startswith("Reduce") for n in nodes):  # any axis
            axes = Value(TensorType(I64, (1,)))
            consts[axes] = np.array([int(rng.integers(-rank, rank))], np.int64)
            keep = int(rng.random() < 0.8)
            nodes.append(_node(str(rng.choice(["ReduceSum", "ReduceMax"])), (a, axes), y, keepdims=keep))
            if not keep:
                live = [y]
                break
            z = Value(TensorType(F32, None))
            nodes.append(_node("Sub", (a, y), z))  # softmax-like: the row value broadcast back
            y = z
        else:
            continue
        live.append(y)
    outs = tuple(dict.fromkeys([live[-1]] + ([live[0]] if rng.random() < 0.3 and live[0] not in inputs
                                              else [])))
    return Graph(tuple(inputs), outs, tuple(nodes), consts), layouts


def random_sizes(rng, layouts):
    """Input shapes for the layouts: each symbol 0, 1 or more, now and then a size that does not broadcast."""
    dims = [int(rng.choice([0, 1, 1, 2, 3, 4, 7])) if rng.random() < 0.9 else 0 for _ in SYMS]
    if rng.random() < 0.9:
        dims = [d or 2 for d in dims]  # mostly non-empty
    shapes = []
    for lay in layouts:
        shape = tuple(1 if k is None else int(k) if isinstance(k, str) else dims[k] for k in lay)
        if rng.random() < 0.05 and shape:  # a size that does not broadcast: the encoder must decline
            shape = shape[:-1] + (shape[-1] + 5,)
        shapes.append(shape)
    return shapes


def _encode(body, shapes, dtype=F32):
    """The program, or the error (UnsupportedError, or a host node's ShapeError) to compare by type."""
    try:
        return encoder.encode(body, shapes, [dtype] * len(shapes))
    except Exception as e:  # noqa: BLE001
        return e


def _assert_same(got, want, where):
    if isinstance(want, Exception):
        assert type(got) is type(want), f"{where}: full encode raised {want!r}, template gave {got!r}"
        return
    assert not isinstance(got, Exception), f"{where}: full encode succeeded, template raised {got!r}"
    assert np.array_equal(got.code, want.code), where
    assert [(r, s, d) for r, _, s, d in got.slots] == [(r, s, d) for r, _, s, d in want.slots], where
    assert [(_src(src), shape) for src, shape in got.outputs] == \
        [(_src(src), shape) for src, shape in want.outputs], where
    assert [([_src(r) for r in refs], n) for _, refs, n in got.host] == \
        [([_src(r) for r in refs], n) for _, refs, n in want.host], where


def _src(src):
    """A source with a constant's array left out (a refilled program may hold an equal copy)."""
    return src if src is None or src[0] != "const" else ("const",)


@pytest.mark.parametrize("seed", range(40))
def test_templates_match_full_encodes(seed):
    rng = np.random.default_rng(seed)
    for _ in range(10):
        body, layouts = random_body(rng)
        sizes = [random_sizes(rng, layouts) for _ in range(12)]
        dtypes = [F16 if rng.random() < 0.2 else F32 for _ in sizes]  # buffers of another dtype
        fresh = []
        for shapes, dtype in zip(sizes, dtypes):
            encoder._STATIC.clear()
            fresh.append(_encode(body, shapes, dtype))
        order = rng.permutation(len(sizes))
        for k in list(order) + list(order[::-1]):
            _assert_same(_encode(body, sizes[k], dtypes[k]), fresh[k], f"seed {seed} {sizes[k]} {dtypes[k]}")


def test_templates_run_correctly():
    """Programs refilled from templates compute what the reference computes (not only match bytes)."""
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(60):
        body, layouts = random_body(rng)
        node = Node("Fused", body.inputs, body.outputs, {"body": body}, "msgx")
        ref = NUMPY.compile(node, run_subgraph)
        for _ in range(4):
            shapes = random_sizes(rng, layouts)
            prog = _encode(body, shapes)
            if isinstance(prog, Exception):
                continue
            xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
            for got, want in zip(prog.run(xs, pyvm.run), ref(*xs)):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_bundled_models_templates_match_full_encodes(name):
    """Every cluster of the bundled models, one session served at several sizes (so templates built at one
    size serve the others), for the CPU and the GPU target, against full encodes of each."""
    sess = InferenceSession(onnx_models.build(name), jit_level="O1")
    cap = _Capture()
    ex = GraphExecutor(sess.graph, backends=(cap, NUMPY))
    sizes = SHAPES[name] + [{k: v + 2 for k, v in dims.items()} for dims in SHAPES[name]]
    for dims in sizes:
        feeds = onnx_models.example_inputs(name, dims)
        ex.run([feeds[v.name] for v in sess.graph.inputs])
    encodes = []
    for node, args, _ in cap.calls:
        body = node.attrs["body"]
        encodes.append((body, [a.shape for a in args], [a.dtype for a in args],
                        {i: args[i] for i in _shape_inputs(body)}))
    for target in ("cpu", "gpu"):
        fresh = []
        for call in encodes:
            encoder._STATIC.clear()
            fresh.append(_encode_call(call, target))
        encoder._STATIC.clear()
        for call, want in zip(encodes, fresh):
            _assert_same(_encode_call(call, target), want, f"{name} {target} {call[1]}")
    assert len(encodes) >= len(sizes)


def _encode_call(call, target):
    body, shapes, dtypes, values = call
    try:
        return encoder.encode(body, shapes, dtypes, values, target=target)
    except encoder.UnsupportedError as e:
        return e


def test_empty_reductions_and_means_decline():
    """A reduction over an empty axis has no valid tiling (reductions need tile_cols == COLS >= 1) and the
    mean of an empty extent no 1/count: both decline, full encode or template, so the reference runs them."""
    x, r = Value(TensorType(F32, (SYMS[0], SYMS[1]))), Value(TensorType(F32, None))
    axes = Value(TensorType(I64, (1,)))
    reduce_body = Graph((x,), (r,), (_node("ReduceSum", (x, axes), r),), {axes: np.array([1], np.int64)})
    p, m = Value(TensorType(F32, (SYMS[0], 2, SYMS[1], 3))), Value(TensorType(F32, None))
    pool_body = Graph((p,), (m,), (_node("GlobalAveragePool", (p,), m),), {})
    for body, good, empty in ((reduce_body, (3, 4), (3, 0)), (pool_body, (1, 2, 4, 3), (1, 2, 0, 3))):
        encoder._STATIC.clear()
        for shape in (empty, good, empty):  # declined before and after a template exists
            got = _encode(body, [shape])
            assert isinstance(got, encoder.UnsupportedError) == (shape == empty), (body.nodes[0].op, got)
