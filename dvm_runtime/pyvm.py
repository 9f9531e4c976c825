"""Pure-numpy DVM: validates a program exactly as isa.py specifies, then runs it. The fallback and the oracle.

Results never depend on the tiling (each element and each row reduction is computed the same way in any
tile), so after validating the tile parameters this interpreter runs the body once over the whole space.
"""
from __future__ import annotations

import numpy as np

from framework.errors import KernelError

from . import isa
from .isa import DType, Form, Opcode as O

U64 = 1 << 64
LIMIT = 1 << 60
NP = {d: isa.NUMPY_DTYPE[d] for d in DType}


class DvmError(KernelError):
    """A DVM program or its buffers are invalid."""



def _check(cond, msg):
    if not cond:
        raise DvmError(f"bad DVM program: {msg}")


def validate(code, buffers=None) -> dict:
    """Check a program (and, if given, its buffers) against the ISA rules; return the decoded program."""
    _check(isinstance(code, np.ndarray) and code.dtype == np.uint64 and code.ndim == 1,
           "not a 1-D uint64 array")
    _check(len(code) >= isa.HEADER_WORDS, "shorter than the header")
    w = [int(x) for x in code]
    h = {n: w[i] for i, n in enumerate(isa.header_fields)}
    _check(h["magic"] == isa.MAGIC and h["version"] == isa.VERSION, "magic/version")
    _check(h["n_words"] == len(w), "n_words differs from the array length")
    _check(all(h[f"reserved{i}"] == 0 for i in range(12, 16)), "reserved header words must be 0")
    nb, nr, tr, tc = h["n_buffers"], h["n_regs"], h["tile_rows"], h["tile_cols"]
    _check(1 <= nr <= isa.MAX_REGS and nb <= isa.MAX_BUFFERS, "register/buffer counts")
    D = [isa.s64(h[f"d{i}"]) for i in range(4)]
    _check(all(0 <= d < LIMIT for d in D), "dims")
    rows, cols = D[0] * D[1] * D[2], D[3]
    _check(rows * cols < 1 << 62, "space too large")
    _check(1 <= tr and 1 <= tc and tr * tc <= isa.MAX_TILE_ELEMS, "tile size")
    empty = rows * cols == 0
    _check(empty or (tc <= cols and (tr == 1 or tc == cols)), "tile shape")
    code_at = isa.CODE_START + isa.BUF_WORDS * nb
    _check(code_at <= len(w), "buffer table past the end")
    bufs = []
    for i in range(nb):
        t, n = w[isa.CODE_START + 2 * i], w[isa.CODE_START + 2 * i + 1]
        _check(t & 0xFF in DType._value2member_map_ and t >> 8 in isa.Role._value2member_map_,
               f"buffer {i} kind")
        _check(n < 1 << 62, f"buffer {i} size")
        bufs.append((DType(t & 0xFF), isa.Role(t >> 8), n))
    regs: dict[int, tuple] = {}
    instrs, pc = [], code_at
    while pc < len(w):
        op, dt, fl, d, a, b = isa.unpack0(w[pc])
        _check(op in O._value2member_map_, f"unknown opcode {op} at word {pc}")
        op = O(op)
        form = isa.OPCODE_FORMS[op]
        nw = isa.FORM_WORDS[form]
        _check(pc + nw <= len(w), f"{op.name} runs past the end")
        ext = w[pc + 1:pc + nw]
        _check(dt in isa.OPCODE_DTYPES[op], f"{op.name} with dtype {dt}")
        _check(fl & ~isa.FORM_FLAGS[form] == 0, f"{op.name} with flags {fl}")
        instrs.append(_validate_one(op, form, DType(dt) if dt else None, fl, d, a, b, ext, regs, nr, bufs,
                                    D, empty, tc == cols))
        pc += nw
        if op == O.END:
            break
    _check(instrs and instrs[-1][0] == O.END and pc == len(w), "code must end with END exactly at the end")
    _check(len(instrs) == h["n_instr"], "n_instr differs from the instruction count")
    if buffers is not None:
        _check_buffers(buffers, bufs)
    return {"D": D, "rows": rows, "cols": cols, "bufs": bufs, "instrs": instrs}


def _validate_one(op, form, dt, fl, d, a, b, ext, regs, nr, bufs, D, empty, whole_rows):
    name = op.name
    row = bool(fl & isa.F_ROW)

    def src(r, want_dt, want_row):
        _check(r < nr and r in regs, f"{name} reads undefined register {r}")
        _check(regs[r] == (want_dt, want_row),
               f"{name} register {r} is {regs[r]}, wants {(want_dt, want_row)}")

    def dst(r, dtype, is_row):
        _check(r < nr, f"{name} writes register {r} >= n_regs")
        regs[r] = (dtype, is_row)

    if form == Form.END:
        _check(d == a == b == 0, "END fields")
    elif form in (Form.LOAD, Form.STORE, Form.VIEW):
        load = op in (O.LOAD, O.LOAD_VIEW, O.LOAD_ROW)
        buf, reg = (a, d) if load else (d, a)
        _check(buf < len(bufs), f"{name} buffer {buf} out of range")
        _check(bufs[buf][0] == dt, f"{name} dtype differs from buffer {buf}'s")
        _check(b == 0, f"{name} field B")
        is_row = op in (O.LOAD_ROW, O.STORE_ROW)
        off = isa.s64(ext[0])
        if form == Form.VIEW:
            st = [isa.s64(x) for x in ext[1:]]
        else:
            st = [D[1] * D[2] * D[3], D[2] * D[3], D[3], 1]
        _check(not is_row or st[3] == 0, f"{name} needs s3 == 0")
        if not empty:
            _check(abs(off) < LIMIT and all((n - 1) * abs(s) < LIMIT for n, s in zip(D, st)),
                   f"{name} view size")
            lo = off + sum((n - 1) * s for n, s in zip(D, st) if s < 0)
            hi = off + sum((n - 1) * s for n, s in zip(D, st) if s > 0)
            _check(0 <= lo and hi < bufs[buf][2], f"{name} view [{lo}, {hi}] outside buffer {buf}")
        cdt = isa.COMPUTE[dt]
        if load:
            dst(reg, cdt, is_row)
        else:
            _check(bufs[buf][1] != isa.Role.INPUT, f"{name} to input buffer {buf}")
            src(reg, cdt, is_row)
        return (op, dt, fl, d, a, b, off, st)
    elif form == Form.CONST:
        _check(a == b == 0, "CONST fields")
        dst(d, dt, row)
        return (op, dt, fl, d, a, b, isa.imm_value(ext[0], dt))
    elif form in (Form.UNARY, Form.CAST):
        a_row = bool(fl & isa.F_A_ROW)
        if op == O.BCAST_ROW:
            _check(fl == isa.F_A_ROW, "BCAST_ROW flags")
        else:
            _check(a_row == row, f"{name} class flags")
        if form == Form.CAST:
            _check(b in isa.COMPUTE and isa.COMPUTE[DType(b)] == b, "CAST source dtype")
            src(a, DType(b), a_row)
            dst(d, isa.COMPUTE[dt], row)
        else:
            _check(b == 0, f"{name} field B")
            src(a, dt, a_row)
            dst(d, DType.BOOL if op in isa.BOOL_RESULT else dt, row)
    elif form in (Form.BINARY, Form.BINARY_IMM, Form.SELECT):
        n_src = {Form.BINARY: 2, Form.BINARY_IMM: 1, Form.SELECT: 3}[form]
        if form == Form.BINARY_IMM:
            _check(b in (0, 1), f"{name} field B")
        if form == Form.SELECT:
            _check(ext[0] >> 16 == 0, "SELECT C word")
        regs_in = [a, b, ext[0] & 0xFFFF if form == Form.SELECT else 0][:n_src]
        for k, r in enumerate(regs_in):
            r_row = bool(fl & (isa.F_A_ROW << k))
            _check(r_row or not row, f"{name}: a ROW result needs ROW sources")
            src(r, DType.BOOL if form == Form.SELECT and k == 0 else dt, r_row)
        dst(d, DType.BOOL if op in isa.BOOL_RESULT else dt, row)
        if form == Form.BINARY_IMM:
            return (op, dt, fl, d, a, b, isa.imm_value(ext[0], dt))
        if form == Form.SELECT:
            return (op, dt, fl, d, a, b, ext[0] & 0xFFFF)
    elif form == Form.REDUCE:
        _check(fl == isa.F_ROW and b == 0, f"{name} flags/fields")
        _check(whole_rows, f"{name} needs tile_cols == cols")
        src(a, dt, False)
        dst(d, dt, True)
    return (op, dt, fl, d, a, b)


def _check_buffers(buffers, bufs):
    _check(len(buffers) == len(bufs), f"{len(buffers)} buffers given, program has {len(bufs)}")
    for i, (arr, (dt, _, n)) in enumerate(zip(buffers, bufs)):
        _check(isinstance(arr, np.ndarray) and arr.dtype == NP[dt] and arr.size == n
               and arr.flags.c_contiguous, f"buffer {i} must be a contiguous {NP[dt]} array of {n} elements")
        _check(arr.flags.writeable or bufs[i][1] == isa.Role.INPUT, f"buffer {i} is read-only")


def run(code, buffers) -> None:
    """Validate, then execute `code` over `buffers` (outputs are written in place)."""
    prog = validate(code, buffers)
    if prog["rows"] * prog["cols"] == 0:
        return
    with np.errstate(all="ignore"):
        _execute(prog, [b.reshape(-1) for b in buffers])  # views: writes reach the callers' arrays


def _addr(D, off, st, row):
    idx = np.int64(off)
    for k in range(4 if not row else 3):
        shape = [1] * 4
        shape[k] = D[k]
        idx = idx + (np.arange(D[k], dtype=np.int64) * st[k]).reshape(shape)
    idx = np.broadcast_to(idx, D if not row else D[:3] + [1])
    return idx.reshape(-1, 1 if row else D[3])


def _to_compute(x, dt):
    if dt == DType.F16:
        return x.astype(np.float32)
    if dt == DType.BOOL:
        return x.view(np.uint8) != 0
    return x.copy()


def _execute(prog, buffers):
    D, rows, cols = prog["D"], prog["rows"], prog["cols"]
    R: dict[int, np.ndarray] = {}
    for ins in prog["instrs"]:
        op, dt, fl, d, a, b = ins[:6]
        form = isa.OPCODE_FORMS[op]
        if form in (Form.LOAD, Form.STORE, Form.VIEW):
            off, st = ins[6], ins[7]
            row = op in (O.LOAD_ROW, O.STORE_ROW)
            if op in (O.LOAD, O.STORE):
                idx = slice(off, off + rows * cols)
            else:
                idx = _addr(D, off, st, row)
            shape = (rows, 1 if row else cols)
            if op in (O.LOAD, O.LOAD_VIEW, O.LOAD_ROW):
                R[d] = _to_compute(buffers[a][idx], dt).reshape(shape)
            else:
                buffers[d][idx] = R[a].astype(NP[dt]).reshape(-1 if op == O.STORE else idx.shape)
        elif form == Form.CONST:
            R[d] = np.full((rows, 1 if fl & isa.F_ROW else cols), ins[6], NP[dt])
        elif form in (Form.UNARY, Form.CAST):
            R[d] = _cast(R[a], dt, DType(b)) if op == O.CAST else _unary(op, R[a], cols)
        elif form == Form.BINARY:
            R[d] = _binary(op, R[a], R[b], dt)
        elif form == Form.BINARY_IMM:
            base, imm = O(op - isa.IMM_DELTA), np.asarray(ins[6], NP[dt])
            R[d] = _binary(base, imm, R[a], dt) if b else _binary(base, R[a], imm, dt)
        elif form == Form.SELECT:
            R[d] = np.where(R[a], R[b], R[ins[6]])
        elif form == Form.REDUCE:
            R[d] = _reduce(op, R[a], dt)
        if form not in (Form.END, Form.STORE, Form.VIEW) or op == O.LOAD_VIEW:
            if not fl & isa.F_ROW and R[d].shape != (rows, cols):  # a FULL result of only ROW sources
                R[d] = np.ascontiguousarray(np.broadcast_to(R[d], (rows, cols)))


def _erf(x):
    xf = np.clip(x, np.float32(-4), np.float32(4))
    z = xf * xf

    def horner(cs):
        acc = np.full_like(z, cs[0])
        for c in cs[1:]:
            acc = acc * z + np.float32(c)
        return acc
    return xf * horner(isa.ERF_P) / horner(isa.ERF_Q)


_UNARY = {O.EXP: np.exp, O.LOG: np.log, O.SQRT: np.sqrt, O.TANH: np.tanh, O.ERF: _erf, O.ABS: np.abs,
          O.NEG: np.negative, O.FLOOR: np.floor, O.CEIL: np.ceil, O.ROUND: np.round, O.NOT: np.logical_not,
          O.ISNAN: np.isnan, O.ISINF: np.isinf, O.MOV: np.copy,
          O.RSQRT: lambda x: np.float32(1) / np.sqrt(x), O.RECIP: lambda x: np.float32(1) / x,
          O.SIGMOID: lambda x: np.float32(1) / (np.float32(1) + np.exp(-x))}


def _unary(op, x, cols):
    if op == O.BCAST_ROW:
        return np.repeat(x, cols, axis=1)
    return _UNARY[op](x)


def _cast(x, to, frm):
    if to == DType.F16:
        return x.astype(np.float16).astype(np.float32)
    t = NP[isa.COMPUTE[to]]
    if to == DType.BOOL:
        return x != 0
    if frm == DType.F32 and to in (DType.I32, DType.I64):
        lim = np.float32(2.0 ** (31 if to == DType.I32 else 63))
        ok = (x >= -lim) & (x < lim)
        return np.where(ok, np.trunc(np.where(ok, x, 0)).astype(t), np.iinfo(t).min)
    return x.astype(t)


def _int_div(a, b, t):
    a, b = np.broadcast_arrays(np.asarray(a, t), np.asarray(b, t))
    mn = np.iinfo(t).min
    bz = np.where(b == 0, 1, b)
    bz = np.where((a == mn) & (bz == -1), 1, bz)  # MIN / -1 overflows: the result is MIN (a / 1)
    q = a // bz
    q = q + ((q * bz != a) & ((a < 0) != (bz < 0)))
    return np.where(b == 0, 0, q).astype(t)


def _binary(op, x, y, dt):
    t = NP[dt]
    if op == O.DIV and dt != DType.F32:
        return _int_div(x, y, t)
    if op == O.MOD and dt != DType.F32:
        xa, ya = np.broadcast_arrays(np.asarray(x, t), np.asarray(y, t))
        return np.where(ya == 0, 0, np.mod(xa, np.where(ya == 0, 1, ya))).astype(t)
    fn = _BINARY[op]
    out = fn(x, y)
    return out if out.dtype == np.bool_ or op in (O.EQ, O.NE, O.LT, O.LE, O.GT, O.GE) else out.astype(t)


_BINARY = {O.ADD: np.add, O.SUB: np.subtract, O.MUL: np.multiply, O.DIV: np.divide, O.POW: np.power,
           O.MAX: np.maximum, O.MIN: np.minimum, O.AND: np.logical_and, O.OR: np.logical_or,
           O.XOR: np.logical_xor, O.MOD: np.mod, O.FMOD: np.fmod, O.EQ: np.equal, O.NE: np.not_equal,
           O.LT: np.less, O.LE: np.less_equal, O.GT: np.greater, O.GE: np.greater_equal}
_RED = {O.RSUM: np.add, O.RMAX: np.maximum, O.RMIN: np.minimum, O.RPROD: np.multiply}


def _reduce(op, x, dt):
    """The ISA's fixed order: chunks of REDUCE_CHUNK elements, in each 8 lanes with element j into lane j % 8
    sequentially, the chunks' lanes combined in chunk order, then a fixed lane tree."""
    t, fn, lanes, chunk = NP[dt], _RED[op], isa.REDUCE_LANES, isa.REDUCE_CHUNK
    rows, n = x.shape
    identity = isa.REDUCE_IDENTITY[op][dt]
    per = chunk if n > chunk else max(lanes, -(-n // lanes) * lanes)  # one short chunk: no identity steps
    n_chunks = max(1, -(-n // per))
    pad = np.full((rows, n_chunks * per), identity, t)
    pad[:, :n] = x
    pad = pad.reshape(rows, n_chunks, per // lanes, lanes)
    part = np.full((rows, n_chunks, lanes), identity, t)
    for k in range(per // lanes):  # every chunk's lanes at once
        part = fn(part, pad[:, :, k]).astype(t, copy=False)
    acc = np.full((rows, lanes), identity, t)
    for k in range(n_chunks):
        acc = fn(acc, part[:, k]).astype(t, copy=False)
    L = [acc[:, i:i + 1] for i in range(8)]
    return fn(fn(fn(L[0], L[4]), fn(L[2], L[6])), fn(fn(L[1], L[5]), fn(L[3], L[7]))).astype(t, copy=False)
