"""Bytecode templates: a full encode's program with the words that depend on sizes marked, refilled for new
sizes of the same signature (_Encoder._signature) in O(#views), with no analysis or emission.

Sizes enter a program only through the space dims and tile sizes (header), the buffer lengths (table), the
strides of view instructions (LOAD_VIEW/STORE_VIEW, LOAD_ROW/STORE_ROW) and the 1/count immediate of
GlobalAveragePool. Everything else follows from the signature, which holds each value's rank and which of
its dims are 0, 1 or more: broadcasting, row classes, the merged axis groups of the space and whether a
view is contiguous. (Along each space dim, a view's stride and the contiguous one are products of P's dims
over two axis sets, the first a subset of the second; so they are equal exactly when a factor is 0 or the
dims only in the second are all 1.) Checks that compare two sizes of more than 1 (broadcasts, MatMul's inner
dims) ran in _shapes(); the size limits (tile rows, empty means) run again here.
tests/dvm_runtime/test_template.py compares refilled programs with full encodes over random bodies and
sizes.
"""
from __future__ import annotations

import math

import numpy as np

from . import isa

_WORD_MASK = 0xFFFFFFFFFFFFFFFF


class Template:
    """Built from an _Encoder right after its full encode; fill(enc) encodes enc's sizes the same way."""

    def __init__(self, enc):
        name = {}  # encoder value -> a body value naming it, so fill() finds its counterpart in a new encode
        for v, x in enc.vals.items():
            name.setdefault(id(x), v)
        prog = enc.prog
        code_start = isa.CODE_START + isa.BUF_WORDS * len(prog.slots)
        self.words = tuple(prog.code.tolist())  # a tuple: the GC stops tracking it
        self.groups = enc.groups
        self.n_regs = int(prog.code[isa.H["n_regs"]])
        self.n_instr = int(prog.code[isa.H["n_instr"]])
        views = {}  # (body value, "shape" or "pshape") -> index in self.views
        self.stride_sites = [(code_start + pos + 2, views.setdefault((name[id(x)], attr), len(views)), n)
                             for pos, x, attr, n in enc.stride_sites]
        self.views = list(views)
        self.mean_sites = [(code_start + pos + 1, name[id(x)], cdt) for pos, x, cdt in enc.mean_sites]
        self.slots = [(role, src, None if owner is None else name[id(owner)], shape, dtype)
                      for (role, src, shape, dtype), owner in zip(prog.slots, enc.slot_owners)]
        self.outputs = [src[1] if src[0] == "slot" else None for src, _ in prog.outputs]

    def fill(self, enc):
        """The program for enc, whose _shapes() ran and whose signature is this template's."""
        vals = enc.vals
        D = enc.size_space(self.groups)
        words = list(self.words)
        strides = [enc.strides(getattr(vals[v], attr)) for v, attr in self.views]
        for pos, k, n in self.stride_sites:
            words[pos:pos + n] = [s & _WORD_MASK for s in strides[k][:n]]
        for pos, v, cdt in self.mean_sites:
            words[pos] = enc.mean_scale(vals[v].shape, cdt)
        slots = []
        for k, (role, src, owner, shape, dtype) in enumerate(self.slots):
            if owner is not None:
                shape = vals[owner].shape
            slots.append((role, src, shape, dtype))
            words[isa.CODE_START + isa.BUF_WORDS * k + 1] = math.prod(shape)
        tiles = enc.tiles(self.n_regs, enc.streamed(slots), self.n_instr)
        words[isa.H["tile_rows"]:isa.H["d3"] + 1] = [*tiles, *D]
        prog = enc.prog
        prog.code, prog.slots = np.array(words, np.uint64), slots
        for o, slot in zip(enc.body.outputs, self.outputs):
            x = vals[o]
            prog.outputs.append((("slot", slot) if slot is not None else x.src, x.shape))
        return prog
