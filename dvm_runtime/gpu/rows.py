"""Which programs the CUDA row interpreter runs (cuda_rows.cu), and their tables.

A program qualifies when it reduces along its rows (LayerNorm, softmax, a ReduceSum's cluster) and is
otherwise made of what the chain kernel runs (chain.py: float32 loads, stores, views, constants, unary and
binary arithmetic), plus the ROW class: per-row values (LOAD_ROW, STORE_ROW, arithmetic on ROW registers),
BCAST_ROW and ROW operands broadcast along a row. Selects, casts, comparisons and other dtypes do not.

The tiled kernel keeps every register of a tile in shared memory, so it cannot hold rows much longer than
8192 elements (a softmax over a 32000-word vocabulary); those programs run here (vm.Prepared). Here no
element value is kept from one pass to the next, so a row's length costs no shared memory: a value is
either one number per row (a *row value*: ROW registers, constants, 0-d and per-row loads, and arithmetic
on those) or an *element value* that is recomputed, from loads, wherever it is needed. Rows the tiled kernel
holds stay there: on one H100 this kernel was no faster on them (LayerNorm 8192x8192 0.826 ms against 0.831,
softmax 0.664 against 0.558; benchmarks/results/gpu_h100.md, session 24).
The table is a list of segments run in order for each row:
- row steps (`K_ROWS` header): the row values, computed by one thread of the row into its `rowv` slots;
- passes (`K_PASS` header): the element values one reduction or the program's stores need, run by the
  row's threads over the row like a chain (chain.py's kinds: loads hoisted first, then arithmetic and stores
  on per-thread shared-memory slots allocated by liveness, row values as uniform operands); a reduction
  pass then combines its values in the ISA's fixed order (chunks of REDUCE_CHUNK, 8 lanes) into a row value.
Recomputing is exact (the same operations on the same inputs) and cheap on a GPU; it is sound because the
program reads no buffer it writes (checked). Each thread takes 4-lane halves of reduction chunks, so its
float4 at each step holds four lanes of one chunk, in the order the ISA adds them.
"""
from __future__ import annotations

import numpy as np

from .. import isa
from ..isa import Form, Opcode as O
from .chain import (BINARY, K_BINARY, K_BINARY_IMM, K_CONST, K_LOAD, K_STORE, K_UNARY, K_VIEW, REV, A_UNI,
                    B_UNI, STEP_WORDS, UNARY, _step, f32_instructions)

K_ROW_LOAD, K_ROW_STORE, K_ROWS, K_PASS = 8, 9, 10, 11
# Table limits (the table, slots, row values and chunk results all live in the block's dynamic shared
# memory, sized per program by vm.rows_shared_bytes; a step names slots and row values in 8-bit fields)
ROWS_MAX_STEPS = 256     # steps of all segments with their headers
ROWS_MAX_SLOTS = 24      # element slots of a pass (chain.CHAIN_W float4s per thread each)
ROWS_MAX_ROWV = 64       # row values
ROWS_MAX_CHUNKS = 512    # reduction chunks per row: rows of up to 65536 elements
ROWS_NT = 128            # cuda_rows.cu's ROWS_NT: threads per block
REDUCE = frozenset(isa.REDUCE_OPS)


class Rows:
    """A program's row table (uint64 words, STEP_WORDS per step), the slots and row values it needs, its
    space, and how the kernel lays a row over threads: `per` elements per reduction chunk, `nch` chunks,
    `group` threads per row (a power of two), `rows_per_block` rows per block."""

    __slots__ = ("words", "n_steps", "n_slots", "n_rowv", "rows", "cols", "d1", "d2", "per", "nch", "group",
                 "rows_per_block")

    def __init__(self, words: list, n_slots: int, n_rowv: int, dims: tuple):
        self.words = np.array(words, np.uint64)
        self.n_steps = len(words) // STEP_WORDS
        self.n_slots, self.n_rowv = max(n_slots, 1), max(n_rowv, 1)
        self.rows, self.cols = dims[0] * dims[1] * dims[2], dims[3]
        self.d1, self.d2 = max(dims[1], 1), max(dims[2], 1)
        c = max(self.cols, 1)
        chunk = isa.REDUCE_CHUNK
        self.per = chunk if c > chunk else -(-c // isa.REDUCE_LANES) * isa.REDUCE_LANES
        self.nch = -(-c // self.per)
        halves = 2 * self.nch   # a thread's unit of work: four lanes of one chunk
        self.group = min(ROWS_NT, 1 << max(halves - 1, 0).bit_length())
        self.rows_per_block = ROWS_NT // self.group


class _Val:
    """One register write: `row` (one number per row) or an element value with its defining step."""

    __slots__ = ("row", "kind", "op", "args", "buf", "rev", "imm", "off", "strides", "at")

    def __init__(self, row, kind, op=0, args=(), buf=0, rev=0, imm=0, off=0, strides=(0, 0, 0, 0), at=-1):
        self.row, self.kind, self.op, self.args, self.buf = row, kind, op, args, buf
        self.rev, self.imm, self.off, self.strides, self.at = rev, imm, off, strides, at


def _values(ins: list) -> tuple | None:
    """The program as values: (values, element stores [(value, buf, off, instruction index)], events in
    program order: ("rowval", value) where a row value is defined, ("rowstore", value, buf, off, strides),
    ("reduce", value) where a reduction's row value is), or None: an op this kernel lacks."""
    vals: list[_Val] = []
    cur: dict[int, int] = {}
    stores, events = [], []   # events: ("rowstore", ...) / ("reduce", ...) / ("rowval", v) in program order

    def read(r: int) -> int:
        if r not in cur:   # read before any write: the VM's zeros
            vals.append(_Val(True, K_CONST, imm=0))
            events.append(("rowval", len(vals) - 1))
            cur[r] = len(vals) - 1
        return cur[r]

    def define(v: _Val, r: int) -> None:
        vals.append(v)
        cur[r] = len(vals) - 1
        if v.row:
            events.append(("rowval", cur[r]))

    for at, (op, form, flags, d, a, b, extra) in enumerate(ins):
        if op == O.LOAD:
            define(_Val(False, K_LOAD, buf=a, off=isa.s64(extra[0]), at=at), d)
        elif op in (O.LOAD_VIEW, O.LOAD_ROW):
            strides = tuple(isa.s64(x) for x in extra[1:5])
            if strides[3] == 0:   # one value per row
                define(_Val(True, K_ROW_LOAD, buf=a, off=isa.s64(extra[0]), strides=strides), d)
            else:
                define(_Val(False, K_VIEW, buf=a, off=isa.s64(extra[0]), strides=strides, at=at), d)
        elif op == O.STORE:
            stores.append((read(a), d, isa.s64(extra[0]), at))
        elif op == O.STORE_ROW:
            events.append(("rowstore", read(a), d, isa.s64(extra[0]), tuple(isa.s64(x) for x in extra[1:5])))
        elif form == Form.CONST:
            define(_Val(True, K_CONST, imm=extra[0]), d)
        elif op == O.BCAST_ROW:
            cur[d] = read(a)   # the same numbers, as a FULL register
        elif form == Form.UNARY and op in UNARY:
            x = read(a)
            define(_Val(vals[x].row, K_UNARY, op=op, args=(x,), at=at), d)
        elif form == Form.BINARY and op in BINARY:
            x, y = read(a), read(b)
            define(_Val(vals[x].row and vals[y].row, K_BINARY, op=op, args=(x, y), at=at), d)
        elif form == Form.BINARY_IMM and O(op - isa.IMM_DELTA) in BINARY:
            x = read(a)
            base = op - isa.IMM_DELTA
            define(_Val(vals[x].row, K_BINARY_IMM, op=base, args=(x,), rev=b, imm=extra[0], at=at), d)
        elif form == Form.REDUCE and op in REDUCE:
            x = read(a)
            vals.append(_Val(True, K_PASS, op=op, args=(x,)))
            cur[d] = len(vals) - 1
            events.append(("reduce", len(vals) - 1))
        else:
            return None
    return vals, stores, events


class _Builder:
    """Emits the table: row values get fixed `rowv` indices; each pass allocates its own slots."""

    def __init__(self, vals: list[_Val]):
        self.vals = vals
        self.rowv: dict[int, int] = {}
        self.words: list[int] = []
        self.row_steps: list[int] = []
        self.n_slots = 0

    def operand(self, v: int, slot: dict) -> tuple[int, bool]:
        return (self.rowv[v], True) if self.vals[v].row else (slot[v], False)

    def row_value(self, v: int) -> None:
        x = self.vals[v]
        d = self.rowv[v] = len(self.rowv)
        if x.kind == K_PASS:
            return   # its pass wrote it
        a, b = ([self.rowv[u] for u in x.args] + [0, 0])[:2]
        self.row_steps += _step(x.kind, op=x.op, d=d, a=a, b=b, buf=x.buf, flags=REV if x.rev else 0,
                                imm=x.imm, off=x.off, strides=x.strides)

    def flush_rows(self) -> None:
        if self.row_steps:
            self.words += _step(K_ROWS, imm=len(self.row_steps) // STEP_WORDS) + self.row_steps
            self.row_steps = []

    def pass_(self, targets: list[int], stores: list, reduce_op: int = 0, dest: int = 0) -> None:
        """A pass computing the element values `targets` (a reduction's source) and `stores` need."""
        need: set[int] = set()
        todo = [v for v in targets + [s[0] for s in stores] if not self.vals[v].row]
        while todo:
            v = todo.pop()
            if v not in need:
                need.add(v)
                todo += [u for u in self.vals[v].args if not self.vals[u].row]
        order = sorted(need)
        loads = [v for v in order if self.vals[v].kind in (K_LOAD, K_VIEW)]
        # the main steps and the stores in program order; a value's last read ends its slot
        main = sorted([(self.vals[v].at, 0, v) for v in order if v not in loads] +
                      [(at, 1, i) for i, (_v, _b, _o, at) in enumerate(stores)])
        last: dict[int, int] = {}
        for k, (_at, is_store, x) in enumerate(main):
            for u in ((stores[x][0],) if is_store else self.vals[x].args):
                last[u] = k
        for v in targets:
            last[v] = len(main)   # the reduction reads it after the last step
        slot: dict[int, int] = {}
        free: list[int] = []
        n_slots = 0

        def take(v: int) -> int:
            nonlocal n_slots
            s = free.pop() if free else n_slots
            n_slots = max(n_slots, s + 1)
            slot[v] = s
            return s

        body: list[int] = []
        for v in loads:
            x = self.vals[v]
            body += _step(x.kind, d=take(v), buf=x.buf, off=x.off, strides=x.strides)
        for v in loads:
            if v not in last:
                free.append(slot.pop(v))
        for k, (_at, is_store, x) in enumerate(main):
            args = (stores[x][0],) if is_store else self.vals[x].args
            (a, ua), (b, ub) = [self.operand(u, slot) for u in args] + [(0, False)] * (2 - len(args))
            for u in set(args):   # operands are read before the result is written: their slots can be its
                if last.get(u) == k and u in slot:
                    free.append(slot.pop(u))
            if is_store:
                _v, buf, off, _at = stores[x]
                body += _step(K_STORE, a=a, buf=buf, off=off, flags=A_UNI if ua else 0)
                continue
            val = self.vals[x]
            flags = (REV if val.rev else 0) | (A_UNI if ua else 0) | (B_UNI if ub else 0)
            body += _step(val.kind, op=val.op, d=take(x), a=a, b=b, imm=val.imm, flags=flags)
            if x not in last:   # never read: its slot is free again at once
                free.append(slot.pop(x))
        src, src_row = self.operand(targets[0], slot) if targets else (0, False)
        self.n_slots = max(self.n_slots, n_slots)
        n_main = len(body) // STEP_WORDS - len(loads)
        self.words += _step(K_PASS, op=reduce_op, d=dest, a=src, flags=A_UNI if src_row else 0,
                            imm=len(loads), off=n_main) + body


def steps(code: np.ndarray) -> Rows | None:
    """The row form of a validated program, or None when it does not reduce along rows, does not qualify, or
    needs more steps, slots, row values or chunks than the kernel has."""
    decoded = f32_instructions(code)
    if decoded is None:
        return None
    ins, h = decoded
    dims = (h["d0"], h["d1"], h["d2"], h["d3"])
    got = _values(ins)
    if got is None:
        return None
    vals, stores, events = got
    if not any(e[0] == "reduce" for e in events):
        return None
    read = {v.buf for v in vals if v.kind in (K_LOAD, K_VIEW, K_ROW_LOAD)}
    written = {s[1] for s in stores} | {e[2] for e in events if e[0] == "rowstore"}
    if read & written:
        return None   # a buffer both read and written: passes re-read their inputs after stores
    b = _Builder(vals)
    for e in events:
        if e[0] == "rowval":
            b.row_value(e[1])
        elif e[0] == "rowstore":
            _, v, buf, off, strides = e
            b.row_steps += _step(K_ROW_STORE, a=b.rowv[v], buf=buf, off=off, strides=strides)
        else:   # a reduction: the row values so far, then its pass
            b.flush_rows()
            v = e[1]
            b.row_value(v)
            b.pass_([vals[v].args[0]], [], int(vals[v].op), b.rowv[v])
    b.flush_rows()
    if stores:
        b.pass_([], stores)
    r = Rows(b.words, b.n_slots, len(b.rowv), dims)
    if r.n_steps > ROWS_MAX_STEPS or r.n_slots > ROWS_MAX_SLOTS or r.n_rowv > ROWS_MAX_ROWV or \
            r.nch > ROWS_MAX_CHUNKS:
        return None
    return r
