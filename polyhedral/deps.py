"""Dependences with isl (flow, anti, output; memory based: no renaming, so a reordering they allow is safe)
and the legality and parallelism checks any schedule goes through before code generation."""
from __future__ import annotations

from dataclasses import dataclass

import islpy as isl

from framework.errors import MsgxError

from .stmt import Scop, access_maps, domain, original_schedule


class IllegalScheduleError(MsgxError):
    """A schedule orders some dependent pair of instances backwards (or at the same time)."""


@dataclass(frozen=True)
class Deps:
    """Instance-wise dependences of a scop under one binding of its parameters."""

    flow: isl.UnionMap  # write -> later read of the same element
    anti: isl.UnionMap  # read -> later write
    output: isl.UnionMap  # write -> later write
    domain: isl.UnionSet

    @property
    def all(self) -> isl.UnionMap:
        return self.flow.union(self.anti).union(self.output)


def compute(scop: Scop, binding: dict | None = None, exclude: frozenset = frozenset()) -> Deps:
    """Direct dependences: the last write before each read (flow), and for each write the previous write
    (output) and the reads since it (anti). Every other memory dependence is their transitive consequence,
    so a schedule respecting these respects all; they are far smaller, which keeps the Farkas sets cheap.
    `exclude`: arrays whose accesses are left out (privatize.py: those a loop's chunks get copies of)."""
    writes, reads = (_without(m, exclude) for m in access_maps(scop, binding))
    orig = original_schedule(scop, binding)
    flow = isl.UnionAccessInfo.from_sink(reads).set_must_source(writes).set_schedule_map(orig).compute_flow()
    wr = isl.UnionAccessInfo.from_sink(writes).set_must_source(writes).set_may_source(reads) \
        .set_schedule_map(orig).compute_flow()
    out = wr.get_must_dependence()
    anti = wr.get_may_dependence().subtract(out)
    return Deps(flow.get_must_dependence(), anti, out, domain(scop, binding))


def violations(deps: Deps, schedule: isl.UnionMap) -> isl.UnionMap:
    """The dependences a schedule does not order strictly source-first (empty when legal)."""
    sched = schedule.intersect_domain(deps.domain)
    return deps.all.subtract(sched.lex_lt_union_map(sched))


def check(deps: Deps, schedule: isl.UnionMap, what: str = "schedule") -> None:
    """Raise IllegalScheduleError naming a violated dependence, or return when the schedule is legal."""
    sched = schedule.intersect_domain(deps.domain)
    if not sched.domain().is_equal(deps.domain):
        raise IllegalScheduleError(f"{what} does not cover every statement instance")
    bad = violations(deps, sched)
    if not bad.is_empty():
        sample = bad.sample() if hasattr(bad, "sample") else bad
        raise IllegalScheduleError(f"{what} violates dependence(s), e.g. {sample}")


def is_legal(deps: Deps, schedule: isl.UnionMap) -> bool:
    try:
        check(deps, schedule)
    except IllegalScheduleError:
        return False
    return True


def maps(u: isl.UnionMap) -> list[isl.Map]:
    """The maps of a union map (one per pair of spaces)."""
    out: list[isl.Map] = []
    u.foreach_map(out.append)
    return out


def _without(accesses: isl.UnionMap, arrays: frozenset) -> isl.UnionMap:
    """The accesses to arrays other than `arrays`."""
    if not arrays:
        return accesses
    kept = isl.UnionMap("{ }").align_params(accesses.get_space())
    for m in maps(accesses):
        if m.get_tuple_name(isl.dim_type.out) not in arrays:
            kept = kept.union(isl.UnionMap.from_map(m))
    return kept


def _dims(schedule: isl.UnionMap) -> int:
    return max(m.dim(isl.dim_type.out) for m in maps(schedule))


def loop_is_parallel(deps: Deps, schedule: isl.UnionMap, dim: int, stmts: set[str]) -> bool:
    """Whether dimension `dim` carries no dependence between the instances of `stmts` (one loop's body)."""
    dom = isl.UnionSet("{ }")
    sets: list[isl.Set] = []
    deps.domain.foreach_set(sets.append)
    for st in sets:
        if st.get_tuple_name() in stmts:
            dom = dom.union(isl.UnionSet.from_set(st))
    sched = schedule.intersect_domain(dom)
    n = _dims(schedule)
    dist = deps.all.intersect_domain(dom).intersect_range(dom).apply_domain(sched).apply_range(sched).deltas()
    zeros = " and ".join(f"v{k} = 0" for k in range(dim)) or "true"
    vars_ = ", ".join(f"v{k}" for k in range(n))
    return dist.intersect(isl.UnionSet(f"{{ [{vars_}] : {zeros} and v{dim} != 0 }}")).is_empty()


def parallel_dims(deps: Deps, schedule: isl.UnionMap) -> set[int]:
    """Schedule dimensions that carry no dependence: among the pairs equal on all outer dimensions, none
    differs at this one (so its loop can run its iterations in any order, e.g. on threads)."""
    sched = schedule.intersect_domain(deps.domain)
    n = _dims(sched)
    dist = deps.all.apply_domain(sched).apply_range(sched).deltas()
    out = set()
    for d in range(n):
        zeros = " and ".join(f"v{k} = 0" for k in range(d)) or "true"
        vars_ = ", ".join(f"v{k}" for k in range(n))
        carried = isl.UnionSet(f"{{ [{vars_}] : {zeros} and v{d} != 0 }}")
        if dist.intersect(carried).is_empty():
            out.add(d)
    return out
