"""DVM instruction set: the one definition of opcodes, dtypes, operand formats and the program layout.

Execution model (the C VM and dvm_runtime.pyvm implement exactly this):

PROGRAM. A 1-D numpy uint64 array: HEADER_WORDS header words (see `header_fields`), then a buffer table of
BUF_WORDS words per buffer slot, then the instructions (starting at word CODE_START + BUF_WORDS * n_buffers).
Word 0 is MAGIC, word 1 VERSION, n_words equals the array length. Header words marked reserved must be 0.

ITERATION SPACE. Every program runs over one logical space of 4 dims D0, D1, D2, D3 (row-major, D3 innermost):
ROWS = D0*D1*D2 rows of COLS = D3 columns. Row r decomposes as r = (d0*D1 + d1)*D2 + d2. A dim may be 0
(then nothing runs). Tensors of other shapes are reached through views (below), so a reduction over a
non-last axis is a row reduction over a permuted space.

TILES. A tile is a block of nr <= TR = tile_rows consecutive rows by nc <= TC = tile_cols consecutive columns.
Either TR == 1 (column chunks of long rows) or TC == COLS (whole rows). Tiles are numbered
t = rb * CB + cb with RB = ceil(ROWS/TR), CB = ceil(COLS/TC); tile t covers rows [rb*TR, rb*TR + nr) and
cols [cb*TC, cb*TC + nc), nr = min(TR, ROWS - rb*TR), nc = min(TC, COLS - cb*TC). The VM runs the whole
instruction list, from the first instruction to END, once per tile. Tiles are independent: they may run in
any order and on any thread (registers are per thread; a register is undefined at the start of each tile).

REGISTERS. n_regs tile registers, each with room for TR*TC elements of up to 8 bytes. A register holds a
dtype (F32, I32, I64 or BOOL: the compute dtypes) and a class: FULL = nr*nc elements packed row-major with
row pitch nc (element (i, j) at i*nc + j), or ROW = nr elements (one per tile row, e.g. a reduced value).

VIEWS (memory operands). A view is (buffer b, offset o, strides s0..s3 in elements, signed). Element (i, j)
of a tile, at global row r = (d0, d1, d2) and column c, lives at b[o + d0*s0 + d1*s1 + d2*s2 + c*s3].
Broadcasting is a 0 stride; a transpose or slice is a permuted/strided view. LOAD/STORE (contiguous) use
the implied strides (D1*D2*D3, D2*D3, D3, 1). ROW forms (LOAD_ROW, STORE_ROW) address one element per row:
b[o + d0*s0 + d1*s1 + d2*s2] and require s3 == 0.
Loads convert the buffer dtype to the compute dtype (F16 -> F32 exactly); stores convert back (F32 -> F16
rounds to nearest even, overflow -> inf). BOOL is one byte, 0 or 1 (loads map any non-zero byte to 1).
A store view that maps two elements to one address leaves that address unspecified (never a crash); the
encoder never emits one, nor a program that loads a buffer it stores.

INSTRUCTIONS. Word 0 of every instruction: bits 0-7 opcode, 8-11 dtype, 12-15 flags, 16-31 field D, 32-47
field A, 48-63 field B. Extra words follow per opcode (OPCODE_FORMS). D is the destination register (for
stores: the buffer), A and B source registers (or buffer/other meaning per form). Flags: F_ROW (bit 12) the
result class is ROW; F_A_ROW/F_B_ROW/F_C_ROW (bits 13-15) that source is a ROW register broadcast along the
row of a FULL result; unflagged sources are FULL. A ROW result needs every register source ROW (flags set).
UNARY/CAST: F_A_ROW must equal F_ROW, except BCAST_ROW whose flags are exactly F_A_ROW. REDUCE: exactly F_ROW.
CONST: F_ROW picks the class. Memory forms: flags 0 (the opcode fixes the class). Immediates (word 1 of
*_IMM and CONST) hold the value in the dtype's bits: F32 in the low 32 bits (IEEE), I32 low 32 bits
(two's complement), I64 all 64 bits, BOOL bit 0.

SEMANTICS (per element, dtype = the instruction's dtype = the dtype of its register sources):
- Integer ADD/SUB/MUL/NEG/ABS wrap (two's complement). Integer DIV truncates toward zero; x/0 = 0 and
  MIN/-1 = MIN. MOD is floor-mod (numpy np.mod; sign of the divisor): integer x mod 0 = 0, float as
  np.mod (x mod 0 = NaN); FMOD is C fmod
  (truncated; floats only). MAX/MIN propagate NaN (numpy maximum/minimum). POW is powf (F32 only).
- ROUND is half to even; ERF is the rational fit of framework.ops.elementwise._erf (x clipped to [-4, 4],
  Horner acc = acc*z + c with z = x*x, then (x*P)/Q, coefficients ERF_P/ERF_Q; NaN stays NaN): the numpy
  VM rounds each float32 step (no FMA), a VM may fuse the steps and divide by a refined reciprocal (the C VM
  with AVX-512: 3.3e-7 relative error of erf at most, the numpy VM's 4.2e-7);
  SIGMOID = 1/(1+exp(-x)); RSQRT = 1/sqrt(x); RECIP = 1/x.
- ISNAN/ISINF/compares produce BOOL; dtype is the operand dtype. AND/OR/XOR/NOT are BOOL only.
- CAST (dtype = destination, field B = source compute dtype): destination F16 means an F32 register
  holding the value rounded to float16 (via F32; the register's dtype is F32); float->int truncates toward
  zero, NaN and out of range give the integer minimum (what x86 and numpy give); int->int wraps;
  x->BOOL is x != 0 (NaN -> 1); BOOL->x is 0/1.
- SELECT D = A ? B : C with A BOOL (C register in word 1). *_IMM: B must be 0 (A op imm) or 1 (imm op A).
- Fields and words a form does not use must be 0 (e.g. A and B of CONST, the C word's high bits).
- Reductions (RSUM/RMAX/RMIN/RPROD): FULL source -> ROW result, one value per tile row over its nc elements;
  require TC == COLS. Fixed order: the row is cut into chunks of REDUCE_CHUNK elements; in each chunk 8 lane
  accumulators start at the identity (-0.0/-inf/+inf/1 for floats, 0/MIN/MAX/1 for ints) and element j goes
  into lane j % 8 in increasing j; lane l's chunk results are combined in chunk order (starting from the
  identity, which changes nothing); then ((l0 op l4) op (l2 op l6)) op ((l1 op l5) op (l3 op l7)). Rows of up
  to REDUCE_CHUNK elements are one chunk. The chunks are independent chains, so a GPU spreads one long row over
  many threads; integer ops are associative, so only float results depend on the order.
- BCAST_ROW: ROW source -> FULL result (each row's value repeated over the row).
- The encoder never makes D equal a source register; other programs may (results then unspecified, and the
  VM must still stay in bounds).

VALIDATION (before anything runs; a failure is an error, never a crash). Header: magic, version, n_words
equals the array length, reserved words 0; 1 <= n_regs <= MAX_REGS, n_buffers <= MAX_BUFFERS; dims, offsets
and strides are int64 (two's complement words), dims >= 0, ROWS*COLS < 2**62; TR, TC >= 1,
TR*TC <= MAX_TILE_ELEMS and, when ROWS*COLS > 0, TC <= COLS and (TR == 1 or TC == COLS). Buffer table:
known dtype and role, 0 <= n_elems < 2**62. Code: exactly n_instr instructions fill the code area, the last
(only the last) is END; every opcode known, its dtype and flags allowed for it (OPCODE_DTYPES, FORM_FLAGS),
unused fields 0; register and buffer indices in range; every register source was written earlier in the
same tile body with the dtype and class the instruction expects; a memory instruction's dtype equals its
buffer's; stores only to OUTPUT or SCRATCH buffers; when ROWS*COLS > 0, every view's min and max address
over the whole space lie in [0, n_elems), with |offset| and every (D_k - 1)*|s_k| below 2**60 so no sum
overflows (ROW views need s3 == 0); reductions
need TC == COLS. At run time the caller's buffers: one per slot, C-contiguous, with the table's dtype and
element count.
"""
from __future__ import annotations

import enum
import struct

import numpy as np

MAGIC = int.from_bytes(b"MSGXDVM1", "little")
VERSION = 1
HEADER_WORDS = 16
BUF_WORDS = 2  # per buffer: (dtype | role << 8), n_elems
CODE_START = HEADER_WORDS  # the buffer table starts here; code follows it
MAX_REGS = 1024
MAX_BUFFERS = 256
MAX_TILE_ELEMS = 1 << 20
MAX_DIMS = 4
REDUCE_LANES = 8
REDUCE_CHUNK = 128  # elements per chunk of a reduction (a multiple of 16: one AVX-512 vector feeds two lane sets)

# Header word index -> name. Names a reader uses: H[name] gives the index.
header_fields = ("magic", "version", "n_words", "n_instr", "n_buffers", "n_regs", "tile_rows", "tile_cols",
                 "d0", "d1", "d2", "d3", "reserved12", "reserved13", "reserved14", "reserved15")
H = {name: i for i, name in enumerate(header_fields)}
assert len(header_fields) == HEADER_WORDS


class DType(enum.IntEnum):
    """Buffer and register dtypes; registers use only the compute dtypes (COMPUTE[d] is the one of d)."""

    F32 = 1
    F16 = 2
    I32 = 3
    I64 = 4
    BOOL = 5


NUMPY_DTYPE = {DType.F32: np.dtype(np.float32), DType.F16: np.dtype(np.float16),
               DType.I32: np.dtype(np.int32), DType.I64: np.dtype(np.int64), DType.BOOL: np.dtype(np.bool_)}
DTYPE_OF = {v: k for k, v in NUMPY_DTYPE.items()}
COMPUTE = {DType.F32: DType.F32, DType.F16: DType.F32, DType.I32: DType.I32, DType.I64: DType.I64,
           DType.BOOL: DType.BOOL}
ITEMSIZE = {d: NUMPY_DTYPE[d].itemsize for d in DType}


class Role(enum.IntEnum):
    """What a buffer slot is to the caller."""

    INPUT = 1
    OUTPUT = 2
    SCRATCH = 3


# Flags (bits 12-15 of word 0, given here already shifted down to 0-3).
F_ROW, F_A_ROW, F_B_ROW, F_C_ROW = 1, 2, 4, 8


class Opcode(enum.IntEnum):
    """Opcodes; the groups are number ranges so a handler table can index by opcode."""

    END = 0x00
    # memory: D = register (load) or buffer (store), A = buffer (load) or register (store)
    LOAD = 0x08
    LOAD_VIEW = 0x09
    LOAD_ROW = 0x0A
    STORE = 0x0C
    STORE_VIEW = 0x0D
    STORE_ROW = 0x0E
    CONST = 0x0F
    # unary: D = op(A)
    MOV = 0x10
    EXP = 0x11
    LOG = 0x12
    SQRT = 0x13
    RSQRT = 0x14
    TANH = 0x15
    ERF = 0x16
    SIGMOID = 0x17
    ABS = 0x18
    NEG = 0x19
    RECIP = 0x1A
    FLOOR = 0x1B
    CEIL = 0x1C
    ROUND = 0x1D
    NOT = 0x1E
    ISNAN = 0x1F
    ISINF = 0x20
    BCAST_ROW = 0x21
    CAST = 0x22
    # binary: D = A op B
    ADD = 0x30
    SUB = 0x31
    MUL = 0x32
    DIV = 0x33
    POW = 0x34
    MAX = 0x35
    MIN = 0x36
    AND = 0x37
    OR = 0x38
    XOR = 0x39
    MOD = 0x3A
    FMOD = 0x3B
    # compare: D (BOOL) = A op B
    EQ = 0x40
    NE = 0x41
    LT = 0x42
    LE = 0x43
    GT = 0x44
    GE = 0x45
    # scalar forms: D = A op imm (B == 0) or imm op A (B == 1); opcode = binary/compare opcode + IMM_DELTA
    ADD_IMM = 0x50
    SUB_IMM = 0x51
    MUL_IMM = 0x52
    DIV_IMM = 0x53
    POW_IMM = 0x54
    MAX_IMM = 0x55
    MIN_IMM = 0x56
    AND_IMM = 0x57
    OR_IMM = 0x58
    XOR_IMM = 0x59
    MOD_IMM = 0x5A
    FMOD_IMM = 0x5B
    EQ_IMM = 0x60
    NE_IMM = 0x61
    LT_IMM = 0x62
    LE_IMM = 0x63
    GT_IMM = 0x64
    GE_IMM = 0x65
    SELECT = 0x70
    # reductions over the tile row: D (ROW) = reduce(A (FULL))
    RSUM = 0x78
    RMAX = 0x79
    RMIN = 0x7A
    RPROD = 0x7B


IMM_DELTA = 0x20


class Form(enum.IntEnum):
    """Operand formats; OPCODE_FORMS gives each opcode's."""

    END = 0         # 1 word
    LOAD = 1        # 2 words: D reg, A buffer; w1 = offset
    VIEW = 2        # 6 words: D reg (load) / buffer (store), A buffer / reg; w1 offset, w2..w5 strides s0..s3
    STORE = 3       # 2 words: D buffer, A reg; w1 = offset
    CONST = 4       # 2 words: D reg; w1 = immediate; F_ROW picks the class
    UNARY = 5       # 1 word: D, A
    CAST = 6        # 1 word: D, A, B = source dtype; dtype = destination dtype
    BINARY = 7      # 1 word: D, A, B
    BINARY_IMM = 8  # 2 words: D, A, B = 1 when the immediate is the left operand; w1 = immediate
    SELECT = 9      # 2 words: D, A (cond), B; w1 = C register
    REDUCE = 10     # 1 word: D (ROW), A (FULL)


FORM_WORDS = {Form.END: 1, Form.LOAD: 2, Form.VIEW: 6, Form.STORE: 2, Form.CONST: 2, Form.UNARY: 1,
              Form.CAST: 1, Form.BINARY: 1, Form.BINARY_IMM: 2, Form.SELECT: 2, Form.REDUCE: 1}

O = Opcode
F32, F16, I32, I64, BOOL = DType.F32, DType.F16, DType.I32, DType.I64, DType.BOOL
ALL = frozenset({F32, I32, I64, BOOL})
NUM = frozenset({F32, I32, I64})
FLT = frozenset({F32})
MEM = frozenset(DType)

UNARY_OPS = (O.MOV, O.EXP, O.LOG, O.SQRT, O.RSQRT, O.TANH, O.ERF, O.SIGMOID, O.ABS, O.NEG, O.RECIP, O.FLOOR,
             O.CEIL, O.ROUND, O.NOT, O.ISNAN, O.ISINF, O.BCAST_ROW)
BINARY_OPS = (O.ADD, O.SUB, O.MUL, O.DIV, O.POW, O.MAX, O.MIN, O.AND, O.OR, O.XOR, O.MOD, O.FMOD)
COMPARE_OPS = (O.EQ, O.NE, O.LT, O.LE, O.GT, O.GE)
REDUCE_OPS = (O.RSUM, O.RMAX, O.RMIN, O.RPROD)
BOOL_RESULT = frozenset(COMPARE_OPS) | {O(c + IMM_DELTA) for c in COMPARE_OPS} | {O.ISNAN, O.ISINF}

OPCODE_FORMS: dict[Opcode, Form] = {
    O.END: Form.END, O.LOAD: Form.LOAD, O.LOAD_VIEW: Form.VIEW, O.LOAD_ROW: Form.VIEW, O.STORE: Form.STORE,
    O.STORE_VIEW: Form.VIEW, O.STORE_ROW: Form.VIEW, O.CONST: Form.CONST, O.CAST: Form.CAST,
    O.SELECT: Form.SELECT,
    **{o: Form.UNARY for o in UNARY_OPS}, **{o: Form.BINARY for o in BINARY_OPS + COMPARE_OPS},
    **{O(o + IMM_DELTA): Form.BINARY_IMM for o in BINARY_OPS + COMPARE_OPS},
    **{o: Form.REDUCE for o in REDUCE_OPS},
}

# Allowed instruction dtypes per opcode (for memory ops: the buffer dtype; else the source register dtype).
_BIN_DT = {O.ADD: NUM, O.SUB: NUM, O.MUL: NUM, O.DIV: NUM, O.POW: FLT, O.MAX: NUM, O.MIN: NUM,
           O.AND: {BOOL}, O.OR: {BOOL}, O.XOR: {BOOL}, O.MOD: NUM, O.FMOD: FLT,
           O.EQ: ALL, O.NE: ALL, O.LT: NUM, O.LE: NUM, O.GT: NUM, O.GE: NUM}
OPCODE_DTYPES: dict[Opcode, frozenset] = {
    O.END: frozenset({0}), O.LOAD: MEM, O.LOAD_VIEW: MEM, O.LOAD_ROW: MEM, O.STORE: MEM, O.STORE_VIEW: MEM,
    O.STORE_ROW: MEM, O.CONST: ALL, O.MOV: ALL, O.ABS: NUM, O.NEG: NUM, O.NOT: {BOOL}, O.ISNAN: FLT,
    O.ISINF: FLT, O.BCAST_ROW: ALL, O.CAST: ALL | {F16}, O.SELECT: ALL, O.RSUM: NUM, O.RMAX: NUM, O.RMIN: NUM,
    O.RPROD: NUM,
    **{o: FLT for o in (O.EXP, O.LOG, O.SQRT, O.RSQRT, O.TANH, O.ERF, O.SIGMOID, O.RECIP, O.FLOOR, O.CEIL,
                        O.ROUND)},
    **{o: frozenset(d) for o, d in _BIN_DT.items()},
    **{O(o + IMM_DELTA): frozenset(d) for o, d in _BIN_DT.items()},
}
OPCODE_DTYPES = {o: frozenset(d) for o, d in OPCODE_DTYPES.items()}
assert set(OPCODE_DTYPES) == set(OPCODE_FORMS) == set(Opcode)

# Flags each form may carry (any other bit is invalid). Memory forms carry none: the opcode fixes the class.
FORM_FLAGS = {Form.END: 0, Form.LOAD: 0, Form.VIEW: 0, Form.STORE: 0, Form.CONST: F_ROW,
              Form.UNARY: F_ROW | F_A_ROW, Form.CAST: F_ROW | F_A_ROW, Form.BINARY: F_ROW | F_A_ROW | F_B_ROW,
              Form.BINARY_IMM: F_ROW | F_A_ROW, Form.SELECT: F_ROW | F_A_ROW | F_B_ROW | F_C_ROW,
              Form.REDUCE: F_ROW}

# Reduction identities per compute dtype (float values are given as Python floats; -0.0 for the sum).
REDUCE_IDENTITY = {
    O.RSUM: {F32: -0.0, I32: 0, I64: 0}, O.RPROD: {F32: 1.0, I32: 1, I64: 1},
    O.RMAX: {F32: float("-inf"), I32: -2**31, I64: -2**63}, O.RMIN: {F32: float("inf"), I32: 2**31 - 1,
                                                                      I64: 2**63 - 1},
}

# erf rational fit (same coefficients as framework.ops.elementwise._erf): erf(x) = x*P(x^2)/Q(x^2) on [-4, 4].
ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
         -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
         -1.42647390514189e-02)


def word0(op: int, dtype: int = 0, flags: int = 0, d: int = 0, a: int = 0, b: int = 0) -> int:
    """Pack the first word of an instruction."""
    return (op & 0xFF) | (dtype & 0xF) << 8 | (flags & 0xF) << 12 | (d & 0xFFFF) << 16 | (a & 0xFFFF) << 32 \
        | (b & 0xFFFF) << 48


def s64(w: int) -> int:
    """A 64-bit word as a signed (two's complement) integer: offsets, strides and dims."""
    return w - (1 << 64) if w >= 1 << 63 else w


def unpack0(w: int) -> tuple[int, int, int, int, int, int]:
    """(opcode, dtype, flags, D, A, B) of an instruction's first word."""
    w = int(w)
    return (w & 0xFF, (w >> 8) & 0xF, (w >> 12) & 0xF, (w >> 16) & 0xFFFF, (w >> 32) & 0xFFFF,
            (w >> 48) & 0xFFFF)


def imm_bits(value, dtype: DType) -> int:
    """The immediate word for a Python/numpy scalar in a compute dtype."""
    if dtype == F32:
        try:
            return struct.unpack("<I", struct.pack("<f", float(value)))[0]
        except OverflowError:  # beyond float32's range: numpy rounds it to +-inf
            with np.errstate(over="ignore"):
                return int(np.array(value, np.float64).astype(np.float32).view(np.uint32))
    if dtype == I32:
        return int(np.array(value, np.int64).astype(np.int32).view(np.uint32))
    if dtype == I64:
        return int(np.array(value, np.int64).view(np.uint64))
    return int(bool(value))


def imm_value(word: int, dtype: DType):
    """Decode an immediate word (the inverse of imm_bits) to a numpy scalar of the compute dtype."""
    word = int(word)
    if dtype == F32:
        return np.array(word & 0xFFFFFFFF, np.uint32).view(np.float32)[()]
    if dtype == I32:
        return np.array(word & 0xFFFFFFFF, np.uint32).view(np.int32)[()]
    if dtype == I64:
        return np.array(word, np.uint64).view(np.int64)[()]
    return np.bool_(word & 1)


def c_header() -> str:
    """The C header (enums and #defines) generated from these tables, so Python and C cannot drift."""
    out = ["/* Generated by dvm_runtime.isa.c_header(); do not edit. */", "#ifndef DVM_ISA_H",
           "#define DVM_ISA_H", "#include <stdint.h>", "",
           f"#define DVM_MAGIC 0x{MAGIC:016X}ULL", f"#define DVM_VERSION {VERSION}",
           f"#define DVM_HEADER_WORDS {HEADER_WORDS}", f"#define DVM_BUF_WORDS {BUF_WORDS}",
           f"#define DVM_CODE_START {CODE_START}", f"#define DVM_MAX_REGS {MAX_REGS}",
           f"#define DVM_MAX_BUFFERS {MAX_BUFFERS}", f"#define DVM_MAX_TILE_ELEMS {MAX_TILE_ELEMS}",
           f"#define DVM_MAX_DIMS {MAX_DIMS}", f"#define DVM_REDUCE_LANES {REDUCE_LANES}",
           f"#define DVM_REDUCE_CHUNK {REDUCE_CHUNK}",
           f"#define DVM_IMM_DELTA 0x{IMM_DELTA:02X}", "#define DVM_REG_BYTES_PER_ELEM 8", ""]
    out += [f"#define DVM_H_{n.upper()} {i}" for i, n in enumerate(header_fields)] + [""]
    out += [f"#define DVM_{n} {v}" for n, v in
            (("F_ROW", F_ROW), ("F_A_ROW", F_A_ROW), ("F_B_ROW", F_B_ROW), ("F_C_ROW", F_C_ROW))] + [""]
    out += _enum("dvm_dtype", "DVM_DT_", DType) + _enum("dvm_role", "DVM_ROLE_", Role)
    out += _enum("dvm_opcode", "DVM_OP_", Opcode) + _enum("dvm_form", "DVM_FORM_", Form)
    out.append(f"#define DVM_N_OPCODES {max(Opcode) + 1}")
    out.append("/* words per opcode (0 = unknown opcode) */")
    known = [Opcode(i) if i in Opcode._value2member_map_ else None for i in range(max(Opcode) + 1)]
    words = [FORM_WORDS[OPCODE_FORMS[o]] if o is not None else 0 for o in known]
    forms = [int(OPCODE_FORMS[o]) if o is not None else -1 for o in known]
    masks = [_dtype_mask(o) if o is not None else 0 for o in known]
    out.append(f"static const uint8_t DVM_OPCODE_WORDS[DVM_N_OPCODES] = {{{', '.join(map(str, words))}}};")
    out.append(f"static const int8_t DVM_OPCODE_FORM[DVM_N_OPCODES] = {{{', '.join(map(str, forms))}}};")
    out.append("/* bit d set: dtype code d allowed */")
    out.append(f"static const uint32_t DVM_OPCODE_DTYPES[DVM_N_OPCODES] = {{{', '.join(map(str, masks))}}};")
    fflags = [FORM_FLAGS[Form(i)] for i in range(len(Form))]
    out.append(f"static const uint8_t DVM_FORM_FLAGS[{len(Form)}] = {{{', '.join(map(str, fflags))}}};")
    isz = [ITEMSIZE[DType(i)] if i in DType._value2member_map_ else 0 for i in range(max(DType) + 1)]
    comp = [int(COMPUTE[DType(i)]) if i in DType._value2member_map_ else 0 for i in range(max(DType) + 1)]
    out.append(f"static const uint8_t DVM_DTYPE_SIZE[{len(isz)}] = {{{', '.join(map(str, isz))}}};")
    out.append(f"static const uint8_t DVM_DTYPE_COMPUTE[{len(comp)}] = {{{', '.join(map(str, comp))}}};")
    out.append(f"static const float DVM_ERF_P[{len(ERF_P)}] = {{{', '.join(f'{c!r}f' for c in ERF_P)}}};")
    out.append(f"static const float DVM_ERF_Q[{len(ERF_Q)}] = {{{', '.join(f'{c!r}f' for c in ERF_Q)}}};")
    out += ["", "#endif /* DVM_ISA_H */", ""]
    return "\n".join(out)


def _enum(name: str, prefix: str, cls) -> list[str]:
    body = ",\n".join(f"    {prefix}{m.name} = {int(m)}" for m in cls)
    return [f"enum {name} {{\n{body}\n}};", ""]


def _dtype_mask(op: Opcode) -> int:
    return sum(1 << int(d) for d in OPCODE_DTYPES[op])


ISA_FROZEN = True
