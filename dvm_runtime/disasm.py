"""Disassembler: DVM bytecode -> text (a header line, the buffer table, one line per instruction)."""
from __future__ import annotations

import numpy as np

from . import isa
from .isa import DType, Form, Opcode as O

_ROLE = {isa.Role.INPUT: "in", isa.Role.OUTPUT: "out", isa.Role.SCRATCH: "scratch"}



def disasm(program) -> str:
    """Text of a program (a Program or its uint64 code); validates first, so bad bytecode raises DvmError."""
    from .pyvm import validate
    code = getattr(program, "code", program)
    prog = validate(np.asarray(code) if not isinstance(code, np.ndarray) else code)
    h = {n: int(code[i]) for i, n in enumerate(isa.header_fields)}
    D = prog["D"]
    lines = [f"dvm v{h['version']} space [{D[0]},{D[1]},{D[2]},{D[3]}] tile {h['tile_rows']}x{h['tile_cols']}"
             f" regs {h['n_regs']} instrs {h['n_instr']}"]
    for i, (dt, role, n) in enumerate(prog["bufs"]):
        lines.append(f"  b{i}: {_ROLE[role]} {dt.name.lower()}[{n}]")
    for ins in prog["instrs"]:
        lines.append("  " + _one(ins))
    return "\n".join(lines)


def _reg(r: int, fl: int, bit: int) -> str:
    return f"r{r}" + (".row" if fl & bit else "")


def _one(ins) -> str:
    op, dt, fl, d, a, b = ins[:6]
    form = isa.OPCODE_FORMS[op]
    name = op.name.lower()
    ty = DType(dt).name.lower() if dt else ""
    if form == Form.END:
        return "end"
    if form in (Form.LOAD, Form.STORE, Form.VIEW):
        off, st = ins[6], ins[7]
        load = op in (O.LOAD, O.LOAD_VIEW, O.LOAD_ROW)
        row = op in (O.LOAD_ROW, O.STORE_ROW)
        reg, buf = (d, a) if load else (a, d)
        mem = f"b{buf}[{off}" + (f"; {','.join(map(str, st))}]" if form == Form.VIEW else "]")
        r = f"r{reg}" + (".row" if row else "")
        return f"{name}.{ty} {r}, {mem}" if load else f"{name}.{ty} {mem}, {r}"
    dst = _reg(d, fl, isa.F_ROW)
    if form == Form.CONST:
        return f"{name}.{ty} {dst}, #{ins[6].item()!r}"
    if form == Form.CAST:
        return f"{name}.{ty} {dst}, {_reg(a, fl, isa.F_A_ROW)} ({DType(b).name.lower()})"
    if form in (Form.UNARY, Form.REDUCE):
        return f"{name}.{ty} {dst}, {_reg(a, fl, isa.F_A_ROW)}"
    if form == Form.BINARY:
        return f"{name}.{ty} {dst}, {_reg(a, fl, isa.F_A_ROW)}, {_reg(b, fl, isa.F_B_ROW)}"
    if form == Form.BINARY_IMM:
        x, imm = _reg(a, fl, isa.F_A_ROW), repr(ins[6].item() if hasattr(ins[6], "item") else ins[6])
        return f"{name}.{ty} {dst}, " + (f"#{imm}, {x}" if b else f"{x}, #{imm}")
    return (f"{name}.{ty} {dst}, {_reg(a, fl, isa.F_A_ROW)}, {_reg(b, fl, isa.F_B_ROW)}, "
            f"{_reg(ins[6], fl, isa.F_C_ROW)}")
