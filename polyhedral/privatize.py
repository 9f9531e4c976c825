"""Array reductions privatised per chunk, so the loop that carries them runs on threads.

atax's `y[j] += A[i][j] * tmp[i]` and bicg's `s[j] += r[i] * A[i][j]` accumulate into a whole array across
the iterations of their outer loop i: that loop carries a dependence through the array, so it stays serial,
and the nest streams its matrix on one core. Here each chunk of the loop's iterations accumulates into a
zeroed copy of the array of its own, and after the loop the copies are added to the array in chunk order.
The chunks are fixed by the iteration count and the thread count (`msgx_chunks` in the generated C), not by
which thread runs them, so the result does not depend on scheduling; the sum is reassociated (chunk by
chunk), as a split reduction's is.

An array qualifies when every statement of the loop that touches it is an update `X[f] += e` (or
`X[f] = X[f] + e`) whose `e` does not read X, and the loop carries no dependence once those arrays are left
out. The copies cost their size per chunk (zeroing and adding), so codegen privatises only where that is
small beside the loop's work.
"""
from __future__ import annotations

import re

from . import deps as deps_mod
from .stmt import _ASSIGN, _REF, Scop, Statement, accesses

# rest of `X[f] = X[f] + rest` that may be reassociated: no operator binding looser than + (comparisons,
# logic, the conditional, commas) at any depth
_LOOSE = re.compile(r"[<>=!&|?:,]")


def reduction_target(scop: Scop, st: Statement) -> str | None:
    """The array X when st is an update X[f] += e or X[f] = X[f] + e with e not reading X, else None."""
    m = _ASSIGN.match(st.body)
    if not m:
        return None
    lhs, op, rhs = (g.strip() for g in m.groups())
    target = accesses(scop, st)[0][0]
    if op == "=":
        head = re.match(rf"^{re.escape(lhs)}\s*\+(.*)$", rhs, re.S)
        if not head:
            return None
        rhs = head.group(1)
    elif op != "+=":
        return None
    if _LOOSE.search(rhs) or any(r.group(1) == target for r in _REF.finditer(rhs)):
        return None
    return target


def arrays(scop: Scop, binding: dict, schedule, dim: int, stmts: frozenset) -> frozenset:
    """The arrays to privatise so that the loop at schedule dimension `dim` over `stmts` carries no
    dependence, or an empty set where none qualify or the loop still carries one without them."""
    body = [st for st in scop.statements if st.name in stmts]
    targets = {st.name: reduction_target(scop, st) for st in body}
    touched: dict[str, set[str]] = {}
    for st in body:
        write, reads = accesses(scop, st)
        for a, _ in [write, *reads]:
            touched.setdefault(a, set()).add(st.name)
    chosen = frozenset(a for a, users in touched.items()
                       if all(targets[s] == a for s in users) and scop.array(a).role != "in")
    if not chosen:
        return frozenset()
    if not _parallel_without(scop, binding, schedule, dim, stmts, chosen):
        return frozenset()
    for a in sorted(chosen):  # only those the loop needs: an update the loop does not carry keeps its array
        if _parallel_without(scop, binding, schedule, dim, stmts, chosen - {a}):
            chosen -= {a}
    return chosen


def _parallel_without(scop, binding, schedule, dim, stmts, arrays) -> bool:
    dep = deps_mod.compute(scop, binding, exclude=arrays)
    return deps_mod.loop_is_parallel(dep, schedule, dim, set(stmts))
