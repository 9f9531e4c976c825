"""The C VM against the numpy VM (dvm_runtime.pyvm): bundled-model clusters, random fused graphs and
hand-written programs for every opcode, dtype, flag form and edge value; validation; buffers; threads."""
import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from dvm_runtime import cvm, isa, pyvm
from dvm_runtime.isa import DType, Opcode as O, Role

pytestmark = pytest.mark.skipif(not cvm.available(), reason=f"C VM unavailable: {cvm.why_unavailable()}")
F32, F16, I32, I64, BOOL = DType.F32, DType.F16, DType.I32, DType.I64, DType.BOOL
IN, OUT = Role.INPUT, Role.OUTPUT
APPROX = {O.EXP, O.LOG, O.TANH, O.SIGMOID, O.POW, O.ERF}  # numpy's own SIMD versions (ERF: FMA steps) differ in the last bits
M64 = (1 << 64) - 1


class Asm:
    """A tiny assembler: dims (4), tile (rows, cols), bufs [(dtype, role, n)]; ins(op, dt, fl, d, a, b, *ext)
    appends one instruction."""

    def __init__(self, dims, tile, bufs):
        self.dims, self.tile, self.bufs, self.words, self.n = list(dims), tile, bufs, [], 0

    def ins(self, op, dt=0, fl=0, d=0, a=0, b=0, *ext):
        """Append one instruction; missing extra words (offset, strides, immediate) are 0."""
        ext = list(ext) + [0] * (isa.FORM_WORDS[isa.OPCODE_FORMS[O(op)]] - 1 - len(ext))
        self.words += [isa.word0(op, dt, fl, d, a, b), *(int(e) & M64 for e in ext)]
        self.n += 1
        return self

    def code(self, n_regs=None):
        words = list(self.words) + [isa.word0(O.END)]
        nb = len(self.bufs)
        head = [0] * isa.HEADER_WORDS
        total = isa.HEADER_WORDS + isa.BUF_WORDS * nb + len(words)
        for k, v in {"magic": isa.MAGIC, "version": isa.VERSION, "n_words": total, "n_instr": self.n + 1,
                     "n_buffers": nb, "n_regs": n_regs or 16, "tile_rows": self.tile[0],
                     "tile_cols": self.tile[1], "d0": self.dims[0], "d1": self.dims[1], "d2": self.dims[2],
                     "d3": self.dims[3]}.items():
            head[isa.H[k]] = v
        table = [w for dt, role, n in self.bufs for w in (int(dt) | int(role) << 8, n)]
        return np.array(head + table + words, np.uint64)


EPS32 = float(np.finfo(np.float32).eps)


def run_both(code, bufs, exact=True, nthreads=(1, 2, 3)):
    """Run the numpy VM and the C VM (several thread counts) on copies of bufs; assert equal outputs."""
    ref = [b.copy() for b in bufs]
    pyvm.run(code, ref)
    for nt in nthreads:
        got = [b.copy() for b in bufs]
        cvm.run(code, got, nt)
        for i, (g, r) in enumerate(zip(got, ref)):
            if exact or g.dtype.kind != "f":
                np.testing.assert_array_equal(g, r, err_msg=f"buffer {i}, {nt} threads")
            else:  # the numpy VM takes numpy's exp/tanh, the C VM its own (an ulp or two apart), and a
                # subtraction that cancels grows that: slack of a few ulps of the buffer's largest finite value
                finite = np.abs(r[np.isfinite(r)])
                scale = float(finite.max()) if finite.size else 0.0
                np.testing.assert_allclose(g, r, rtol=2e-6, atol=max(1e-37, 4 * EPS32 * scale), equal_nan=True,
                                           err_msg=f"buffer {i}, {nt} threads")
    return ref


SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-38, -1e-38, 3.4e38, -3.4e38, 1, -1,
                    0.5, -0.5, 1.5, 2.5, -2.5, 88.7, 88.8, 89, -87, -103, -104, -110, 20, -20, 9.5, -9.5, 4.5,
                    -4.5, 0.3, 1e-4, -1e-4, 65504, 65520, -65520, 6e-8, 3e-8, 2.1e9, -2.2e9, 1e19, -1e19],
                   np.float32)
INTS = {I32: np.array([0, 1, -1, 2, -2, 7, -7, 2**31 - 1, -2**31, 12345, -12345, 3, -3], np.int32),
        I64: np.array([0, 1, -1, 2, -2, 7, -7, 2**63 - 1, -2**63, 2**31, -2**31 - 1, 3, -3], np.int64)}


def unary_prog(op, dt, n, fl=0, rdt=None):
    rdt = rdt or (BOOL if op in isa.BOOL_RESULT else dt)
    a = Asm([1, 1, 1, n], (1, n), [(dt, IN, n), (rdt, OUT, n)])
    return a.ins(O.LOAD, dt, 0, 0, 0, 0, 0).ins(op, dt, fl, 1, 0).ins(O.STORE, rdt, 0, 1, 1, 0, 0).code()


@pytest.mark.parametrize("op", [o for o in isa.UNARY_OPS if o not in (O.BCAST_ROW,)])
def test_unary_ops_on_edge_values(op):
    rng = np.random.default_rng(int(op))
    for dt in sorted(isa.OPCODE_DTYPES[op]):
        if dt == F32:
            x = np.concatenate([SPECIAL, rng.standard_normal(200).astype(np.float32) * 30])
        elif dt == BOOL:
            x = np.array([0, 1, 1, 0, 2, 255], np.uint8).view(np.bool_)  # loads map any non-zero byte to 1
        else:
            x = INTS[dt]
        out = np.zeros(x.size, isa.NUMPY_DTYPE[BOOL if op in isa.BOOL_RESULT else dt])
        run_both(unary_prog(op, dt, x.size), [x, out], exact=op not in APPROX)


def binary_inputs(dt, rng):
    if dt == F32:
        x = np.concatenate([SPECIAL, rng.standard_normal(40).astype(np.float32) * 5])
        return np.repeat(x, x.size), np.tile(x, x.size)
    if dt == BOOL:
        return np.array([0, 0, 1, 1], np.bool_), np.array([0, 1, 0, 1], np.bool_)
    x = INTS[dt]
    return np.repeat(x, x.size), np.tile(x, x.size)


@pytest.mark.parametrize("op", isa.BINARY_OPS + isa.COMPARE_OPS)
def test_binary_and_immediate_forms(op):
    rng = np.random.default_rng(int(op))
    rdt_of = lambda dt: BOOL if op in isa.COMPARE_OPS else dt  # noqa: E731
    for dt in sorted(isa.OPCODE_DTYPES[op]):
        x, y = binary_inputs(dt, rng)
        n, rdt = x.size, rdt_of(dt)
        a = Asm([1, 1, 1, n], (1, min(n, 64)), [(dt, IN, n), (dt, IN, n), (rdt, OUT, n)])
        a.ins(O.LOAD, dt, 0, 0, 0, 0, 0).ins(O.LOAD, dt, 0, 1, 1, 0, 0).ins(op, dt, 0, 2, 0, 1)
        run_both(a.ins(O.STORE, rdt, 0, 2, 2, 0, 0).code(), [x, y, np.zeros(n, isa.NUMPY_DTYPE[rdt])],
                 exact=op not in APPROX)
        for imm in (x[:: max(1, n // 5)])[:6]:
            for side in (0, 1):
                a = Asm([1, 1, 1, n], (1, n), [(dt, IN, n), (rdt, OUT, n)])
                a.ins(O.LOAD, dt, 0, 0, 0, 0, 0)
                a.ins(op + isa.IMM_DELTA, dt, 0, 1, 0, side, isa.imm_bits(imm, dt))
                run_both(a.ins(O.STORE, rdt, 0, 1, 1, 0, 0).code(), [y, np.zeros(n, isa.NUMPY_DTYPE[rdt])],
                         exact=op not in APPROX)


def test_casts_between_every_dtype_pair():
    for src in (F32, I32, I64, BOOL):
        x = {F32: SPECIAL, BOOL: np.array([0, 1, 1, 0], np.bool_)}.get(src, INTS.get(src))
        for dst in sorted(isa.OPCODE_DTYPES[O.CAST]):
            cdt = isa.COMPUTE[dst]
            a = Asm([1, 1, 1, x.size], (1, x.size), [(src, IN, x.size), (cdt, OUT, x.size)])
            a.ins(O.LOAD, src, 0, 0, 0).ins(O.CAST, dst, 0, 1, 0, src).ins(O.STORE, cdt, 0, 1, 1)
            run_both(a.code(), [x, np.zeros(x.size, isa.NUMPY_DTYPE[cdt])])


@pytest.mark.parametrize("dt", [F32, I32, I64])
@pytest.mark.parametrize("op", isa.REDUCE_OPS)
def test_reductions_keep_the_fixed_lane_order(op, dt):
    rng = np.random.default_rng(1)
    for cols in (1, 3, 8, 9, 17, 64, 128, 129, 1000):   # rows past isa.REDUCE_CHUNK: several chunks
        rows = 7
        if dt == F32:
            x = rng.standard_normal(rows * cols).astype(np.float32) * (1 if op != O.RPROD else 1.1)
            if op in (O.RMAX, O.RMIN) and cols > 8:  # NaN in a row's vector part, in a tail, and -inf/inf
                x[5], x[-1], x[cols + 1], x[2 * cols + 2] = np.nan, np.nan, -np.inf, np.inf
        else:
            x = rng.integers(-1000, 1000, rows * cols).astype(isa.NUMPY_DTYPE[dt])
        for tr in (1, 3, 7):
            a = Asm([1, 1, rows, cols], (tr, cols), [(dt, IN, x.size), (dt, OUT, rows), (dt, OUT, x.size)])
            a.ins(O.LOAD, dt, 0, 0, 0).ins(op, dt, isa.F_ROW, 1, 0)
            a.ins(O.STORE_ROW, dt, 0, 1, 1, 0, 0, 0, 0, 1)   # one element per row (s2 = 1)
            # the reduced row broadcast back and combined (softmax-like): ROW operands of FULL results
            a.ins(O.SUB, dt, isa.F_B_ROW, 2, 0, 1).ins(O.BCAST_ROW, dt, isa.F_A_ROW, 3, 1)
            a.ins(O.ADD, dt, 0, 2, 2, 3).ins(O.STORE, dt, 0, 2, 2)
            run_both(a.code(), [x, np.zeros(rows, x.dtype), np.zeros(x.size, x.dtype)])


def test_softmax_and_layernorm_rows_in_place_registers():
    """D equal to a ROW source of a FULL result (rows broadcast back over themselves) stays correct."""
    rng = np.random.default_rng(2)
    rows, cols = 37, 50
    x = rng.standard_normal(rows * cols).astype(np.float32)
    a = Asm([1, 1, rows, cols], (8, cols), [(F32, IN, x.size), (F32, OUT, x.size)])
    a.ins(O.LOAD, F32, 0, 0, 0).ins(O.RMAX, F32, isa.F_ROW, 1, 0)
    a.ins(O.SUB, F32, isa.F_B_ROW, 1, 0, 1)           # r1 (FULL) = r0 - r1 (ROW): D aliases the ROW source
    a.ins(O.EXP, F32, 0, 1, 1).ins(O.RSUM, F32, isa.F_ROW, 2, 1)
    a.ins(O.DIV, F32, isa.F_B_ROW, 2, 1, 2).ins(O.STORE, F32, 0, 1, 2)
    out = run_both(a.code(), [x, np.zeros_like(x)], exact=False)[1].reshape(rows, cols)
    e = np.exp(x.reshape(rows, cols) - x.reshape(rows, cols).max(1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(1, keepdims=True), rtol=1e-5)
    a = Asm([1, 1, rows, cols], (8, cols), [(F32, IN, x.size), (F32, OUT, x.size)])
    a.ins(O.LOAD, F32, 0, 0, 0).ins(O.RSUM, F32, isa.F_ROW, 1, 0)
    a.ins(O.MUL_IMM, F32, isa.F_ROW | isa.F_A_ROW, 1, 1, 0, isa.imm_bits(1 / cols, F32))
    a.ins(O.SUB, F32, isa.F_B_ROW, 1, 0, 1).ins(O.MUL, F32, 0, 2, 1, 1).ins(O.RSUM, F32, isa.F_ROW, 2, 2)
    a.ins(O.MUL_IMM, F32, isa.F_ROW | isa.F_A_ROW, 2, 2, 0, isa.imm_bits(1 / cols, F32))
    a.ins(O.ADD_IMM, F32, isa.F_ROW | isa.F_A_ROW, 2, 2, 1, isa.imm_bits(1e-5, F32))
    a.ins(O.RSQRT, F32, isa.F_ROW | isa.F_A_ROW, 2, 2).ins(O.MUL, F32, isa.F_A_ROW, 2, 2, 1)
    run_both(a.ins(O.STORE, F32, 0, 1, 2).code(), [x, np.zeros_like(x)])


def _row_pass_program(kind, rows, cols, mov):
    """softmax's middle (SUB of the row max, EXP in place over it, RSUM) or LayerNorm's variance (SUB of the
    mean, square, RSUM); mov: a MOV before the RSUM, which keeps the VM from fusing the three."""
    a = Asm([1, 1, rows, cols], (8, cols), [(F32, IN, rows * cols), (F32, OUT, rows * cols), (F32, OUT, rows)])
    if kind == "exp":
        a.ins(O.LOAD, F32, 0, 0, 0).ins(O.RMAX, F32, isa.F_ROW, 1, 0)
        a.ins(O.SUB, F32, isa.F_B_ROW, 2, 0, 1).ins(O.EXP, F32, 0, 1, 2)
        kept = 1
    else:
        a.ins(O.LOAD, F32, 0, 0, 0).ins(O.RSUM, F32, isa.F_ROW, 1, 0)
        a.ins(O.MUL_IMM, F32, isa.F_ROW | isa.F_A_ROW, 1, 1, 0, isa.imm_bits(1 / cols, F32))
        a.ins(O.SUB, F32, isa.F_B_ROW, 1, 0, 1).ins(O.MUL, F32, 0, 3, 1, 1)   # D of SUB over its ROW source
        kept = 1
    summed = 1 if kind == "exp" else 3
    if mov:
        a.ins(O.MOV, F32, 0, 4, summed)
        summed = 4
    a.ins(O.RSUM, F32, isa.F_ROW, 2, summed).ins(O.STORE_ROW, F32, 0, 2, 2, 0, 0, 0, 1, 0)
    a.ins(O.RECIP, F32, isa.F_ROW | isa.F_A_ROW, 2, 2).ins(O.MUL, F32, isa.F_B_ROW, 0, kept, 2)
    return a.ins(O.STORE, F32, 0, 1, 0).code()


@pytest.mark.parametrize("kind", ["exp", "square"])
@pytest.mark.parametrize("cols", [50, 61, 64, 7, 16, 300])
def test_fused_row_passes_give_the_bits_of_the_three_instructions(kind, cols):
    """SUB of a ROW, then EXP or a square, then RSUM, run as one kernel where the machine allows (the EXP's
    values written straight into the output, where the MUL by the row rescales them); the same program with a
    MOV before the RSUM runs unfused: same bits, and the numpy VM agrees."""
    rng = np.random.default_rng(3)
    rows = 37
    x = (rng.standard_normal(rows * cols) * 30).astype(np.float32)
    k = min(SPECIAL.size, (x.size + 10) // 11)
    x[:11 * k:11] = SPECIAL[:k]  # NaN, infinities, exp's overflow edges among the rows
    with open("/proc/cpuinfo") as f:
        avx512 = " avx512f" in f.read()
    codes = [_row_pass_program(kind, rows, cols, mov) for mov in (False, True)]
    assert [cvm.validate(c)["fused"] for c in codes] == [int(avx512), 0]
    got = [[b.copy() for b in (x, np.zeros_like(x), np.zeros(rows, np.float32))] for _ in codes]
    for code, bufs in zip(codes, got):
        cvm.run(code, bufs, 2)
    for fused, unfused in zip(got[0], got[1]):
        np.testing.assert_array_equal(fused, unfused)
    run_both(codes[0], got[0], exact=kind != "exp")


def _softmax_program(rows, cols, tr, out, breaker):
    """softmax as the encoder writes it (RMAX, SUB, EXP, RSUM, RECIP, MUL, STORE); out: "direct" (the MUL goes
    straight to the STORE), "later" (an ADD reads the result before it is stored) or "stream" (the output
    is big enough for non-temporal stores); breaker: a MOV of the sums after the RSUM, which keeps the four
    steps from running as one kernel (the row pass still fuses)."""
    a = Asm([1, 1, rows, cols], (tr, cols), [(F32, IN, rows * cols), (F32, OUT, rows * cols)])
    a.ins(O.LOAD, F32, 0, 0, 0).ins(O.RMAX, F32, isa.F_ROW, 1, 0)
    a.ins(O.SUB, F32, isa.F_B_ROW, 2, 0, 1).ins(O.EXP, F32, 0, 1, 2).ins(O.RSUM, F32, isa.F_ROW, 2, 1)
    if breaker:
        a.ins(O.MOV, F32, isa.F_ROW | isa.F_A_ROW, 3, 2)
    a.ins(O.RECIP, F32, isa.F_ROW | isa.F_A_ROW, 0, 3 if breaker else 2).ins(O.MUL, F32, isa.F_B_ROW, 2, 1, 0)
    if out == "later":
        a.ins(O.ADD, F32, 0, 2, 2, 2)
    return a.ins(O.STORE, F32, 0, 1, 2).code()


@pytest.mark.parametrize("cols,tr,out", [(50, 8, "direct"), (7, 3, "direct"), (16, 8, "later"),
                                         (300, 5, "direct"), (1000, 2, "later"), (4096, 1, "stream"),
                                         (1021, 4, "stream")])
def test_softmax_rows_give_the_bits_of_its_instructions(cols, tr, out, stream_16mib):
    """RMAX, the SUB-EXP-RSUM pass, RECIP and MUL run a row at a time as one kernel where the machine allows;
    the same program with a MOV of the sums between runs as a row pass and instructions: the same bits,
    for rows whose max is a zero of either sign, rows with NaN, infinities, all -inf, and the numpy VM agrees."""
    rng = np.random.default_rng(8)
    rows = (16 << 20) // 4 // cols + 3 if out == "stream" else 37
    x = (rng.standard_normal((rows, cols)) * 30).astype(np.float32)
    x[1] = -np.abs(x[1])
    x[1, cols // 2] = 0.0   # the max is +0
    x[2] = -np.abs(x[2])
    x[2, ::3] = -0.0        # ... or -0 (the ISA's order picks which)
    x[3, cols - 1] = np.nan
    x[4] = -np.inf
    x[5, 0] = np.inf
    x[6, :] = 0.0
    x[6, ::2] = -0.0
    with open("/proc/cpuinfo") as f:
        avx512 = " avx512f" in f.read()
    codes = [_softmax_program(rows, cols, tr, out, breaker) for breaker in (False, True)]
    assert [cvm.validate(c)["softmax"] for c in codes] == [int(avx512), 0]
    assert cvm.validate(codes[1])["streams"] == (out == "stream")
    got = []
    for code in codes:
        bufs = [x.ravel().copy(), np.zeros(x.size, np.float32)]
        cvm.run(code, bufs, 2)
        got.append(bufs[1])
    np.testing.assert_array_equal(got[0], got[1])
    if out != "stream":
        run_both(codes[0], [x.ravel(), np.zeros(x.size, np.float32)], exact=False)


def _layer_norm_program(rows, cols, mov, direct):
    """LayerNorm with registers reused as the encoder reuses them (the scale's row view overwrites the
    ROW of 1/std, the shift's the first product); mov: a MOV after the first product, which keeps the VM
    from fusing the affine end; direct: the ADD's result goes straight to the output (no later reader)."""
    bufs = [(F32, IN, rows * cols), (F32, IN, cols), (F32, IN, cols), (F32, OUT, rows * cols)]
    a = Asm([1, 1, rows, cols], (8, cols), bufs)
    a.ins(O.LOAD, F32, 0, 0, 0).ins(O.RSUM, F32, isa.F_ROW, 1, 0)
    a.ins(O.MUL_IMM, F32, isa.F_ROW | isa.F_A_ROW, 2, 1, 0, isa.imm_bits(1 / cols, F32))
    a.ins(O.SUB, F32, isa.F_B_ROW, 1, 0, 2).ins(O.MUL, F32, 0, 2, 1, 1).ins(O.RSUM, F32, isa.F_ROW, 0, 2)
    a.ins(O.MUL_IMM, F32, isa.F_ROW | isa.F_A_ROW, 2, 0, 0, isa.imm_bits(1 / cols, F32))
    a.ins(O.ADD_IMM, F32, isa.F_ROW | isa.F_A_ROW, 0, 2, 0, isa.imm_bits(1e-5, F32))
    a.ins(O.RSQRT, F32, isa.F_ROW | isa.F_A_ROW, 0, 0)
    a.ins(O.MUL, F32, isa.F_B_ROW, 2, 1, 0)
    if mov:
        a.ins(O.MOV, F32, 0, 2, 2)
    a.ins(O.LOAD_VIEW, F32, 0, 0, 1, 0, 0, 0, 0, 0, 1).ins(O.MUL, F32, 0, 1, 2, 0)
    a.ins(O.LOAD_VIEW, F32, 0, 2, 2, 0, 0, 0, 0, 0, 1).ins(O.ADD, F32, 0, 0, 1, 2)
    if not direct:
        a.ins(O.ADD, F32, 0, 1, 0, 0)   # a later reader of the result: the ADD writes its register
    return a.ins(O.STORE, F32, 0, 3, 0).code()


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("cols", [50, 64, 7, 300])
def test_fused_layer_norm_gives_the_bits_of_its_instructions(cols, direct):
    """The variance (SUB, square, RSUM) and the affine end (MUL by 1/std, scale, shift) run as one kernel
    each where the machine allows; the same program with a MOV that keeps the affine end from that kernel
    (it then runs as an elementwise chain) gives the same bits, and the numpy VM the same."""
    rng = np.random.default_rng(5)
    rows = 37
    bufs = [(rng.standard_normal(rows * cols) * 3 + 1).astype(np.float32),
            rng.standard_normal(cols).astype(np.float32), rng.standard_normal(cols).astype(np.float32),
            np.zeros(rows * cols, np.float32)]
    with open("/proc/cpuinfo") as f:
        avx512 = " avx512f" in f.read()
    codes = [_layer_norm_program(rows, cols, mov, direct) for mov in (False, True)]
    assert [cvm.validate(c)["fused"] for c in codes] == [1 + avx512, 2 * avx512]
    got = [[b.copy() for b in bufs] for _ in codes]
    for code, bs in zip(codes, got):
        cvm.run(code, bs, 2)
    np.testing.assert_array_equal(got[0][3], got[1][3])
    run_both(codes[0], got[0])
    run_both(codes[1], got[1])


def test_a_scalar_read_by_an_immediate_form_stays_a_scalar():
    """1 - s (the immediate on the left: field B is 1, C is 0, and s is register 0) reads only A: the scalar
    is not filled out to a whole tile for fields that are not sources, and x * s after it still reads the
    one element (Adam's 1 - beta1 filled 8192 elements per tile: its 1024x1024 step 0.77 -> 0.59 ms)."""
    n, tile = 1000, 96
    x = np.random.default_rng(7).standard_normal(n).astype(np.float32)
    s = np.array([0.9], np.float32)
    a = Asm([1, 1, 1, n], (1, tile), [(F32, IN, 1), (F32, IN, n), (F32, OUT, n)])
    a.ins(O.LOAD_VIEW, F32, 0, 0, 0).ins(O.SUB_IMM, F32, 0, 1, 0, 1, isa.imm_bits(1.0, F32))   # 1 - s
    a.ins(O.LOAD, F32, 0, 2, 1).ins(O.MUL, F32, 0, 3, 2, 0).ins(O.MUL, F32, 0, 3, 3, 1)       # x * s * (1 - s)
    code = a.ins(O.STORE, F32, 0, 2, 3).code()
    assert cvm.validate(code)["expands"] == 0
    out = run_both(code, [s, x, np.zeros(n, np.float32)])[2]
    np.testing.assert_array_equal(out, x * s[0] * (np.float32(1) - s[0]))


def test_scalar_views_and_their_results_match_the_numpy_vm():
    """0-d inputs read through all-zero strides: the C VM keeps them (and results of scalars only) as one
    element per tile; every kind of reader gets the right values (binary either side, immediate, unary,
    compare of two scalars, select, a store of one, a result going straight to a store), in place too."""
    rng = np.random.default_rng(6)
    n, tile = 1000, 96
    x = rng.standard_normal(n).astype(np.float32)
    s0, s1 = np.array([0.25], np.float32), np.array([-3.0], np.float32)
    bufs = [(F32, IN, n), (F32, IN, 1), (F32, IN, 1), (F32, OUT, n), (F32, OUT, n), (F32, OUT, n),
            (BOOL, OUT, n), (F32, OUT, n)]
    a = Asm([1, 1, 1, n], (1, tile), bufs)
    a.ins(O.LOAD, F32, 0, 0, 0).ins(O.LOAD_VIEW, F32, 0, 1, 1).ins(O.LOAD_VIEW, F32, 0, 2, 2)
    a.ins(O.SUB_IMM, F32, 0, 3, 1, 1, isa.imm_bits(1.0, F32))   # 1 - s0: one element
    a.ins(O.MUL, F32, 0, 4, 3, 2)                                # scalar * scalar
    a.ins(O.NEG, F32, 0, 4, 4)                                   # unary of a scalar, in place
    a.ins(O.MUL, F32, 0, 5, 0, 4).ins(O.SUB, F32, 0, 5, 4, 5)    # full * scalar, scalar - full (D == B)
    a.ins(O.STORE, F32, 0, 3, 5)
    a.ins(O.ADD, F32, 0, 6, 1, 2).ins(O.STORE, F32, 0, 4, 6)     # two scalars straight to a store
    a.ins(O.STORE, F32, 0, 5, 3)                                 # a store of a scalar register
    a.ins(O.LT, F32, 0, 7, 1, 2).ins(O.LT, F32, 0, 8, 2, 0)      # compare of two scalars; scalar < full
    a.ins(O.OR, BOOL, 0, 7, 7, 8).ins(O.STORE, BOOL, 0, 6, 7)
    a.ins(O.SELECT, F32, 0, 9, 8, 1, 0).ins(O.STORE, F32, 0, 7, 9)   # SELECT(c, s0, x)
    out = run_both(a.code(), [x, s0, s1] + [np.zeros(n, np.float32)] * 3 + [np.zeros(n, np.bool_),
                                                                          np.zeros(n, np.float32)])
    m = -((1 - s0) * s1)
    np.testing.assert_array_equal(out[3], m - x * m)
    np.testing.assert_array_equal(out[4], np.full(n, s0 + s1))
    np.testing.assert_array_equal(out[5], np.full(n, 1 - s0))
    np.testing.assert_array_equal(out[6], (s0 < s1) | (s1 < x))
    np.testing.assert_array_equal(out[7], np.where(s1 < x, s0, x))


def test_views_strides_broadcast_rows_and_partial_tiles():
    """Transposed, negative-stride and broadcast views over a 4-D space; ROW loads/stores; every tiling."""
    rng = np.random.default_rng(3)
    D = [2, 3, 5, 7]
    n = int(np.prod(D))
    x = rng.standard_normal(n).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    col = rng.standard_normal(2 * 3 * 5).astype(np.float32)
    tilings = [(1, 1), (1, 3), (1, 7), (2, 7), (4, 7), (30, 7), (64, 7)]
    for tr, tc in tilings:
        a = Asm(D, (tr, tc), [(F32, IN, n), (F32, IN, 7), (F32, IN, 30), (F32, OUT, n), (F32, OUT, n),
                              (F32, OUT, 30)])
        # x transposed on its two middle axes, read backwards along the last; bias broadcast over rows
        a.ins(O.LOAD_VIEW, F32, 0, 0, 0, 0, 6, 105, 7, 21, -1)
        a.ins(O.LOAD_VIEW, F32, 0, 1, 1, 0, 0, 0, 0, 0, 1)
        a.ins(O.ADD, F32, 0, 2, 0, 1)
        a.ins(O.STORE, F32, 0, 3, 2)
        # column vector as a ROW operand, stored through a reversed view
        a.ins(O.LOAD_ROW, F32, 0, 3, 2, 0, 0, 15, 5, 1, 0)
        a.ins(O.MUL, F32, isa.F_B_ROW, 4, 2, 3)
        a.ins(O.STORE_VIEW, F32, 0, 4, 4, 0, n - 1, -105, -35, -7, -1)
        if tc == 7:   # ROW stores need whole rows only for reductions; a ROW result here is a plain copy
            a.ins(O.ADD_IMM, F32, isa.F_ROW | isa.F_A_ROW, 5, 3, 0, isa.imm_bits(1.0, F32))
            a.ins(O.STORE_ROW, F32, 0, 5, 5, 0, 29, -15, -5, -1, 0)
        run_both(a.code(), [x, bias, col, np.zeros(n, np.float32), np.zeros(n, np.float32),
                            np.zeros(30, np.float32)])


@pytest.mark.parametrize("dt", [F32, I32, I64, F16, BOOL])
def test_transposed_views_read_column_runs_as_the_numpy_vm_does(dt):
    """A view with the last two axes swapped (what a reduction along an outer axis loads): consecutive tile rows
    start at consecutive elements until a d1 boundary, and the C VM reads such runs a column at a time."""
    rng = np.random.default_rng(int(dt))
    D = [2, 3, 5, 7]
    n = int(np.prod(D))
    x = {F32: rng.standard_normal(n).astype(np.float32), F16: rng.standard_normal(n).astype(np.float16),
         I32: rng.integers(-2**31, 2**31, n, dtype=np.int32), I64: rng.integers(-2**63, 2**63, n, dtype=np.int64),
         BOOL: rng.integers(0, 2, n).astype(np.bool_)}[dt]
    rdt = F32 if dt == F16 else dt
    for tr, tc in [(1, 7), (2, 7), (3, 7), (4, 7), (8, 7), (30, 7), (1, 3), (1, 1)]:
        a = Asm(D, (tr, tc), [(dt, IN, n), (rdt, OUT, n)])
        a.ins(O.LOAD_VIEW, dt, 0, 0, 0, 0, 0, 105, 35, 1, 5)   # the buffer is [2, 3, 7, 5]
        a.ins(O.STORE, rdt, 0, 1, 0)
        out = run_both(a.code(), [x, np.zeros(n, isa.NUMPY_DTYPE[rdt])])[1]
        want = x.reshape(2, 3, 7, 5).transpose(0, 1, 3, 2).reshape(-1)
        np.testing.assert_array_equal(out, want.astype(out.dtype), err_msg=f"tile {tr}x{tc}")


def test_only_programs_of_much_data_stream_and_only_into_big_buffers(stream_16mib):
    """With the threshold at 16 MiB: a program whose buffers total less keeps its STORE cached (into 6 MiB);
    one whose buffers total 16 MiB or more streams its STORE into a buffer of 2 MiB (an eighth) or more, not
    into a smaller one. The outputs are the same either way. A declared size past int64 bytes counts as
    enough."""
    mib = (1 << 20) // 4   # float32 elements

    def program(n, n_in):   # y = 2x over n elements of an input buffer of n_in
        a = Asm([1, 1, 1, n], (1, 4096), [(F32, IN, n_in), (F32, OUT, n)]).ins(O.LOAD, F32, 0, 0, 0)
        return a.ins(O.MUL_IMM, F32, 0, 1, 0, 0, isa.imm_bits(2.0, F32)).ins(O.STORE, F32, 0, 1, 1).code()
    x = np.random.default_rng(5).standard_normal(20 * mib).astype(np.float32)
    for n, n_in, streams in ((6 * mib, 6 * mib, 0), (10 * mib, 10 * mib, 1), (mib, 20 * mib, 0),
                             (3 * mib, 20 * mib, 1)):
        code = program(n, n_in)
        assert cvm.validate(code)["streams"] == streams, (n, n_in)
        out = run_both(code, [x[:n_in], np.zeros(n, np.float32)], nthreads=(2,))
        np.testing.assert_array_equal(out[1], x[:n] * np.float32(2))
    assert cvm.validate(program(3 * mib, 2**61))["streams"] == 1   # a table's 2^61 elements: no overflow


def test_big_outputs_stream_and_loads_alias_their_inputs(stream_16mib):
    """A STORE into a buffer past the VM's non-temporal threshold (set to 16 MiB), at an offset that leaves every
    tile's run unaligned, and LOADs that read the input in place, one into a register later overwritten
    (run_both also checks that the input buffers come back unchanged)."""
    rng = np.random.default_rng(4)
    n = (16 << 20) // 4 + 4099
    x = rng.standard_normal(n).astype(np.float32)
    for tile in (1000, 4096):
        a = Asm([1, 1, 1, n], (1, tile), [(F32, IN, n), (F32, OUT, n + 3), (I32, IN, n), (I32, OUT, n)])
        a.ins(O.LOAD, F32, 0, 0, 0).ins(O.ADD_IMM, F32, 0, 1, 0, 0, isa.imm_bits(0.5, F32))
        a.ins(O.MUL, F32, 0, 2, 1, 0)
        a.ins(O.SUB, F32, 0, 0, 2, 1)   # overwrites r0, the load that read the input in place
        a.ins(O.STORE, F32, 0, 1, 0, 0, 3)
        a.ins(O.LOAD, I32, 0, 2, 2).ins(O.ADD_IMM, I32, 0, 3, 2, 0, 7).ins(O.STORE, I32, 0, 3, 3)
        ints = rng.integers(-1000, 1000, n).astype(np.int32)
        assert cvm.validate(a.code())["streams"] == 2
        out = run_both(a.code(), [x, np.zeros(n + 3, np.float32), ints, np.zeros(n, np.int32)],
                       nthreads=(1, 2))
        np.testing.assert_array_equal(out[1][3:], x * (x + np.float32(0.5)) - (x + np.float32(0.5)))
        np.testing.assert_array_equal(out[3], ints + 7)


@pytest.mark.parametrize("dt", [F32, I64])
def test_a_row_every_tile_row_reads_is_used_in_place_or_expanded(dt):
    """A LOAD_VIEW reading the same input row for every row (a broadcast bias) is read row by row by plain
    binaries and copied out to packed rows for everything else: ROW-flag binaries, unary ops, SELECT and
    stores, also after it was consumed in place and when it is both operands."""
    rng = np.random.default_rng(5)
    rows, cols = 9, 40
    t = isa.NUMPY_DTYPE[dt]
    x = (rng.standard_normal(rows * cols) * 5).astype(t)
    bias = (rng.standard_normal(cols) * 5).astype(t)
    col = (rng.standard_normal(rows) * 5).astype(t)
    for tr, tc in ((1, 40), (4, 40), (9, 40), (1, 16)):
        a = Asm([1, 1, rows, cols], (tr, tc), [(dt, IN, x.size), (dt, IN, cols), (dt, IN, rows)] +
                [(dt, OUT, x.size)] * 5)
        a.ins(O.LOAD, dt, 0, 0, 0).ins(O.LOAD_VIEW, dt, 0, 1, 1, 0, 0, 0, 0, 0, 1)   # r1: the repeated row
        a.ins(O.ADD, dt, 0, 2, 0, 1).ins(O.MUL, dt, 0, 3, 1, 1)     # in place, also as both operands
        a.ins(O.STORE, dt, 0, 3, 2).ins(O.STORE, dt, 0, 4, 3)
        a.ins(O.NEG, dt, 0, 5, 1).ins(O.STORE, dt, 0, 5, 5)         # unary: expanded first
        a.ins(O.SUB, dt, 0, 6, 1, 0).ins(O.STORE, dt, 0, 6, 6)      # ordinary register after expanding
        if tc == cols:   # ROW operands need whole rows here (a ROW load of one value per row)
            a.ins(O.LOAD_ROW, dt, 0, 7, 2, 0, 0, 0, 1, 0).ins(O.MUL, dt, isa.F_B_ROW, 8, 1, 7)
            a.ins(O.LOAD_VIEW, dt, 0, 9, 1, 0, 0, 0, 0, 0, 1).ins(O.GT, dt, 0, 10, 0, 9)
            a.ins(O.SELECT, dt, 0, 11, 10, 9, 8).ins(O.STORE, dt, 0, 7, 11)
        run_both(a.code(), [x, bias, col] + [np.zeros(x.size, t) for _ in range(5)])


def test_float16_and_bool_buffers_convert_exactly():
    h = np.concatenate([np.arange(-70000, 70000, 7, dtype=np.float32), SPECIAL,
                        np.array([6.1e-5, 6.0e-5, 5.96e-8, 2.98e-8, 2.99e-8, 65519.99, 65520, 1 + 2**-11,
                                  1 + 3 * 2**-11], np.float32)])
    bits = np.arange(65536, dtype=np.uint16).view(np.float16)   # every float16, NaNs included
    n = h.size
    a = Asm([1, 1, 1, n], (1, 4096), [(F32, IN, n), (F16, OUT, n)])
    run_both(a.ins(O.LOAD, F32, 0, 0, 0).ins(O.STORE, F16, 0, 1, 0).code(), [h, np.zeros(n, np.float16)])
    a = Asm([1, 1, 1, 65536], (1, 4096), [(F16, IN, 65536), (F32, OUT, 65536), (F16, OUT, 65536)])
    a.ins(O.LOAD, F16, 0, 0, 0).ins(O.STORE, F32, 0, 1, 0).ins(O.STORE, F16, 0, 2, 0)
    out = run_both(a.code(), [bits, np.zeros(65536, np.float32), np.zeros(65536, np.float16)])
    ok = ~np.isnan(bits)
    assert np.array_equal(out[2].view(np.uint16)[ok], bits.view(np.uint16)[ok])
    b = np.frombuffer(bytes([0, 1, 2, 255, 0, 7]), np.bool_).copy()
    a = Asm([1, 1, 1, 6], (1, 6), [(BOOL, IN, 6), (BOOL, OUT, 6), (I32, OUT, 6)])
    a.ins(O.LOAD, BOOL, 0, 0, 0).ins(O.STORE, BOOL, 0, 1, 0).ins(O.CAST, I32, 0, 1, 0, BOOL)
    out = run_both(a.ins(O.STORE, I32, 0, 2, 1).code(), [b, np.zeros(6, np.bool_), np.zeros(6, np.int32)])
    assert out[1].view(np.uint8).tolist() == [0, 1, 1, 1, 0, 1] and out[2].tolist() == [0, 1, 1, 1, 0, 1]


@pytest.mark.parametrize("dt", [F32, I32, I64, BOOL])
def test_select_const_and_bcast_with_every_class_combination(dt):
    rows, cols = 6, 11
    n = rows * cols
    rng = np.random.default_rng(int(dt))
    vals = rng.integers(0, 2, n).astype(isa.NUMPY_DTYPE[dt]) if dt == BOOL else \
        rng.integers(-50, 50, n).astype(isa.NUMPY_DTYPE[dt])
    cond = rng.integers(0, 2, n).astype(np.bool_)
    for fl in range(16):
        row = fl & isa.F_ROW
        if row and (fl & 14) != 14:
            continue
        m = rows if row else n
        a = Asm([1, 1, rows, cols], (4, cols), [(BOOL, IN, n), (dt, IN, n), (dt, OUT, m)])
        a.ins(O.LOAD, BOOL, 0, 0, 0).ins(O.LOAD, dt, 0, 1, 1).ins(O.LOAD_ROW, BOOL, 0, 2, 0, 0, 0, 0, 0, cols)
        a.ins(O.LOAD_ROW, dt, 0, 3, 1, 0, 0, 0, 0, cols)
        a.ins(O.CONST, dt, isa.F_ROW, 4, 0, 0, isa.imm_bits(1, dt))
        a.ins(O.CONST, dt, 0, 5, 0, 0, isa.imm_bits(0, dt))
        c = 2 if fl & isa.F_A_ROW else 0
        x = 3 if fl & isa.F_B_ROW else 1
        y = 4 if fl & isa.F_C_ROW else 5
        a.ins(O.SELECT, dt, fl, x, c, x, y)   # D aliases a source on purpose
        if row:
            a.ins(O.STORE_ROW, dt, 0, 2, x, 0, 0, 0, 0, 1)
        else:
            a.ins(O.STORE, dt, 0, 2, x)
        run_both(a.code(), [cond, vals, np.zeros(m, isa.NUMPY_DTYPE[dt])])
    a = Asm([1, 1, rows, cols], (4, cols), [(dt, IN, n), (dt, OUT, n)])
    a.ins(O.LOAD_ROW, dt, 0, 0, 0, 0, 0, 0, 0, cols).ins(O.BCAST_ROW, dt, isa.F_A_ROW, 0, 0)
    run_both(a.ins(O.STORE, dt, 0, 1, 0).code(), [vals, np.zeros(n, isa.NUMPY_DTYPE[dt])])


def test_empty_space_runs_nothing():
    a = Asm([0, 3, 4, 5], (1, 5), [(F32, IN, 0), (F32, OUT, 0)])
    run_both(a.ins(O.LOAD, F32, 0, 0, 0).ins(O.STORE, F32, 0, 1, 0).code(),
             [np.zeros(0, np.float32), np.zeros(0, np.float32)])


def simple_copy(n=10, tile=(1, 10)):
    return Asm([1, 1, 1, n], tile, [(F32, IN, n), (F32, OUT, n)]).ins(O.LOAD, F32, 0, 0, 0) \
        .ins(O.STORE, F32, 0, 1, 0)


def _set(code, i, v):
    code = code.copy()
    code[i] = v & M64
    return code


BAD = {
    "magic": lambda c: _set(c, 0, 1), "version": lambda c: _set(c, 1, 9), "n_words": lambda c: c[:-1],
    "reserved": lambda c: _set(c, 13, 1), "n_regs": lambda c: _set(c, isa.H["n_regs"], 0),
    "too many regs": lambda c: _set(c, isa.H["n_regs"], isa.MAX_REGS + 1),
    "n_instr": lambda c: _set(c, isa.H["n_instr"], 5), "negative dim": lambda c: _set(c, isa.H["d0"], -1),
    "huge space": lambda c: _set(_set(c, isa.H["d0"], 1 << 40), isa.H["d1"], 1 << 30),
    "tile": lambda c: _set(c, isa.H["tile_cols"], 11), "tile rows": lambda c: _set(c, isa.H["tile_rows"], 0),
    "buffer dtype": lambda c: _set(c, 16, 9 | 1 << 8), "buffer role": lambda c: _set(c, 16, 1 | 7 << 8),
    "short buffer": lambda c: _set(c, 17, 9), "opcode": lambda c: _set(c, 20, 0x7F),
    "dtype": lambda c: _set(c, 20, isa.word0(O.LOAD, I32)),
    "flags": lambda c: _set(c, 20, isa.word0(O.LOAD, F32, 1)),
    "register": lambda c: _set(c, 22, isa.word0(O.STORE, F32, 0, 1, 99)),
    "undefined register": lambda c: _set(c, 22, isa.word0(O.STORE, F32, 0, 1, 3)),
    "store to input": lambda c: _set(c, 22, isa.word0(O.STORE, F32, 0, 0, 0)),
    "buffer index": lambda c: _set(c, 22, isa.word0(O.STORE, F32, 0, 5, 0)),
    "offset": lambda c: _set(c, 21, 1), "negative offset": lambda c: _set(c, 21, -1),
    "end early": lambda c: _set(c, 20, isa.word0(O.END)),
    "no end": lambda c: _set(c, 24, isa.word0(O.MOV, F32)),
    "unused field": lambda c: _set(c, 20, isa.word0(O.LOAD, F32, 0, 0, 0, 1)),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_programs_are_rejected_by_both_vms(case):
    code = BAD[case](simple_copy().code())
    bufs = [np.ones(10, np.float32), np.zeros(10, np.float32)]
    with pytest.raises(pyvm.DvmError):
        pyvm.run(code, [b.copy() for b in bufs])
    with pytest.raises(cvm.BytecodeError, match="bad DVM program"):
        cvm.run(code, bufs)
    assert not bufs[1].any()


def test_bad_buffers_are_rejected():
    code = simple_copy().code()
    ok_in, ok_out = np.ones(10, np.float32), np.zeros(10, np.float32)
    ro = np.ones(10, np.float32)
    ro.flags.writeable = False
    cvm.run(code, [ro, ok_out])   # read-only inputs are fine
    for bufs in ([ok_in], [ok_in, ok_out, ok_out], [ok_in.astype(np.float64), ok_out], [ok_in, ok_out[:9]],
                 [ok_in, np.zeros(20, np.float32)[::2]], [ok_in, ro], [ok_in.astype(np.int32), ok_out],
                 [ok_in, "not an array"], (ok_in, ok_out.view(np.uint32))):
        with pytest.raises(cvm.BytecodeError):
            cvm.run(code, list(bufs))
    with pytest.raises(cvm.BytecodeError):
        cvm.run(code.tobytes()[:-3], [ok_in, ok_out])
    cvm.run(code.tobytes(), [ok_in, ok_out])   # any bytes-like program
    cvm.run(np.frombuffer(b"\0" + code.tobytes(), np.uint8)[1:], [ok_in, ok_out])   # misaligned
    with pytest.raises(ValueError):
        cvm.run(code, [ok_in, ok_out], nthreads=0)
    assert cvm.validate(code)["n_instr"] == 3


class BothVMs:
    """A vm_run for DvmBackend: runs the numpy VM and the C VM (1 and 2 threads) on each program, compares."""

    def __init__(self):
        self.programs = 0

    def __call__(self, code, bufs):
        ref = run_both(code, bufs, exact=False, nthreads=(1, 2))
        for b, r in zip(bufs, ref):
            if b.flags.writeable:
                b[...] = r
        self.programs += 1


MODEL_SHAPES = {"tiny_gpt": [{"batch": 1, "seq": 5}, {"batch": 2, "seq": 16}, {"batch": 3, "seq": 33}],
                "mobilenet": [{"batch": 1, "height": 32, "width": 32},
                              {"batch": 2, "height": 48, "width": 40}],
                "mlp": [{"batch": 1}, {"batch": 7}]}


@pytest.mark.parametrize("name", sorted(MODEL_SHAPES))
def test_bundled_model_clusters_match_the_numpy_vm(name):
    import framework
    import onnx_models
    from dvm_runtime.backend import DvmBackend
    from framework.backends import NUMPY
    from framework.executor import GraphExecutor
    model = onnx_models.build(name)
    graph = framework.InferenceSession(model, jit_level="O1").graph
    s0 = framework.InferenceSession(model, jit_level="O0")
    backend, both = DvmBackend(vm="c"), BothVMs()
    backend._run = both
    ex = GraphExecutor(graph, backends=(backend, NUMPY))
    for dims in MODEL_SHAPES[name]:
        feed = onnx_models.example_inputs(name, dims)
        got = ex.run([feed[v.name] for v in graph.inputs])
        for g, r in zip(got, s0.run(None, feed), strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(r).max())))
    assert both.programs >= len(MODEL_SHAPES[name])   # every shape ran its clusters on both VMs


def test_random_fused_graphs_match_the_numpy_vm():
    """The fusion issue's random graph generator (static and symbolic dims), clusters run on both VMs."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "graph_kernel"))
    try:
        from test_fusion_property import STEPS, build, feeds
    finally:
        sys.path.pop(0)
    from dvm_runtime.backend import DvmBackend
    from framework.backends import NUMPY
    from framework.compile import run_passes
    from framework.executor import GraphExecutor
    rng = np.random.default_rng(7)
    both = BothVMs()
    for k in range(60):
        recipe = [(STEPS[rng.integers(len(STEPS))], int(rng.integers(51)), int(rng.integers(51)))
                  for _ in range(rng.integers(1, 11))]
        symbolic = bool(k % 2)
        g = run_passes(build(recipe, symbolic, k % 3), "O1")
        backend = DvmBackend(vm="c")
        backend._run = both
        e0, e1 = GraphExecutor(run_passes(build(recipe, symbolic, k % 3), "O0")), \
            GraphExecutor(g, backends=(backend, NUMPY))
        for args in feeds(symbolic):
            for a, b in zip(e0.run(args), e1.run(args), strict=True):
                np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert both.programs > 30


def big_chain(n):
    """A 6-op elementwise chain over n floats (the operator suite's shape of work)."""
    a = Asm([1, 1, 1, n], (1, 8192), [(F32, IN, n), (F32, IN, n), (F32, OUT, n)])
    a.ins(O.LOAD, F32, 0, 0, 0).ins(O.LOAD, F32, 0, 1, 1).ins(O.MUL, F32, 0, 2, 0, 1)
    a.ins(O.ADD_IMM, F32, 0, 2, 2, 0, isa.imm_bits(0.5, F32)).ins(O.TANH, F32, 0, 2, 2)
    a.ins(O.SUB, F32, 0, 2, 2, 0).ins(O.ERF, F32, 0, 2, 2).ins(O.MAX, F32, 0, 2, 2, 1)
    return a.ins(O.STORE, F32, 0, 2, 2).code()


def test_threads_give_identical_bits_and_concurrent_callers_are_safe():
    n = 300_000
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    code = big_chain(n)
    outs = {}
    for nt in (1, 2, 4, 7):
        outs[nt] = np.zeros(n, np.float32)
        cvm.run(code, [x, y, outs[nt]], nt)
        np.testing.assert_array_equal(outs[nt], outs[1])
    results, errors = [], []

    def worker():
        try:
            for _ in range(5):
                o = np.zeros(n, np.float32)
                cvm.run(code, [x, y, o], 2)
                results.append(np.array_equal(o, outs[1]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 20 and all(results)


def test_forked_child_can_run_threads():
    """The pool's workers do not survive fork(); the child must start fresh ones instead of hanging."""
    script = ("import os, numpy as np, sys; sys.path.insert(0, %r)\n"
              "from tests.dvm_runtime.test_cvm import big_chain\nfrom dvm_runtime import cvm\n"
              "n = 200000; x = np.ones(n, np.float32); o = np.zeros(n, np.float32); c = big_chain(n)\n"
              "cvm.run(c, [x, x, o], 2)\npid = os.fork()\n"
              "if pid == 0:\n    o2 = np.zeros(n, np.float32); cvm.run(c, [x, x, o2], 2)\n"
              "    os._exit(0 if np.array_equal(o, o2) else 3)\n"
              "_, st = os.waitpid(pid, 0); sys.exit(os.waitstatus_to_exitcode(st))\n") % os.getcwd()
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == 0


_SHARED_POOL_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {root!r})
from framework import _ckernels
from tests.dvm_runtime.test_cvm import big_chain
from dvm_runtime import cvm

def count():
    return int(next(line for line in open('/proc/self/status') if line.startswith('Threads:')).split()[1])

before = count()
a = np.ones((256, 256), np.float32)
c = np.empty_like(a)
_ckernels.matmul(a, a, c, nthreads=3)
n = 200000
x, o, o1 = np.ones(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
cvm.run(big_chain(n), [x, x, o], 3)
cvm.run(big_chain(n), [x, x, o1], 1)
assert np.array_equal(o, o1) and np.all(c == 256), 'results'
sys.exit(0 if count() - before == 2 else 10 + count() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="counts threads in /proc/self/status")
@pytest.mark.parametrize("spin_us", ["0", "50", "100000"])
def test_gemm_and_vm_share_one_pool_of_workers(spin_us):
    """framework._ckernels' GEMM runs on the VM's pool (one worker per extra thread, not one per extension),
    and results do not depend on how long idle workers poll ($MSGX_POOL_SPIN_US, 0: never)."""
    proc = subprocess.run([sys.executable, "-c", _SHARED_POOL_SCRIPT.format(root=os.getcwd())], timeout=60,
                          capture_output=True, text=True, env={**os.environ, "MSGX_POOL_SPIN_US": spin_us})
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


def test_math_accuracy_against_float64():
    x = np.concatenate([np.linspace(-110, 95, 400_001, dtype=np.float32), SPECIAL])
    ref = {O.EXP: np.exp, O.LOG: np.log, O.TANH: np.tanh, O.SIGMOID: lambda v: 1 / (1 + np.exp(-v)),
           O.ERF: np.vectorize(math.erf, otypes=[np.float64])}
    for op, fn in ref.items():
        out = np.zeros(x.size, np.float32)
        cvm.run(unary_prog(op, F32, x.size), [x, out])
        with np.errstate(all="ignore"):
            want = fn(x.astype(np.float64)).astype(np.float32)
        tiny = np.abs(want) < np.finfo(np.float32).tiny   # subnormal results: absolute error only
        np.testing.assert_allclose(out[~tiny], want[~tiny], rtol=1e-6, atol=0, equal_nan=True,
                                   err_msg=op.name)
        assert np.all(np.abs(out[tiny] - want[tiny]) < 1e-38)


def test_tanh_saturates_to_one_where_float32_rounds_it_there():
    """Where float32 tanh is +-1 (|x| past 13 ln 2 = 9.0109), TANH gives exactly +-1, in the unfused kernel and
    in a chain (the fit clamped at 9 gave 1 - 2^-24, and gelu's tanh form of -1e4 came to -3e-4, not -0);
    nowhere more than 1 (its roundings reached 1 + 2^-23 near 9)."""
    x = np.concatenate([np.linspace(8.9, 12, 2001, dtype=np.float32), [20, 1e4, 3e38, np.inf]]).astype(np.float32)
    x = np.concatenate([x, -x])
    want = np.tanh(x.astype(np.float64)).astype(np.float32)
    one = np.abs(want) == 1
    assert one.sum() > 3000
    n = x.size
    unfused = np.zeros(n, np.float32)
    cvm.run(unary_prog(O.TANH, F32, n), [x, unfused])
    chain = Asm([1, 1, 1, n], (1, n), [(F32, IN, n), (F32, OUT, n)])
    chain.ins(O.LOAD, F32, 0, 0, 0).ins(O.TANH, F32, 0, 1, 0)
    chain.ins(O.MUL_IMM, F32, 0, 1, 1, 0, isa.imm_bits(1.0, F32)).ins(O.STORE, F32, 0, 1, 1)
    chained = np.zeros(n, np.float32)
    cvm.run(chain.code(), [x, chained])
    for out in (unfused, chained):
        np.testing.assert_array_equal(out[one], want[one])
        np.testing.assert_allclose(out[~one], want[~one], rtol=3e-7)
        assert np.all(np.abs(out) <= 1)
    np.testing.assert_array_equal(unfused, chained)


def test_unavailable_reason_is_a_string():
    assert cvm.available() and cvm.why_unavailable() == "" and cvm.cpu_count() >= 1


def test_missing_extension_falls_back_to_the_numpy_vm():
    script = ("import sys; sys.modules['dvm_runtime._cvm'] = None\nfrom dvm_runtime import cvm\n"
              "from dvm_runtime.backend import DvmBackend\n"
              "assert not cvm.available() and 'not built' in cvm.why_unavailable()\n"
              "assert DvmBackend().vm == 'numpy'\n")
    assert subprocess.run([sys.executable, "-c", script], timeout=60, cwd=os.getcwd()).returncode == 0
