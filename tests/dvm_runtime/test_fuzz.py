"""Bad bytecode never crashes the C VM: random and mutated programs run in a subprocess (a crash shows as a
signal exit, not a dead pytest). The VMs must also agree on which programs are valid."""
import os
import subprocess
import sys

import numpy as np
import pytest

from dvm_runtime import cvm, isa, pyvm
from dvm_runtime.isa import DType, Opcode as O, Role

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
M64 = (1 << 64) - 1
DTS = (DType.F32, DType.I32, DType.I64, DType.BOOL)
BUF_DTS = tuple(DType)
MAX_RUN_ELEMS = 1 << 20   # larger (valid) spaces are only validated: a fuzz case must not run for minutes


APPROX = frozenset({O.EXP, O.LOG, O.TANH, O.SIGMOID, O.POW, O.ERF})   # numpy's SIMD versions, the C VM's FMA ERF differ in last bits


def random_program(rng, exact=False) -> np.ndarray:
    """A valid program: random space, tiling, buffers and a straight-line body tracking register dtype/class.
    exact=True leaves out the ops whose numpy results are not bit-for-bit reproducible."""
    dims = [int(rng.integers(1, hi)) for hi in (4, 4, 6, 40)]
    rows, cols = dims[0] * dims[1] * dims[2], dims[3]
    tile = (1, int(rng.integers(1, cols + 1))) if rng.random() < 0.4 else (int(rng.integers(1, 9)), cols)
    n = rows * cols
    bufs = [(DType(rng.choice(BUF_DTS)), Role.INPUT, n) for _ in range(int(rng.integers(1, 4)))]
    words, regs, n_instr = [], {}, 0
    n_regs = int(rng.integers(2, 10))

    def emit(op, dt=0, fl=0, d=0, a=0, b=0, *ext):
        nonlocal n_instr
        words.extend([isa.word0(op, dt, fl, d, a, b), *(int(e) & M64 for e in ext)])
        n_instr += 1

    def pick(dt=None, cls=None):
        ok = [r for r, v in regs.items() if (dt is None or v[0] == dt) and (cls is None or v[1] == cls)]
        return int(rng.choice(ok)) if ok else None

    for k, (dt, _, _) in enumerate(bufs):
        r = int(rng.integers(n_regs))
        row = rng.random() < 0.3
        if row:
            emit(O.LOAD_ROW, dt, 0, r, k, 0, 0, dims[1] * dims[2] * cols, dims[2] * cols, cols, 0)
        elif rng.random() < 0.5:
            emit(O.LOAD, dt, 0, r, k, 0, 0)
        else:   # the last axis read backwards
            emit(O.LOAD_VIEW, dt, 0, r, k, 0, cols - 1, dims[1] * dims[2] * cols, dims[2] * cols, cols, -1)
        regs[r] = (isa.COMPUTE[dt], row)
    for _ in range(int(rng.integers(1, 12))):
        d = int(rng.integers(n_regs))
        kind = rng.integers(6)
        src = pick()
        sdt, scls = regs[src]
        if kind == 0:
            ops = [o for o in isa.UNARY_OPS if sdt in isa.OPCODE_DTYPES[o] and o != O.BCAST_ROW
                   and not (exact and o in APPROX)]
            op = O(rng.choice(ops))
            emit(op, sdt, (isa.F_ROW | isa.F_A_ROW) if scls else 0, d, src)
            regs[d] = (DType.BOOL if op in isa.BOOL_RESULT else sdt, scls)
        elif kind == 1:
            ops = [o for o in isa.BINARY_OPS + isa.COMPARE_OPS if sdt in isa.OPCODE_DTYPES[o]
                   and not (exact and o in APPROX)]
            op = O(rng.choice(ops))
            other = pick(sdt) if rng.random() < 0.8 else None
            imm = other is None
            ocls = True if imm else regs[other][1]
            row = scls and ocls and rng.random() < 0.7
            fl = (isa.F_ROW if row else 0) | (isa.F_A_ROW if scls else 0)
            fl |= isa.F_B_ROW if not imm and ocls else 0
            if imm:
                fl &= ~isa.F_B_ROW
                floats = [0, 1, -1, 2.5, np.nan, np.inf, 1e30, -7]
                val = rng.choice(floats if sdt == DType.F32 else [0, 1, -1, 7, -7])
                emit(op + isa.IMM_DELTA, sdt, fl, d, src, int(rng.integers(2)), isa.imm_bits(val, sdt))
            else:
                emit(op, sdt, fl, d, src, other)
            regs[d] = (DType.BOOL if op in isa.BOOL_RESULT else sdt, bool(row))
        elif kind == 2:
            to = DType(rng.choice([*DTS, DType.F16]))
            emit(O.CAST, to, (isa.F_ROW | isa.F_A_ROW) if scls else 0, d, src, sdt)
            regs[d] = (isa.COMPUTE[to], scls)
        elif kind == 3 and not scls and tile[1] == cols and sdt != DType.BOOL:
            emit(O(rng.choice(isa.REDUCE_OPS)), sdt, isa.F_ROW, d, src)
            regs[d] = (sdt, True)
        elif kind == 4 and scls:
            emit(O.BCAST_ROW, sdt, isa.F_A_ROW, d, src)
            regs[d] = (sdt, False)
        else:
            dt = DType(rng.choice(DTS))
            row = rng.random() < 0.3
            emit(O.CONST, dt, isa.F_ROW if row else 0, d, 0, 0, isa.imm_bits(rng.choice([0, 1, 3.5]), dt))
            regs[d] = (dt, row)
        cond = pick(DType.BOOL)
        if cond is not None and rng.random() < 0.3:
            x = pick()
            y = pick(regs[x][0])
            fl = sum(f for f, r in ((isa.F_A_ROW, cond), (isa.F_B_ROW, x), (isa.F_C_ROW, y)) if regs[r][1])
            emit(O.SELECT, regs[x][0], fl, d, cond, x, y)
            regs[d] = (regs[x][0], False)
    outs = []
    for r, (dt, row) in list(regs.items())[: int(rng.integers(1, 4))]:
        bdt = DType.F16 if dt == DType.F32 and rng.random() < 0.3 else dt
        slot = len(bufs) + len(outs)
        if row:
            emit(O.STORE_ROW, bdt, 0, slot, r, 0, 0, dims[1] * dims[2], dims[2], 1, 0)
        else:
            emit(O.STORE, bdt, 0, slot, r, 0, 0)
        outs.append((bdt, Role.OUTPUT, rows if row else n))
    emit(O.END)
    table = [w for dt, role, m in bufs + outs for w in (int(dt) | int(role) << 8, m)]
    head = [0] * isa.HEADER_WORDS
    for key, v in {"magic": isa.MAGIC, "version": isa.VERSION, "n_instr": n_instr,
                   "n_buffers": len(table) // 2,
                   "n_regs": n_regs, "tile_rows": tile[0], "tile_cols": tile[1], "d0": dims[0], "d1": dims[1],
                   "d2": dims[2], "d3": dims[3]}.items():
        head[isa.H[key]] = v
    head[isa.H["n_words"]] = len(head) + len(table) + len(words)
    return np.array(head + table + words, np.uint64)


INTERESTING = [0, 1, 2, 3, 7, 8, 15, 16, 255, 256, 1023, 1024, 65535, 1 << 20, 1 << 31, 1 << 32, 1 << 60,
               1 << 62, 1 << 63, M64, M64 - 1, (1 << 63) - 1]


def mutate(code: np.ndarray, rng) -> np.ndarray:
    """One to four random edits: bit flips, interesting values, field rewrites, cuts and splices."""
    w = [int(x) for x in code]
    for _ in range(int(rng.integers(1, 5))):
        i = int(rng.integers(len(w))) if w else 0
        k = rng.integers(8)
        if not w:
            w = [int(rng.integers(0, 1 << 63))]
        elif k == 0:
            w[i] ^= 1 << int(rng.integers(64))
        elif k == 1:
            w[i] = int(rng.choice(INTERESTING)) & M64
        elif k == 2:   # rewrite one 16-bit field or the opcode/dtype/flags byte of an instruction word
            shift = int(rng.choice([0, 8, 12, 16, 32, 48]))
            width = 8 if shift == 0 else 4 if shift in (8, 12) else 16
            w[i] = (w[i] & ~(((1 << width) - 1) << shift) & M64) | (int(rng.integers(1 << width)) << shift)
        elif k == 3:
            w[i] = (w[i] + int(rng.choice([-1, 1, -8, 8]))) & M64
        elif k == 4:
            del w[i]
        elif k == 5:
            w.insert(i, int(rng.choice(INTERESTING)) & M64)
        elif k == 6:
            j = int(rng.integers(len(w)))
            w[i], w[j] = w[j], w[i]
        else:
            w = w[:i]
        if w and rng.random() < 0.5 and len(w) > isa.H["n_words"]:   # keep n_words consistent half the time
            w[isa.H["n_words"]] = len(w)
    return np.array(w, np.uint64)


def buffers_for(code, rng):
    """Buffers matching the program's table as far as it parses (random contents, NaNs included)."""
    if len(code) < isa.HEADER_WORDS:
        return []
    nb = min(int(code[isa.H["n_buffers"]]), isa.MAX_BUFFERS)
    out = []
    for i in range(nb):
        at = isa.CODE_START + 2 * i
        if at + 1 >= len(code):
            break
        t, m = int(code[at]), int(code[at + 1])
        dt = isa.NUMPY_DTYPE.get(t & 0xFF, np.dtype(np.float32))
        m = m if m <= MAX_RUN_ELEMS else 1
        a = (rng.standard_normal(m) * 3).astype(dt) if dt.kind != "b" else rng.integers(0, 2, m).astype(bool)
        if dt.kind == "f" and m:
            a[rng.integers(m)] = np.nan
        out.append(a)
    return out


def fuzz(n: int, seed: int, trace: str | None = None) -> dict:
    """Run n cases; returns counts. Any crash kills the process (the caller sees the signal)."""
    rng = np.random.default_rng(seed)
    seeds = [random_program(rng) for _ in range(64)]
    st = {"cases": 0, "valid": 0, "ran": 0, "rejected": 0, "disagree": 0, "examples": []}
    for k in range(n):
        r = rng.random()
        if r < 0.1:
            code = random_program(rng)
        elif r < 0.2:   # a valid header, then random words
            base = seeds[k % len(seeds)]
            code = np.concatenate([base[: isa.HEADER_WORDS + int(rng.integers(0, 8))],
                                   rng.integers(0, 1 << 63, int(rng.integers(0, 30)), dtype=np.uint64)])
        else:
            code = mutate(seeds[int(rng.integers(len(seeds)))], rng)
        if trace:
            with open(trace, "wb") as f:
                f.write(code.tobytes())
        st["cases"] += 1
        try:
            info = cvm.validate(code)
            ok = True
        except cvm.BytecodeError:
            ok = False
        if k % 4 == 0 or ok:   # the numpy VM is slower: compare on every valid and a quarter of the rest
            try:
                pyvm.validate(code)
                pok = True
            except pyvm.DvmError:
                pok = False
            if pok != ok and len(code) >= isa.HEADER_WORDS and _comparable(code):
                st["disagree"] += 1
                if len(st["examples"]) < 3:
                    st["examples"].append(code.tobytes().hex())
        bufs = buffers_for(code, rng)
        space = int(np.prod([min(int(x), 1 << 40) for x in code[isa.H["d0"]:isa.H["d3"] + 1]])) \
            if len(code) >= isa.HEADER_WORDS else 0
        if ok and space <= MAX_RUN_ELEMS and info["arena_bytes"] <= 1 << 28:
            try:  # every other case as kernels run programs: decoded once into a Program, then run
                if k % 2:
                    cvm.run(code, bufs, int(rng.integers(1, 4)))
                else:
                    cvm.extension().Program(code).run(bufs, int(rng.integers(1, 4)))
                st["ran"] += 1
            except (cvm.BytecodeError, cvm.extension().BytecodeError):
                pass
        else:
            if not ok:  # a Program refuses what validate refuses
                try:
                    cvm.extension().Program(code)
                    st["disagree"] += 1
                except cvm.extension().BytecodeError:
                    pass
            try:
                cvm.run(code, bufs)
            except (cvm.BytecodeError, MemoryError, RuntimeError):
                st["rejected"] += 1
        st["valid"] += ok
    return st


def _comparable(code) -> bool:
    """pyvm also caps dims and view terms at 2**60 (beyond the ISA's rules); skip programs that reach it."""
    return all(int(x) < 1 << 60 for x in code[isa.H["d0"]:isa.H["d3"] + 1]) and all(
        int(x) < 1 << 60 or int(x) > M64 - (1 << 60) for x in code[isa.HEADER_WORDS:])


def run_fuzz(n, seed, tmp_path):
    trace = str(tmp_path / "case.bin")
    script = ("import sys, json; sys.path.insert(0, %r)\nfrom tests.dvm_runtime.test_fuzz import fuzz\n"
              "print(json.dumps(fuzz(%d, %d, %r)))\n") % (ROOT, n, seed, trace)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=3000,
                          cwd=ROOT)
    if proc.returncode != 0:
        last = open(trace, "rb").read().hex() if os.path.exists(trace) else "?"
        pytest.fail(f"fuzz worker died with {proc.returncode}: {proc.stderr[-2000:]}\nlast program: {last}")
    import json
    st = json.loads(proc.stdout.strip().splitlines()[-1])
    assert st["cases"] == n and st["ran"] > n // 50, st
    assert st["disagree"] == 0, st
    return st


pytestmark = pytest.mark.skipif(not cvm.available(), reason=f"C VM unavailable: {cvm.why_unavailable()}")


def test_fuzz_5000_programs(tmp_path):
    run_fuzz(5000, 1, tmp_path)


@pytest.mark.slow
def test_fuzz_100000_programs(tmp_path):
    run_fuzz(100_000, 2, tmp_path)


def test_random_valid_programs_match_the_numpy_vm_bit_for_bit():
    rng = np.random.default_rng(3)
    for _ in range(500):
        code = random_program(rng, exact=True)
        bufs = buffers_for(code, rng)
        ref = [b.copy() for b in bufs]
        with np.errstate(all="ignore"):
            pyvm.run(code, ref)
        cvm.run(code, bufs, 2)
        for g, r in zip(bufs, ref):
            np.testing.assert_array_equal(g, r, err_msg=__import__("dvm_runtime.disasm").disasm.disasm(code))

