"""Array expansion: a scratch array that outer loops only re-initialise gets one copy per iteration of them.

doitgen's `sum[p]` is zeroed, accumulated and copied out once per (r, q): every value it holds is read in
the iteration of r and q that wrote it, yet the one array makes each iteration wait for the one before
(anti and output dependences), so the nest runs one row of the product at a time and register tiles
(regtile.py) get a single row: each step of the sum reloads the shared operand (C4[s][p]) for one row's
worth of multiplies. Expanded to `sum[r][q][p]`, those dependences are gone, the (r, q) rows are
independent, and rows are blocked. The flow dependences decide: an array is expanded along the loops that
enclose all of its statements (same positions of the original schedule), that its subscripts do not
already use, and that no value crosses (every flow dependence on it stays inside one iteration of them).

It pays only when the shared operand does not stay in L1: each step then streams it from L2 for one row.
In L1 one-row blocks run at the load ports' pace anyway, and the expanded array only adds traffic (doitgen
one thread, C4 28.8 KB at MEDIUM: 0.293 -> 0.333 ms expanded; 205 KB at LARGE: 39.7 -> 18.0 ms). So an
array is expanded when a statement accumulating into it reads an array that none of the expanded loops
index and that exceeds the L1 data cache, and the copy stays below EXPAND_MAX_BYTES.
"""
from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import islpy as isl

from . import deps as deps_mod
from .privatize import reduction_target
from .stmt import Array, Scop, Statement, _params, access_maps, accesses, bounds

EXPAND_MAX_BYTES = 64 << 20
L1_FALLBACK_BYTES = 32 << 10


def l1d_bytes() -> int:
    """This machine's per-core L1 data cache (sysfs), or 32 KiB when it cannot be read."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for idx in sorted(base.glob("index*")):
            if (idx / "level").read_text().strip() == "1" and (idx / "type").read_text().strip() == "Data":
                text = (idx / "size").read_text().strip()
                units = {"K": 1 << 10, "M": 1 << 20}
                return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except (OSError, ValueError):
        pass
    return L1_FALLBACK_BYTES


def _shared_loops(users: list[Statement]) -> list[tuple[str, ...]]:
    """Per shared loop (outermost first), the iterator each user statement has there: the loops at the same
    positions of every user's original schedule, up to the first position where their textual order
    differs."""
    loops = []
    depth = min(len(st.schedule) for st in users)
    for k in range(depth):
        vals = [st.schedule[k] for st in users]
        if k % 2 == 0:
            if len(set(vals)) != 1:
                break
        elif all(isinstance(v, str) for v in vals):
            loops.append(tuple(vals))
        else:
            break
    return loops


def _bytes(scop: Scop, binding: dict, name: str) -> int:
    return (8 if scop.dtype == "double" else 4) * math.prod(scop.shape(name, binding))


def _indexes(its, subs) -> bool:
    """Whether any of the iterators `its` appears in any of the subscripts `subs`."""
    return any(re.search(rf"\b{re.escape(it)}\b", s) for it in its for s in subs)


def _candidate(scop: Scop, binding: dict, name: str, l1: int):
    """(users, loops, (min, max) of each loop) to expand array `name` along, or None."""
    refs = {st.name: (lambda w, r: [w, *r])(*accesses(scop, st)) for st in scop.statements}
    users = [st for st in scop.statements if any(a == name for a, _ in refs[st.name])]
    if not users:
        return None
    # loops the array's subscripts already use separate its elements: nothing to expand along them
    loops = [its for its in _shared_loops(users)
             if not any(_indexes([it], subs) for it, st in zip(its, users)
                        for a, subs in refs[st.name] if a == name)]
    if not loops:
        return None
    # pays: an accumulation into the array reads an operand none of the loops index, too big for L1
    pays = any(a != name and not _indexes([its[k] for its in loops], subs) and _bytes(scop, binding, a) > l1
               for k, st in enumerate(users) if reduction_target(scop, st) == name
               for a, subs in refs[st.name][1:])
    if not pays:
        return None
    # each instance's values of the loops, as a map from instances to a vector (for flow and bounds)
    ctx = " and ".join(f"{p} = {int(binding[p])}" for p in scop.params)
    parts = []
    for k, st in enumerate(users):
        cons = " and ".join(c for c in (st.domain, ctx) if c) or "true"
        parts.append(f"{st.name}[{', '.join(st.iters)}] -> [{', '.join(its[k] for its in loops)}] : {cons}")
    where = isl.UnionMap(f"{_params(scop)}{{ {'; '.join(parts)} }}")
    others = frozenset(a.name for a in scop.arrays if a.name != name)
    flow = deps_mod.compute(scop, binding, exclude=others).flow
    moved = flow.apply_domain(where).apply_range(where).deltas()
    zero = isl.UnionSet(f"{{ [{', '.join('0' for _ in loops)}] }}")
    if not moved.is_subset(zero):
        return None   # a value written in one iteration of the loops is read in another
    values = where.range()
    return users, loops, _ranges(values)


def _ranges(values: isl.UnionSet) -> list[tuple[int, int]]:
    """(min, max) of each coordinate of a set of integer vectors (a union of sets of one dimension)."""
    sets: list[isl.Set] = []
    values.foreach_set(sets.append)
    per_set = [bounds(s) for s in sets]
    return [(min(b[d][0] for b in per_set), max(b[d][1] for b in per_set)) for d in range(len(per_set[0]))]


def expanded(scop: Scop, binding: dict) -> tuple[Scop, list[str]] | None:
    """The scop with its paying scratch arrays expanded, and notes saying which; None when none qualifies."""
    l1 = l1d_bytes()
    arrays, statements, notes = list(scop.arrays), {st.name: st for st in scop.statements}, []
    for arr in scop.arrays:
        if arr.role != "temp":
            continue
        found = _candidate(replace(scop, statements=tuple(statements.values()), arrays=tuple(arrays)),
                           binding, arr.name, l1)
        if found is None:
            continue
        users, loops, ranges = found
        extents = tuple(hi - lo + 1 for lo, hi in ranges)
        elem = 8 if scop.dtype == "double" else 4
        size = elem * math.prod(extents) * math.prod(scop.shape(arr.name, binding))
        if size > EXPAND_MAX_BYTES:
            continue
        arrays[arrays.index(arr)] = Array(arr.name, extents + tuple(arr.shape), "temp")
        ref = re.compile(rf"\b{re.escape(arr.name)}\s*\[")
        for k, st in enumerate(users):
            lead = "".join(f"[{its[k]} - ({lo})]" if lo else f"[{its[k]}]" for its, (lo, _) in zip(loops, ranges))
            statements[st.name] = replace(statements[st.name],
                                          body=ref.sub(f"{arr.name}{lead}[", statements[st.name].body))
        notes.append(f"expanded {arr.name} along {', '.join(its[0] for its in loops)} "
                     f"({size / 2**20:.1f} MiB)")
    if not notes:
        return None
    out = replace(scop, arrays=tuple(arrays), statements=tuple(statements.values()))
    access_maps(out, binding)   # the rewritten bodies still read as affine accesses
    return out, notes
