"""Which programs the CUDA chain interpreter runs (cuda_chain.cu), and their step tables.

A program qualifies when every instruction is an elementwise float32 one: contiguous LOAD/STORE of float32
buffers, LOAD_VIEW (broadcasts, strided reads), CONST, and the float unary and binary arithmetic (register or
immediate operand), no ROW class. Such a program computes each element of its space from the same element of
its inputs, so one thread can run all of it on its own elements: the tiles the tiled kernel needs change
nothing in the result. Reductions, selects, casts, comparisons, other dtypes and row-class forms stay on the
tiled kernel.

The table is the program rewritten for a thread that runs it on CHAIN_W float4s at a time, in three parts:
- uniform steps: values that are one number for the whole space (0-d loads, constants, arithmetic on those:
  Adam's 1 - beta1), computed once per block into `uni` slots;
- loads: every tensor load, hoisted ahead of all arithmetic so that a thread's loads are in flight
  together (CHAIN_BATCH at a time; a load's value goes to a slot of its own until its last use);
- main steps: the arithmetic and the stores, on slots (shared memory, each thread its own float4s; indexed
  by number, so no switch picks a register) or uniform operands.
Values get slots by liveness (straight-line code: a linear scan), so the table needs as many slots as
values are live at once, not one per register write. Hoisting is sound because the program reads no buffer it
writes (checked; such programs stay tiled).

Every qualifying program runs here: on one H100 (copy 2999 GB/s), 8192x8192, ms (% of the copy bandwidth)
with CHAIN_W 2 / the former form of this kernel (registers as named variables picked by switches, loads in
program order) / the tiled kernel: Adam 0.998 (63%) / 2.36 / 3.39, the 6-op chain 0.481 (74%) / 0.942 /
0.948, the SiLU-gated product 0.363 (74%) / 0.602 / 0.477, bias+GELU 0.508 (35%) / 0.865 / 0.629; at
1024x1024 all three within 10% (host-bound). CHAIN_W 1 and 4 were 5-15% slower than 2 on every large case.
"""
from __future__ import annotations

import numpy as np

from .. import isa
from ..isa import Form, Opcode as O

CHAIN_MAX_STEPS = 256    # cuda_chain.cu's CHAIN_MAX_STEPS: steps of all three parts
CHAIN_MAX_SLOTS = 24     # cuda_chain.cu's CHAIN_MAX_SLOTS: float4 slots a thread's values live in
CHAIN_MAX_UNI = 64       # cuda_chain.cu's CHAIN_MAX_UNI: uniform values
CHAIN_W = 2              # cuda_chain.cu's CHAIN_W: float4s a thread runs each step on
CHAIN_NT = 128           # cuda_chain.cu's CHAIN_NT: threads per block
STEP_WORDS = 7           # sizeof(CStep) / 8
K_LOAD, K_SCALAR, K_VIEW, K_STORE, K_CONST, K_UNARY, K_BINARY, K_BINARY_IMM = range(8)
REV, A_UNI, B_UNI = 1, 2, 4   # a step's `flags`: immediate on the left; operand a / b is a uniform value
UNARY = frozenset({O.MOV, O.EXP, O.LOG, O.SQRT, O.RSQRT, O.TANH, O.ERF, O.SIGMOID, O.ABS, O.NEG, O.RECIP,
                   O.FLOOR, O.CEIL, O.ROUND})
BINARY = frozenset({O.ADD, O.SUB, O.MUL, O.DIV, O.POW, O.MAX, O.MIN, O.MOD, O.FMOD})
_F32 = int(isa.DType.F32)


class Chain:
    """A program's step table (uint64 words, STEP_WORDS per step: n_uni uniform steps, n_loads loads, then
    the main steps), the slots and uniform values it needs, and the space it runs over."""

    __slots__ = ("words", "n_uni", "n_loads", "n_main", "n_slots", "total", "cols", "d1", "d2", "views")

    def __init__(self, parts: tuple, n_slots: int, dims: tuple, views: bool):
        uni, loads, main = parts
        self.words = np.array(uni + loads + main, np.uint64)
        self.n_uni, self.n_loads, self.n_main = (len(p) // STEP_WORDS for p in parts)
        self.n_slots, self.views = n_slots, views
        self.total = dims[0] * dims[1] * dims[2] * dims[3]
        self.cols, self.d1, self.d2 = max(dims[3], 1), max(dims[1], 1), max(dims[2], 1)

    @property
    def n_steps(self) -> int:
        return self.n_uni + self.n_loads + self.n_main


def _step(kind, op=0, d=0, a=0, b=0, buf=0, flags=0, imm=0, off=0, strides=(0, 0, 0, 0)) -> list[int]:
    head = kind | op << 8 | d << 16 | a << 24 | b << 32 | buf << 40 | flags << 48
    return [head, imm & 0xFFFFFFFF, off & 0xFFFFFFFFFFFFFFFF, *(s & 0xFFFFFFFFFFFFFFFF for s in strides)]


def f32_instructions(code: np.ndarray) -> tuple | None:
    """(instructions as (opcode, form, flags, d, a, b, extra words), header fields) of a program whose
    buffers and instructions are all float32, else None."""
    w = code.tolist()
    h = {name: w[i] for i, name in enumerate(isa.header_fields)}
    nb = h["n_buffers"]
    if any(w[isa.CODE_START + isa.BUF_WORDS * i] & 0xFF != _F32 for i in range(nb)):
        return None
    out, pc = [], isa.CODE_START + isa.BUF_WORDS * nb
    while True:
        op, dt, flags, d, a, b = isa.unpack0(w[pc])
        form = isa.OPCODE_FORMS[O(op)]
        if form == Form.END:
            return out, h
        if dt != _F32:
            return None
        out.append((O(op), form, flags, d, a, b, w[pc + 1:pc + isa.FORM_WORDS[form]]))
        pc += isa.FORM_WORDS[form]


def _decode(code: np.ndarray) -> tuple | None:
    """(instructions as (kind, op, d, a, b, buf, rev, imm, off, strides), header) or None: not a chain."""
    decoded = f32_instructions(code)
    if decoded is None:
        return None
    ins, h = decoded
    out = []
    for op, form, flags, d, a, b, extra in ins:
        if flags:
            return None
        if op == O.LOAD:
            out.append((K_LOAD, 0, d, 0, 0, a, 0, 0, isa.s64(extra[0]), (0, 0, 0, 0)))
        elif op == O.STORE:
            out.append((K_STORE, 0, 0, a, 0, d, 0, 0, isa.s64(extra[0]), (0, 0, 0, 0)))
        elif op == O.LOAD_VIEW:
            strides = tuple(isa.s64(x) for x in extra[1:5])
            kind = K_VIEW if any(strides) else K_SCALAR
            out.append((kind, 0, d, 0, 0, a, 0, 0, isa.s64(extra[0]), strides))
        elif form == Form.CONST:
            out.append((K_CONST, 0, d, 0, 0, 0, 0, extra[0], 0, (0, 0, 0, 0)))
        elif form == Form.UNARY and op in UNARY:
            out.append((K_UNARY, int(op), d, a, 0, 0, 0, 0, 0, (0, 0, 0, 0)))
        elif form == Form.BINARY and op in BINARY:
            out.append((K_BINARY, int(op), d, a, b, 0, 0, 0, 0, (0, 0, 0, 0)))
        elif form == Form.BINARY_IMM and O(op - isa.IMM_DELTA) in BINARY:
            out.append((K_BINARY_IMM, op - isa.IMM_DELTA, d, a, 0, 0, b, extra[0], 0, (0, 0, 0, 0)))
        else:
            return None
    return out, h


def steps(code: np.ndarray) -> Chain | None:
    """The chain form of a validated program, or None when it does not qualify or needs more slots, uniform
    values or steps than the kernel has."""
    decoded = _decode(code)
    if decoded is None:
        return None
    ins, h = decoded
    if len(ins) > CHAIN_MAX_STEPS:
        return None
    read = {i[5] for i in ins if i[0] in (K_LOAD, K_VIEW, K_SCALAR)}
    if any(i[0] == K_STORE and i[5] in read for i in ins):
        return None   # a buffer both read and written: loads cannot move ahead of stores

    # values: each register write makes one; `cur` maps a register to the value it holds
    uniform: list[bool] = []       # per value
    last_use: list[int] = []       # per value: index of the last instruction reading it
    cur: dict[int, int] = {}
    zero = None                    # the value of a register read before any write (the VM's zeros)
    reads: list[tuple] = []        # per instruction: the values of its operands a, b
    defs: list[int] = []           # per instruction: the value it writes (-1: a store)

    def new(is_uniform: bool) -> int:
        uniform.append(is_uniform)
        last_use.append(-1)
        return len(uniform) - 1

    for k, (kind, _op, d, a, b, *_rest) in enumerate(ins):
        operands = {K_STORE: (a,), K_UNARY: (a,), K_BINARY: (a, b), K_BINARY_IMM: (a,)}.get(kind, ())
        vals = []
        for r in operands:
            if r not in cur:
                if zero is None:
                    zero = new(True)
                cur[r] = zero
            vals.append(cur[r])
            last_use[cur[r]] = k
        reads.append(tuple(vals))
        if kind == K_STORE:
            defs.append(-1)
            continue
        u = kind in (K_SCALAR, K_CONST) or (kind not in (K_LOAD, K_VIEW) and all(uniform[v] for v in vals))
        cur[d] = new(u)
        defs.append(cur[d])

    uni_index: dict[int, int] = {}
    if zero is not None:
        uni_index[zero] = 0
    slot: dict[int, int] = {}
    free: list[int] = []
    n_slots = 0

    def take(v: int) -> int:
        nonlocal n_slots
        if free:
            s = free.pop()
        else:
            s, n_slots = n_slots, n_slots + 1
        slot[v] = s
        return s

    def operand(v: int) -> tuple[int, bool]:
        return (uni_index[v], True) if uniform[v] else (slot[v], False)

    uni_part: list[int] = []
    if zero is not None:
        uni_part += _step(K_CONST, d=0)
    load_part: list[int] = []
    for k, (kind, _op, _d, _a, _b, buf, _rev, imm, off, strides) in enumerate(ins):
        if kind in (K_LOAD, K_VIEW):   # hoisted: live from the start of the element group
            load_part += _step(kind, d=take(defs[k]), buf=buf, off=off, strides=strides)
    for k, (kind, *_rest) in enumerate(ins):
        if kind in (K_LOAD, K_VIEW) and last_use[defs[k]] == -1:   # never read: free after the loads
            free.append(slot.pop(defs[k]))
    main_part: list[int] = []
    for k, (kind, op, _d, _a, _b, buf, rev, imm, off, strides) in enumerate(ins):
        ops = [operand(v) for v in reads[k]]
        for v in reads[k]:   # operands are read before the result is written: their slots can be its
            if last_use[v] == k and v in slot:   # (once: a value read twice is gone from `slot` after)
                free.append(slot.pop(v))
        if kind in (K_LOAD, K_VIEW):
            continue
        if kind == K_STORE:
            (a, ua), = ops
            main_part += _step(K_STORE, a=a, buf=buf, off=off, flags=A_UNI if ua else 0)
            continue
        v = defs[k]
        if uniform[v]:
            uni_index[v] = len(uni_index)
            d = uni_index[v]
            if kind == K_SCALAR:
                uni_part += _step(K_SCALAR, d=d, buf=buf, off=off)
            elif kind == K_CONST:
                uni_part += _step(K_CONST, d=d, imm=imm)
            else:   # every operand uniform
                a, b = ops[0][0], ops[1][0] if len(ops) > 1 else 0
                uni_part += _step(kind, op=op, d=d, a=a, b=b, imm=imm, flags=REV if rev else 0)
            continue
        (a, ua), (b, ub) = ops[0], ops[1] if len(ops) > 1 else (0, False)
        flags = (REV if rev else 0) | (A_UNI if ua else 0) | (B_UNI if ub else 0)
        main_part += _step(kind, op=op, d=take(v), a=a, b=b, imm=imm, flags=flags)
        if last_use[v] == -1:   # never read: its slot is free again at once
            free.append(slot.pop(v))
    if n_slots > CHAIN_MAX_SLOTS or len(uni_index) > CHAIN_MAX_UNI:
        return None
    dims = (h["d0"], h["d1"], h["d2"], h["d3"])
    views = any(i[0] == K_VIEW for i in ins)
    return Chain((uni_part, load_part, main_part), max(n_slots, 1), dims, views)
