"""ISA tables and the generated C header; the encoder on hand-built bodies (golden disassembly), its
declines, and its speed on the bundled transformer's clusters."""
from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest

import onnx_models
from dvm_runtime import encoder, isa, pyvm
from dvm_runtime.backend import _trial
from dvm_runtime.disasm import disasm
from dvm_runtime.isa import DType, Opcode as O
from framework.backends import NUMPY
from framework.errors import MsgxError
from framework.executor import run_subgraph
from framework.ir import Graph, Node, TensorType, Value, symbol
from framework.session import InferenceSession

B, S = symbol("B"), symbol("S")
F32 = np.dtype(np.float32)


def _v(shape, dtype=F32, name=""):
    return Value(TensorType(dtype, shape), name)


def _n(op, ins, out, **attrs):
    return Node(op, tuple(ins), (out,), attrs, "", 18)


def bias_gelu():
    x, bias, half, one, rs2 = _v((B, S, 8), name="x"), _v((8,)), _v(()), _v(()), _v(())
    y, t, e, p, h, o = (_v((B, S, 8)) for _ in range(6))
    nodes = [_n("Add", (x, bias), y), _n("Mul", (y, rs2), t), _n("Erf", (t,), e), _n("Add", (e, one), p),
             _n("Mul", (y, half), h), _n("Mul", (h, p), o)]
    consts = {bias: np.arange(8, dtype=np.float32) / 8, half: np.float32(0.5), one: np.float32(1.0),
              rs2: np.float32(1 / np.sqrt(2))}
    return Graph((x,), (o,), tuple(nodes), consts, "bias_gelu")


def softmax():
    x, ax = _v((B, 4, S, S), name="x"), _v((1,), np.dtype(np.int64))
    m, s_ = _v((B, 4, S, 1)), _v((B, 4, S, 1))
    d, e, o = (_v((B, 4, S, S)) for _ in range(3))
    nodes = [_n("ReduceMax", (x, ax), m, keepdims=1), _n("Sub", (x, m), d), _n("Exp", (d,), e),
             _n("ReduceSum", (e, ax), s_, keepdims=1), _n("Div", (e, s_), o)]
    return Graph((x,), (o,), tuple(nodes), {ax: np.array([3], np.int64)}, "softmax")


GOLDEN_GELU = """\
dvm v1 space [1,1,6,8] tile 6x8 regs 3 instrs 10
  b0: out f32[48]
  b1: in f32[48]
  b2: in f32[8]
  load.f32 r0, b1[0]
  load_view.f32 r1, b2[0; 0,0,0,1]
  add.f32 r2, r0, r1
  mul_imm.f32 r1, r2, #0.7071067690849304
  erf.f32 r0, r1
  add_imm.f32 r1, r0, #1.0
  mul_imm.f32 r0, r2, #0.5
  mul.f32 r2, r0, r1
  store.f32 b0[0], r2
  end"""

GOLDEN_SOFTMAX = """\
dvm v1 space [1,1,24,3] tile 24x3 regs 3 instrs 8
  b0: out f32[72]
  b1: in f32[72]
  load.f32 r0, b1[0]
  rmax.f32 r1.row, r0
  sub.f32 r2, r0, r1.row
  exp.f32 r1, r2
  rsum.f32 r2.row, r1
  div.f32 r0, r1, r2.row
  store.f32 b0[0], r0
  end"""


def test_tables_consistent():
    assert set(isa.OPCODE_FORMS) == set(O) == set(isa.OPCODE_DTYPES)
    for op in isa.BINARY_OPS + isa.COMPARE_OPS:
        assert isa.OPCODE_FORMS[O(op + isa.IMM_DELTA)] == isa.Form.BINARY_IMM
    assert isa.ISA_FROZEN and len(isa.header_fields) == isa.HEADER_WORDS


def test_word_and_immediate_roundtrip():
    w = isa.word0(O.SELECT, DType.I64, isa.F_ROW | isa.F_C_ROW, 1023, 7, 65535)
    assert isa.unpack0(w) == (O.SELECT, DType.I64, isa.F_ROW | isa.F_C_ROW, 1023, 7, 65535)
    cases = [(1.5, DType.F32), (-3, DType.I32), (-2**63, DType.I64), (True, DType.BOOL), (1e39, DType.F32)]
    for v, dt in cases:
        back = isa.imm_value(isa.imm_bits(v, dt), dt)
        with np.errstate(over="ignore"):
            assert back == np.array(v).astype(isa.NUMPY_DTYPE[dt])


def test_c_header_compiles():
    text = isa.c_header()
    for op in O:
        assert f"DVM_OP_{op.name} = {int(op)}" in text
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    r = subprocess.run([cc, "-x", "c", "-fsyntax-only", "-Wall", "-Werror", "-"],
                       input=text + "\nint main(void)"
                       "{return DVM_OPCODE_WORDS[DVM_OP_LOAD_VIEW] + DVM_FORM_FLAGS[0] + (int)DVM_ERF_P[0]"
                       " + DVM_DTYPE_SIZE[1] + DVM_DTYPE_COMPUTE[1] + (int)DVM_OPCODE_DTYPES[0]"
                       " + DVM_OPCODE_FORM[0];}\n", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("make, shape, golden", [(bias_gelu, (2, 3, 8), GOLDEN_GELU),
                                                  (softmax, (2, 4, 3, 3), GOLDEN_SOFTMAX)])
def test_golden_disasm_and_result(make, shape, golden):
    body = make()
    prog = encoder.encode(body, [shape], [F32])
    assert disasm(prog) == golden
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    node = Node("Fused", (body.inputs[0],), body.outputs, {"body": body}, "msgx")
    ref = NUMPY.compile(node, run_subgraph)(x)
    np.testing.assert_allclose(prog.run([x], pyvm.run)[0], ref[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("c, becomes_mul", [(1.4142135, True), (-3.0, True), (0.0, False), (np.inf, False),
                                             (1e-40, False), (3e38, False), (np.nan, False)])
def test_division_by_a_constant_is_a_product_when_the_reciprocal_is_normal(c, becomes_mul):
    """x / c is encoded as x * (1 / c) (within an ulp of the quotient) unless 1 / c is not a normal float
    (c zero, infinite, NaN, subnormal, or so large that 1 / c is subnormal): those stay divisions."""
    x, k, y = _v((B, 8), name="x"), _v(()), _v((B, 8))
    body = Graph((x,), (y,), (_n("Div", (x, k), y),), {k: np.float32(c)}, "div")
    text = disasm(encoder.encode(body, [(3, 8)], [F32]))
    assert ("mul_imm" in text, "div_imm" in text) == (becomes_mul, not becomes_mul), text
    xs = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32) * 100
    with np.errstate(all="ignore"):
        want = xs / np.float32(c)
        got = encoder.encode(body, [(3, 8)], [F32]).run([xs], pyvm.run)[0]
    ulp = np.spacing(np.abs(want).astype(np.float32))
    finite = np.isfinite(want)
    assert np.all(np.abs(got[finite] - want[finite]) <= ulp[finite]), (got, want)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def _spilled_operands(text: str) -> int:
    """Operands of compute instructions that hold a whole tile (not one value: a 0-stride load or a result of
    those) computed earlier than by the compute instruction just before (LOADs and STOREs are not compute):
    each is a value an elementwise chain keeps aside in a spilled slot."""
    last, spilled, tiles, scalars = None, 0, set(), set()
    for line in text.splitlines():
        parts = line.split()
        if not parts or "." not in parts[0]:
            continue
        op, regs = parts[0].split(".")[0], [w.strip(",") for w in parts[1:] if w.startswith("r")]
        if op in ("load", "load_view"):
            tiles.discard(regs[0])  # the register now points at a buffer
            scalars.discard(regs[0])
            if line.rstrip().endswith("0,0,0,0]"):
                scalars.add(regs[0])
        elif op != "store":
            spilled += sum(r != last and r in tiles for r in regs[1:])
            one_value = all(r in scalars for r in regs[1:])
            last = regs[0]
            tiles.discard(last)
            scalars.discard(last)
            (scalars if one_value else tiles).add(last)
    return spilled


def _adam_body() -> Graph:
    """Adam's update written as an optimizer does: m', v' and the parameter step interleaved."""
    p, g, m, v = (_v((B, 8), name=k) for k in "pgmv")
    lr, b1, b2, eps, bc1, bc2, one = (_v(()) for _ in range(7))
    names = "omb1 omb2 m_a m_b m1 g2 v_a v_b v1 mh vh vs den upd st p1".split()
    t = {k: _v(() if k.startswith("omb") else (B, 8)) for k in names}
    spec = [("Sub", (one, b1), "omb1"), ("Sub", (one, b2), "omb2"), ("Mul", (m, b1), "m_a"),
            ("Mul", (g, "omb1"), "m_b"), ("Add", ("m_a", "m_b"), "m1"), ("Mul", (g, g), "g2"),
            ("Mul", (v, b2), "v_a"), ("Mul", ("g2", "omb2"), "v_b"), ("Add", ("v_a", "v_b"), "v1"),
            ("Div", ("m1", bc1), "mh"), ("Div", ("v1", bc2), "vh"), ("Sqrt", ("vh",), "vs"),
            ("Add", ("vs", eps), "den"), ("Div", ("mh", "den"), "upd"), ("Mul", ("upd", lr), "st"),
            ("Sub", (p, "st"), "p1")]
    nodes = tuple(_n(op, [t[x] if isinstance(x, str) else x for x in ins], t[out]) for op, ins, out in spec)
    return Graph((p, g, m, v, lr, b1, b2, eps, bc1, bc2), (t["p1"], t["m1"], t["v1"]), nodes,
                 {one: np.float32(1.0)}, "adam")


def test_elementwise_bodies_are_encoded_in_chain_order(monkeypatch):
    """The encoder orders an elementwise body depth first, so most operands are the result just computed:
    Adam's update keeps 3 values aside where its body order kept 6, and computes the same values."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((5, 8)).astype(np.float32) for _ in range(4)]
    arrays[3] = np.abs(arrays[3])
    arrays += [np.float32(x) for x in (1e-3, 0.9, 0.999, 1e-8, 0.65, 0.01)]
    shapes, dtypes = [np.shape(a) for a in arrays], [F32] * len(arrays)
    body = _adam_body()
    chained = encoder.encode(body, shapes, dtypes)
    monkeypatch.setattr(encoder, "_chain_order", lambda compute: compute)
    in_body_order = encoder.encode(_adam_body(), shapes, dtypes)  # a new body: nothing cached for it
    assert (_spilled_operands(disasm(chained)), _spilled_operands(disasm(in_body_order))) == (3, 6)
    for x, y in zip(chained.run(arrays, pyvm.run), in_body_order.run(arrays, pyvm.run)):
        np.testing.assert_array_equal(x, y)
    node = Node("Fused", body.inputs, body.outputs, {"body": body}, "msgx")
    for x, ref in zip(chained.run(arrays, pyvm.run), NUMPY.compile(node, run_subgraph)(*arrays)):
        np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-7)


def test_identity_of_a_computed_value_is_that_value():
    """Identity(exp(x)) feeding a Mul reads exp's register (no copy, no decline)."""
    x, e, i, y = _v((B, 8)), _v((B, 8)), _v((B, 8)), _v((B, 8))
    body = Graph((x,), (y,), (_n("Exp", (x,), e), _n("Identity", (e,), i), _n("Mul", (i, x), y)), {})
    prog = encoder.encode(body, [(3, 8)], [F32])
    xs = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_allclose(prog.run([xs], pyvm.run)[0], np.exp(xs) * xs, rtol=1e-6)
    assert "mov" not in disasm(prog)


def test_broadcast_and_transposed_views():
    a, b, o = _v((B, 1, 8)), _v((B, 5, 1)), _v((B, 5, 8))
    body = Graph((a, b), (o,), (_n("Sub", (a, b), o),), {})
    prog = encoder.encode(body, [(3, 1, 8), (3, 5, 1)], [F32, F32])
    x, y = np.ones((3, 1, 8), np.float32) * np.arange(8), np.arange(15, dtype=np.float32).reshape(3, 5, 1)
    np.testing.assert_array_equal(prog.run([x, y], pyvm.run)[0], x - y)
    # a reduction over the middle axis: a row reduction over a permuted space
    x, ax, r = _v((B, 6, 4)), _v((1,), np.dtype(np.int64)), _v((B, 1, 4))
    body = Graph((x,), (r,), (_n("ReduceSum", (x, ax), r, keepdims=1),), {ax: np.array([1], np.int64)})
    prog = encoder.encode(body, [(2, 6, 4)], [F32])
    xs = np.random.default_rng(1).standard_normal((2, 6, 4)).astype(np.float32)
    np.testing.assert_allclose(prog.run([xs], pyvm.run)[0], xs.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert "load_view.f32 r0, b1[0; 0,0,24,1" not in disasm(prog) and "rsum" in disasm(prog)


def test_declines_with_unsupported_error():
    x, y = _v((B, 8)), _v((B, 8))
    with pytest.raises(encoder.UnsupportedError):
        encoder.encode(Graph((x,), (y,), (_n("Softmax", (x,), y),), {}), [(2, 8)], [F32])
    x, a1, a0, o = _v((B, 8)), _v((1,), np.int64), _v((1,), np.int64), _v((B, 8))
    r1, r0 = _v((B, 1)), _v((1, 8))
    nodes = (_n("ReduceSum", (x, a1), r1), _n("ReduceSum", (x, a0), r0), _n("Add", (r1, r0), o))
    body = Graph((x,), (o,), nodes, {a1: np.array([1]), a0: np.array([0])})
    with pytest.raises(encoder.UnsupportedError):
        encoder.encode(body, [(2, 8)], [F32])
    assert issubclass(encoder.UnsupportedError, MsgxError)


def _tiny_gpt_encodes(seqs):
    """(body, shapes, dtypes, values) of every DVM encode while serving tiny_gpt at O1, batch 2, over seqs."""
    sess = InferenceSession(onnx_models.build("tiny_gpt"), jit_level="O1")
    calls, orig = [], encoder.encode

    def rec(body, shapes, dtypes=None, values=None):
        calls.append((body, [tuple(map(int, s)) for s in shapes], dtypes, dict(values or {})))
        return orig(body, shapes, dtypes, values)
    encoder.encode = rec
    try:
        for seq in seqs:
            ids = np.random.default_rng(seq).integers(0, 50, (2, seq)).astype(np.int64)
            sess.run(None, {"ids": ids})
    finally:
        encoder.encode = orig
    return calls


def _fresh_encode(body, shapes, dtypes, values):
    """Encode with every per-body and per-shape cache emptied (the analysis from scratch)."""
    for cache in (encoder._STATIC, encoder._BCAST, encoder._ALIGNED):
        cache.clear()
    return encoder.encode(body, shapes, dtypes, values)


def _same_program(a, b):
    assert a.code.dtype == b.code.dtype and np.array_equal(a.code, b.code)
    assert [(r, s, d) for r, _, s, d in a.slots] == [(r, s, d) for r, _, s, d in b.slots]
    assert [(src[0], shape) for src, shape in a.outputs] == [(src[0], shape) for src, shape in b.outputs]
    assert len(a.host) == len(b.host)


def test_cached_analysis_is_bit_identical_to_fresh():
    calls = _tiny_gpt_encodes([1, 2, 5, 16, 33])
    assert calls
    for body, shapes, dtypes, values in calls:
        fresh = _fresh_encode(body, shapes, dtypes, values)
        for _ in range(2):  # warm caches: same shapes, then after other shapes went through the caches
            _same_program(encoder.encode(body, shapes, dtypes, values), fresh)
    # hand-built bodies at several shapes, interleaved so the caches hold other shapes in between
    bodies = [(bias_gelu(), [(2, 3, 8), (1, 1, 8), (4, 7, 8), (3, 1, 8)]),
              (softmax(), [(2, 4, 3, 3), (1, 4, 1, 1), (2, 4, 5, 5), (1, 4, 9, 9)])]
    fresh = {(id(b), s): _fresh_encode(b, [s], [F32], {}) for b, shapes in bodies for s in shapes}
    for rep in range(2):
        for b, shapes in bodies:
            for s in shapes[::(-1) ** rep]:
                _same_program(encoder.encode(b, [s], [F32]), fresh[id(b), s])


def test_encode_time_on_tiny_gpt_clusters(record_property):
    """Reports (prints and records; asserts nothing about time) the encode time per fused kernel instance:
    every DVM encode of tiny_gpt at O1, batch 2, seq 1..127 step 7, with the per-body analysis warm."""
    calls = _tiny_gpt_encodes(range(1, 128, 7))
    ts = []
    for body, shapes, dtypes, values in calls:
        t0 = time.perf_counter()
        encoder.encode(body, shapes, dtypes, values)
        ts.append(time.perf_counter() - t0)
    med, mx = float(np.median(ts)) * 1e6, max(ts) * 1e6
    print(f"encode time over {len(ts)} tiny_gpt kernel instances: median {med:.0f} us, max {mx:.0f} us")
    record_property("encode_median_us", round(med, 1))
    record_property("encode_max_us", round(mx, 1))
    assert len(ts) > 100
