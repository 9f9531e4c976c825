"""Elementwise chains: runs of float32 instructions the C VM executes as one pass over 64-element strips
(vm_validate.c's fuse_chains, vm_kernels.c's chain kernel, on machines with AVX-512). Each program is run
twice, as written (a chain) and with MOVs between its instructions (which keep the VM from forming one):
the bits must be the same, zeros' signs included, and the numpy VM must agree."""
import numpy as np
import pytest

from dvm_runtime import cvm, isa
from dvm_runtime.isa import DType, Opcode as O, Role

from .test_cvm import APPROX, Asm, binary_inputs, run_both

pytestmark = pytest.mark.skipif(not cvm.available(), reason=f"C VM unavailable: {cvm.why_unavailable()}")
F32, IN, OUT = DType.F32, Role.INPUT, Role.OUTPUT
UNARY = (O.EXP, O.TANH, O.ERF, O.SIGMOID, O.SQRT, O.RSQRT, O.RECIP, O.NEG, O.ABS)
BINARY = (O.ADD, O.SUB, O.MUL, O.DIV, O.MAX, O.MIN)
SCRATCH = 14  # the register the breaking MOVs write


def _avx512() -> bool:
    with open("/proc/cpuinfo") as f:
        return " avx512f" in f.read()


def assert_same_bits(got, want):
    """Equal values with equal bits (so -0.0 differs from 0.0); NaN where the other has NaN."""
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan])


def chained_and_broken(build):
    """build(brk) writes a program, calling brk() wherever a MOV may go; returns (chained, broken) codes."""
    codes = []
    for mov in (False, True):
        a = build(lambda a, src: a.ins(O.MOV, F32, 0, SCRATCH, src) if mov else a)
        codes.append(a.code())
    return codes


def run_and_compare(codes, bufs, outs, exact, fused_at_least=1):
    """Both codes give the same bits in the output buffers `outs`, and the numpy VM agrees with the chain."""
    assert cvm.validate(codes[0])["fused"] >= (fused_at_least if _avx512() else 0)
    assert cvm.validate(codes[1])["fused"] == 0
    got = []
    for code in codes:
        bs = [b.copy() for b in bufs]
        cvm.run(code, bs, 2)
        got.append(bs)
    for i in outs:
        assert_same_bits(got[0][i], got[1][i])
    run_both(codes[0], bufs, exact=exact, nthreads=(1, 3))


def _one_op(op, form, x, y, cols):
    """op on x (and y as a form: packed, an immediate either side, a row every tile row reads, a scalar),
    then a MUL by 1 (exact) so the op is a step of a two-step chain; multi-row tiles with a ragged tail."""
    n = x.size
    bufs = [(F32, IN, n), (F32, IN, n), (F32, IN, cols), (F32, IN, 1), (F32, OUT, n)]

    def build(brk):
        a = Asm([1, 1, n // cols, cols], (4, cols), bufs).ins(O.LOAD, F32, 0, 0, 0)
        if op in UNARY:
            a.ins(op, F32, 0, 2, 0)
        elif form == "packed":
            a.ins(O.LOAD, F32, 0, 1, 1).ins(op, F32, 0, 2, 0, 1)
        elif form in ("imm", "imm_left"):
            a.ins(op + isa.IMM_DELTA, F32, 0, 2, 0, int(form == "imm_left"), isa.imm_bits(y[7], F32))
        elif form == "row":
            a.ins(O.LOAD_VIEW, F32, 0, 1, 2, 0, 0, 0, 0, 0, 1).ins(op, F32, 0, 2, 1, 0)
        else:  # a scalar on the left
            a.ins(O.LOAD_VIEW, F32, 0, 1, 3, 0, 0, 0, 0, 0, 0).ins(op, F32, 0, 2, 1, 0)
        brk(a, 2)
        return a.ins(O.MUL_IMM, F32, 0, 3, 2, 0, isa.imm_bits(1.0, F32)).ins(O.STORE, F32, 0, 4, 3)
    return chained_and_broken(build), [x, y, y[:cols].copy(), y[5:6].copy(), np.zeros(n, np.float32)]


@pytest.mark.parametrize("op", UNARY + BINARY)
def test_every_chain_op_gives_its_kernels_bits(op):
    x, y = binary_inputs(F32, np.random.default_rng(int(op)))
    cols = int(np.sqrt(x.size))  # every value against every value, rows of 83: tiles of 4 rows, tails of 19
    forms = ["packed"] if op in UNARY else ["packed", "imm", "imm_left", "row", "scalar"]
    for form in forms:
        codes, bufs = _one_op(op, form, x, y, cols)
        run_and_compare(codes, bufs, [4], exact=op not in APPROX)


def test_a_chain_with_slots_reused_registers_direct_stores_and_later_readers():
    """GELU-like, tanh and sigmoid steps reading earlier results (slots), registers reused for new values, a pointer
    LOAD and a scalar in the middle, a result stored straight to an output and then read again, and a
    value read after the chain (a row sum), over tiles of 8 rows of 50."""
    rng = np.random.default_rng(11)
    rows, cols = 37, 50
    n = rows * cols
    x, y = (rng.standard_normal(n) * 3).astype(np.float32), (rng.standard_normal(n) * 3).astype(np.float32)
    x[::97] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, 88.8, -110, 9.5, -4.5, 3e38, -0.0, 1.0, -1.0,
               np.nan, 5.0, -5.0, 1e-30, -1e-30, 0.5][: x[::97].size]
    bufs = [(F32, IN, n), (F32, IN, n), (F32, IN, cols), (F32, IN, 1), (F32, OUT, n), (F32, OUT, n),
            (F32, OUT, rows)]

    def build(brk):
        a = Asm([1, 1, rows, cols], (8, cols), bufs)
        a.ins(O.LOAD, F32, 0, 0, 0).ins(O.LOAD_VIEW, F32, 0, 1, 2, 0, 0, 0, 0, 0, 1)
        a.ins(O.ADD, F32, 0, 2, 0, 1)
        brk(a, 2).ins(O.DIV_IMM, F32, 0, 3, 2, 0, isa.imm_bits(1.4142135, F32))
        brk(a, 2).ins(O.ERF, F32, 0, 4, 3)
        a.ins(O.LOAD, F32, 0, 5, 1).ins(O.LOAD_VIEW, F32, 0, 6, 3, 0, 0, 0, 0, 0, 0)
        brk(a, 2).ins(O.MUL, F32, 0, 3, 4, 5)
        brk(a, 2).ins(O.SUB, F32, 0, 7, 6, 3)
        brk(a, 2).ins(O.MAX_IMM, F32, 0, 4, 7, 0, isa.imm_bits(0.25, F32))
        brk(a, 2).ins(O.TANH, F32, 0, 0, 4)
        brk(a, 2).ins(O.MUL, F32, 0, 1, 0, 2).ins(O.STORE, F32, 0, 4, 1)
        brk(a, 2).ins(O.SUB_IMM, F32, 0, 6, 1, 1, isa.imm_bits(2.0, F32))
        brk(a, 2).ins(O.SIGMOID, F32, 0, 5, 6).ins(O.STORE, F32, 0, 5, 5)
        a.ins(O.RSUM, F32, isa.F_ROW, 7, 3)
        return a.ins(O.STORE_ROW, F32, 0, 6, 7, 0, 0, 0, 0, 1, 0)
    data = [x, y, y[:cols].copy(), np.array([0.75], np.float32), np.zeros(n, np.float32),
            np.zeros(n, np.float32), np.zeros(rows, np.float32)]
    run_and_compare(chained_and_broken(build), data, [4, 5, 6], exact=False)


@pytest.mark.parametrize("tile", [4096, 1000])
@pytest.mark.parametrize("misalign", [0, 1])
def test_a_chain_ending_in_a_streamed_store(tile, misalign, stream_16mib):
    """A chain whose STORE goes to a buffer past the non-temporal threshold: streamed from the chain where
    the output is 64-byte aligned and tiles are whole vectors, stored plainly otherwise; same bits."""
    rng = np.random.default_rng(12)
    n = (16 << 20) // 4 + 4099
    x = (rng.standard_normal(n) * 20).astype(np.float32)
    raw = np.zeros(n + 32, np.float32)
    start = (-raw.ctypes.data % 64) // 4 + misalign
    out = raw[start:start + n]
    assert out.flags.c_contiguous and (out.ctypes.data % 64 == 0) == (misalign == 0)

    def build(brk):
        a = Asm([1, 1, 1, n], (1, tile), [(F32, IN, n), (F32, OUT, n)]).ins(O.LOAD, F32, 0, 0, 0)
        a.ins(O.MUL_IMM, F32, 0, 1, 0, 0, isa.imm_bits(0.5, F32))
        brk(a, 1).ins(O.EXP, F32, 0, 2, 1)
        return brk(a, 1).ins(O.STORE, F32, 0, 1, 2)
    codes = chained_and_broken(build)
    got = []
    for code in codes:
        out[:] = 0
        cvm.run(code, [x, out], 2)
        got.append(out.copy())
    assert cvm.validate(codes[0])["fused"] == int(_avx512())
    assert [cvm.validate(c)["streams"] for c in codes] == [1, 1]
    assert_same_bits(got[0], got[1])
    np.testing.assert_allclose(got[0], np.exp(x * np.float32(0.5)), rtol=2e-6)


@pytest.mark.parametrize("tile", [(1, 64), (3, 300), (1, 300)])
def test_chains_covering_a_program_run_on_bigger_tiles(tile):
    """Where chains cover every instruction that runs over the tile, the VM takes tiles of full rows bigger
    than the program's L1-sized ones (fewer tiles: validate's count); a bias row every tile row reads, a
    scalar, 137 rows (tiles of 54, a ragged last one) and row pieces in the header give the numpy VM's bits."""
    rows, cols = 137, 300
    rng = np.random.default_rng(21)
    x = rng.standard_normal(rows * cols).astype(np.float32)
    b = rng.standard_normal(cols).astype(np.float32)
    s = np.array([0.75], np.float32)
    a = Asm([1, 1, rows, cols], tile, [(F32, IN, x.size), (F32, IN, cols), (F32, IN, 1), (F32, OUT, x.size)])
    a.ins(O.LOAD, F32, 0, 0, 0).ins(O.LOAD_VIEW, F32, 0, 1, 1, 0, 0, 0, 0, 0, 1)
    a.ins(O.LOAD_VIEW, F32, 0, 2, 2).ins(O.ADD, F32, 0, 3, 0, 1).ins(O.MUL, F32, 0, 3, 3, 2)
    a.ins(O.SUB, F32, 0, 3, 3, 0).ins(O.STORE, F32, 0, 3, 3)
    code = a.code()
    header_tiles = -(-rows // tile[0]) * -(-cols // tile[1])
    assert cvm.validate(code)["ntiles"] == (3 if _avx512() else header_tiles)   # 16384 // 300 = 54 rows
    out = run_both(code, [x, b, s, np.zeros_like(x)], nthreads=(1, 2, 3))[3]
    np.testing.assert_array_equal(out, (x + np.tile(b, rows)) * s[0] - x)
