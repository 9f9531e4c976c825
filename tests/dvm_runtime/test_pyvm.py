"""The numpy VM against the reference interpreter on every Fused node of the bundled models, its semantics
on hand-made programs, and bad bytecode (always a DvmError, never another exception)."""
from __future__ import annotations

import numpy as np
import pytest

import onnx_models
from dvm_runtime import encoder, isa, pyvm
from dvm_runtime.backend import _shape_inputs
from dvm_runtime.isa import DType, Opcode as O
from framework.backends import NUMPY
from framework.executor import GraphExecutor, run_subgraph
from framework.session import InferenceSession

SHAPES = {"tiny_gpt": [{"batch": 1, "seq": 1}, {"batch": 2, "seq": 16}, {"batch": 3, "seq": 37}],
          "mlp": [{"batch": 1}, {"batch": 5}, {"batch": 64}],
          "mobilenet": [{"batch": 1, "height": 16, "width": 16}, {"batch": 2, "height": 32, "width": 32},
                        {"batch": 1, "height": 45, "width": 23}]}


class _Capture:
    """A backend that records each Fused node's inputs and reference outputs."""

    name = "capture"

    def __init__(self):
        self.calls = []

    def supports(self, node):
        return node.op == "Fused"

    def compile(self, node, run_graph=None):
        ref = NUMPY.compile(node, run_graph or run_subgraph)

        def kernel(*args):
            out = ref(*args)
            self.calls.append((node, args, out))
            return out
        return kernel


def fused_calls(name, dims):
    """(node, inputs, reference outputs) for every Fused node of model `name` at `dims`."""
    sess = InferenceSession(onnx_models.build(name), jit_level="O1")
    cap = _Capture()
    feeds = onnx_models.example_inputs(name, dims)
    GraphExecutor(sess.graph, backends=(cap, NUMPY)).run([feeds[v.name] for v in sess.graph.inputs])
    return cap.calls


def run_program(node, args, vm=pyvm.run):
    body = node.attrs["body"]
    prog = encoder.encode(body, [a.shape for a in args], [a.dtype for a in args],
                          {i: args[i] for i in _shape_inputs(body)})
    return prog.run(args, vm)


def assert_close(out, ref, what):
    assert len(out) == len(ref), what
    for o, r in zip(out, ref):
        assert o.shape == r.shape and o.dtype == r.dtype, (what, o.shape, r.shape, o.dtype, r.dtype)
        scale = max(1.0, float(np.max(np.abs(r)))) if r.size else 1.0
        np.testing.assert_allclose(o, r, rtol=2e-5, atol=2e-6 * scale, err_msg=what)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_cluster_matches_reference(name):
    taken = total = 0
    for dims in SHAPES[name]:
        for node, args, ref in fused_calls(name, dims):
            total += 1
            out = run_program(node, args)
            assert_close(out, ref, f"{name} {dims} {node.name}")
            taken += 1
    print(f"{name}: {taken}/{total} cluster instances encoded and matched")
    assert taken == total > 0


def _prog(D, tile, bufs, instrs, n_regs=4):
    """Assemble a program from (word0 args, extra words) tuples."""
    code = []
    for (w0, ext) in instrs:
        code += [isa.word0(*w0), *ext]
    head = [isa.MAGIC, isa.VERSION, 0, len(instrs), len(bufs), n_regs, tile[0], tile[1], *D, 0, 0, 0, 0]
    table = [x for dt, role, n in bufs for x in (int(dt) | int(role) << 8, n)]
    allw = head + table + code
    allw[isa.H["n_words"]] = len(allw)
    return np.array([w & (2**64 - 1) for w in allw], np.uint64)


IN, OUT = isa.Role.INPUT, isa.Role.OUTPUT


@pytest.mark.parametrize("cols", [21, 300])
def test_reduction_order_and_row_broadcast(cols):
    """isa.py's order: chunks of REDUCE_CHUNK elements, 8 lanes each, the chunks' lanes combined in order,
    then the lane tree (300 columns: three chunks, the last one short)."""
    scale = 10.0 ** (np.arange(cols) % 7)   # magnitudes 1..1e6: the order of the adds shows in the bits
    x = (np.random.default_rng(0).standard_normal((3, cols)) * scale).astype(np.float32)
    n = 3 * cols
    code = _prog([1, 1, 3, cols], (3, cols), [(DType.F32, IN, n), (DType.F32, OUT, n), (DType.F32, OUT, 3)], [
        ((O.LOAD, DType.F32, 0, 0, 0), [0]), ((O.RSUM, DType.F32, isa.F_ROW, 1, 0), []),
        ((O.SUB, DType.F32, isa.F_B_ROW, 2, 0, 1), []), ((O.STORE, DType.F32, 0, 1, 2), [0]),
        ((O.STORE_ROW, DType.F32, 0, 2, 1), [0, 0, 0, 1, 0]), ((O.END,), [])])
    out, rows = np.empty(n, np.float32), np.empty(3, np.float32)
    pyvm.run(code, [x.reshape(-1), out, rows])
    lanes = np.full((3, 8), -0.0, np.float32)
    chunk = isa.REDUCE_CHUNK
    for c0 in range(0, cols, chunk):
        part = np.full((3, 8), -0.0, np.float32)
        for j in range(c0, min(cols, c0 + chunk)):
            part[:, j % 8] += x[:, j]
        lanes += part
    L = [lanes[:, i] for i in range(8)]
    want = ((L[0] + L[4]) + (L[2] + L[6])) + ((L[1] + L[5]) + (L[3] + L[7]))
    np.testing.assert_array_equal(rows, want)
    np.testing.assert_array_equal(out.reshape(3, cols), x - want[:, None])
    flat = np.zeros(3, np.float32)   # a sequential sum differs: the test can tell the orders apart
    for j in range(cols):
        flat += x[:, j]
    assert cols <= chunk or not np.array_equal(rows, flat)


def test_integer_semantics_and_f16_store():
    a = np.array([7, -7, 7, -7, -2**31, 5], np.int32)
    b = np.array([2, 2, -2, -2, -1, 0], np.int32)
    code = _prog([1, 1, 1, 6], (1, 6), [(DType.I32, IN, 6), (DType.I32, IN, 6), (DType.I32, OUT, 6),
                                        (DType.I32, OUT, 6), (DType.F16, OUT, 6)], [
        ((O.LOAD, DType.I32, 0, 0, 0), [0]), ((O.LOAD, DType.I32, 0, 1, 1), [0]),
        ((O.DIV, DType.I32, 0, 2, 0, 1), []), ((O.MOD, DType.I32, 0, 3, 0, 1), []),
        ((O.STORE, DType.I32, 0, 2, 2), [0]), ((O.STORE, DType.I32, 0, 3, 3), [0]),
        ((O.CAST, DType.F32, 0, 2, 0, DType.I32), []), ((O.STORE, DType.F16, 0, 4, 2), [0]), ((O.END,), [])])
    q, m, h = np.empty(6, np.int32), np.empty(6, np.int32), np.empty(6, np.float16)
    pyvm.run(code, [a, b, q, m, h])
    assert q.tolist() == [3, -3, -3, 3, -2**31, 0]
    assert m.tolist() == [1, 1, -1, -1, 0, 0]
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(h, a.astype(np.float16))


def _good_program():
    node, args, _ = next(c for c in fused_calls("tiny_gpt", {"batch": 2, "seq": 5}) if c[0].name == "fused_0")
    body = node.attrs["body"]
    prog = encoder.encode(body, [a.shape for a in args], [a.dtype for a in args])
    bufs = []
    for role, src, shape, dtype in prog.slots:
        bufs.append(np.zeros(int(np.prod(shape)), dtype))
    return prog.code, bufs


def test_bad_bytecode_is_an_error_never_a_crash():
    code, bufs = _good_program()
    pyvm.run(code, bufs)
    rng = np.random.default_rng(1)
    n_err = 0
    for trial in range(3000):
        bad = code.copy()
        for _ in range(rng.integers(1, 4)):
            i = int(rng.integers(0, len(bad)))
            kind = rng.integers(0, 3)
            if kind == 0:
                bad[i] ^= np.uint64(1) << np.uint64(int(rng.integers(0, 64)))
            elif kind == 1:
                bad[i] = np.uint64(int(rng.integers(0, 2**63)))
            else:
                bad[i] = np.uint64(int(rng.integers(0, 300)))
        if trial % 10 == 0:
            bad = bad[:int(rng.integers(0, len(bad)))]
        try:
            pyvm.run(bad, [b.copy() for b in bufs])
        except pyvm.DvmError:
            n_err += 1
    assert n_err > 2000  # most mutations are caught; the rest stayed valid programs and ran in bounds


@pytest.mark.parametrize("bad", ["magic", "reg", "buffer", "view", "undefined", "store_input", "bufs"])
def test_specific_bad_programs(bad):
    code, bufs = _good_program()
    code = code.copy()
    start = isa.CODE_START + isa.BUF_WORDS * int(code[isa.H["n_buffers"]])
    if bad == "magic":
        code[0] ^= np.uint64(1)
    elif bad == "reg":
        code[start] |= np.uint64(999 << 16)  # destination register beyond n_regs
    elif bad == "buffer":
        code[start] |= np.uint64(200 << 32)
    elif bad == "view":
        code[start + 1] = np.uint64(10**6)  # offset past the buffer
    elif bad == "undefined":
        code[start + 2] = np.uint64(isa.word0(O.ADD, DType.F32, 0, 0, 3, 3))  # reads r3 before any write
    elif bad == "store_input":
        code[isa.CODE_START] = np.uint64(int(DType.F32) | int(isa.Role.INPUT) << 8)  # b0 (an output) as input
    elif bad == "bufs":
        bufs = bufs[:-1]
    with pytest.raises(pyvm.DvmError):
        pyvm.run(code, bufs)


def test_rejects_non_arrays():
    with pytest.raises(pyvm.DvmError):
        pyvm.run([1, 2, 3], [])
    with pytest.raises(pyvm.DvmError):
        pyvm.run(np.zeros(3, np.int64), [])
