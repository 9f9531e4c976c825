"""Which programs the CUDA chain interpreter runs (cuda_chain.cu), and their step tables.

A program qualifies when every instruction is an elementwise float32 one: contiguous LOAD/STORE of float32
buffers, LOAD_VIEW (broadcasts, strided reads), CONST, and the float unary and binary arithmetic (register or
immediate operand), no ROW class, at most CHAIN_REGS registers. Such a program computes each element of its
space from the same element of its inputs, so one thread can run all of it on its own elements: the tiles
the tiled kernel needs change nothing in the result. Reductions, selects, casts, comparisons, other dtypes
and row-class forms stay on the tiled kernel.

Only long programs go to the chain kernel (MIN_STEPS): the tiled kernel's passes cost per instruction, the
chain kernel's steps per element. Measured on one H100 (copy 2994 GB/s), ms chain / tiled at 8192x8192: the
Adam step (29 steps) 2.37 / 3.39 and at 8192x1024 0.304 / 0.445; the 6-op chain (10 steps) 0.95 / 0.95,
bias+GELU (9) 0.87 / 0.63, SiLU-gated product (6) 0.61 / 0.48. CHAIN_W 2 was slower on all eight (156
registers a thread against 86: fewer resident blocks). Either way the chain kernel issues instructions, not
bytes: per step and float4 its table read and three warp-uniform switches cost more than the arithmetic.
"""
from __future__ import annotations

import numpy as np

from .. import isa
from ..isa import Form, Opcode as O

CHAIN_REGS = 8           # cuda_chain.cu's CHAIN_REGS
CHAIN_MAX_STEPS = 256    # cuda_chain.cu's CHAIN_MAX_STEPS
CHAIN_W = 1              # cuda_chain.cu's CHAIN_W: float4s a thread runs each step on
CHAIN_NT = 128           # cuda_chain.cu's CHAIN_NT: threads per block
MIN_STEPS = 16           # shorter programs stay on the tiled kernel (above)
STEP_WORDS = 7           # sizeof(CStep) / 8
K_LOAD, K_SCALAR, K_VIEW, K_STORE, K_CONST, K_UNARY, K_BINARY, K_BINARY_IMM = range(8)
UNARY = frozenset({O.MOV, O.EXP, O.LOG, O.SQRT, O.RSQRT, O.TANH, O.ERF, O.SIGMOID, O.ABS, O.NEG, O.RECIP,
                   O.FLOOR, O.CEIL, O.ROUND})
BINARY = frozenset({O.ADD, O.SUB, O.MUL, O.DIV, O.POW, O.MAX, O.MIN, O.MOD, O.FMOD})
_F32 = int(isa.DType.F32)


class Chain:
    """A program's step table (uint64 words, STEP_WORDS per step) and the space it runs over."""

    __slots__ = ("words", "n_steps", "total", "cols", "d1", "d2", "views")

    def __init__(self, words: np.ndarray, n_steps: int, dims: tuple, views: bool):
        self.words, self.n_steps, self.views = words, n_steps, views
        self.total = dims[0] * dims[1] * dims[2] * dims[3]
        self.cols, self.d1, self.d2 = max(dims[3], 1), max(dims[1], 1), max(dims[2], 1)


def _step(kind, op=0, d=0, a=0, b=0, buf=0, rev=0, imm=0, off=0, strides=(0, 0, 0, 0)) -> list[int]:
    head = kind | op << 8 | d << 16 | a << 24 | b << 32 | buf << 40 | rev << 48
    return [head, imm & 0xFFFFFFFF, off & 0xFFFFFFFFFFFFFFFF, *(s & 0xFFFFFFFFFFFFFFFF for s in strides)]


def steps(code: np.ndarray, min_steps: int | None = None) -> Chain | None:
    """The chain form of a validated program, or None when it does not qualify or has fewer than
    `min_steps` steps (default MIN_STEPS)."""
    w = code.tolist()
    h = {name: w[i] for i, name in enumerate(isa.header_fields)}
    nb, n_regs = h["n_buffers"], h["n_regs"]
    least = MIN_STEPS if min_steps is None else min_steps
    if n_regs > CHAIN_REGS or not least <= h["n_instr"] - 1 <= CHAIN_MAX_STEPS:
        return None
    if any(w[isa.CODE_START + isa.BUF_WORDS * i] & 0xFF != _F32 for i in range(nb)):
        return None
    out, views, pc = [], False, isa.CODE_START + isa.BUF_WORDS * nb
    while True:
        op, dt, flags, d, a, b = isa.unpack0(w[pc])
        code_op = O(op)
        form = isa.OPCODE_FORMS[code_op]
        if form == Form.END:
            break
        if flags or dt != _F32:
            return None
        if code_op == O.LOAD:
            out += _step(K_LOAD, d=d, buf=a, off=isa.s64(w[pc + 1]))
        elif code_op == O.STORE:
            out += _step(K_STORE, a=a, buf=d, off=isa.s64(w[pc + 1]))
        elif code_op == O.LOAD_VIEW:
            strides = tuple(isa.s64(x) for x in w[pc + 2:pc + 6])
            kind = K_SCALAR if not any(strides) else K_VIEW
            views |= kind == K_VIEW
            out += _step(kind, d=d, buf=a, off=isa.s64(w[pc + 1]), strides=strides)
        elif form == Form.CONST:
            out += _step(K_CONST, d=d, imm=w[pc + 1])
        elif form == Form.UNARY and code_op in UNARY:
            out += _step(K_UNARY, op=op, d=d, a=a)
        elif form == Form.BINARY and code_op in BINARY:
            out += _step(K_BINARY, op=op, d=d, a=a, b=b)
        elif form == Form.BINARY_IMM and O(op - isa.IMM_DELTA) in BINARY:
            out += _step(K_BINARY_IMM, op=op - isa.IMM_DELTA, d=d, a=a, rev=b, imm=w[pc + 1])
        else:
            return None
        pc += isa.FORM_WORDS[form]
    dims = (h["d0"], h["d1"], h["d2"], h["d3"])
    return Chain(np.array(out, np.uint64), len(out) // STEP_WORDS, dims, views)
