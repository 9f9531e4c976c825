"""The statement format: a loop nest as statements with iteration domains, accesses read off a C body, an
original schedule (2d+1 form) and symbolic size parameters bound to numbers when compiled."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import islpy as isl

from framework.errors import MsgxError


class ScopError(MsgxError):
    """A statement-format program is malformed (unknown array, bad domain, body without an assignment)."""


_REF = re.compile(r"\b([A-Za-z_]\w*)\s*((?:\[[^\[\]]+\])+)")
_ASSIGN = re.compile(r"^\s*(.+?)\s*([-+*/]?=)(?!=)\s*(.+?);?\s*$", re.S)


@dataclass(frozen=True)
class Array:
    """A dense array; role: in, out, inout (read and written by the caller) or temp (scratch)."""

    name: str
    shape: tuple  # ints or parameter names
    role: str = "in"


@dataclass(frozen=True)
class Statement:
    """One statement: `domain` is an isl constraint text over `iters` and the parameters, `body` one C
    assignment whose array references (`A[i][k+1]`) define the accesses, `schedule` its 2d+1 position."""

    name: str
    iters: tuple[str, ...]
    domain: str
    body: str
    schedule: tuple  # ints (textual positions) and iterator names, e.g. (0, "i", 1, "j", 0)


@dataclass(frozen=True)
class Scop:
    """A program: parameters, arrays, scalar arguments (C doubles/floats), statements in textual order."""

    name: str
    params: tuple[str, ...]
    arrays: tuple[Array, ...]
    statements: tuple[Statement, ...]
    scalars: tuple[str, ...] = ()
    dtype: str = "double"  # C element type of every array and scalar
    sizes: dict = field(default_factory=dict, compare=False)  # named bindings of the parameters

    def array(self, name: str) -> Array:
        for a in self.arrays:
            if a.name == name:
                return a
        raise ScopError(f"scop {self.name!r}: statement references unknown array {name!r}")

    def stmt(self, name: str) -> Statement:
        return next(s for s in self.statements if s.name == name)

    def shape(self, name: str, binding: dict) -> tuple[int, ...]:
        return tuple(int(binding[d]) if isinstance(d, str) else int(d) for d in self.array(name).shape)


Ref = tuple[str, tuple[str, ...]]  # (array, subscripts)


def accesses(scop: Scop, st: Statement) -> tuple[Ref, list[Ref]]:
    """(write, reads) of a statement; a compound assignment (`+=`...) also reads its target."""
    m = _ASSIGN.match(st.body)
    if not m:
        raise ScopError(f"scop {scop.name!r} statement {st.name}: body is not one assignment: {st.body!r}")
    lhs, op, rhs = m.groups()
    w = _REF.fullmatch(lhs.strip())
    if not w:
        raise ScopError(f"scop {scop.name!r} statement {st.name}: target is not an array reference: {lhs!r}")
    write = (w.group(1), _subs(w.group(2)))
    reads = [(r.group(1), _subs(r.group(2))) for r in _REF.finditer(rhs)]
    if op != "=":
        reads.insert(0, write)
    for name, _ in [write, *reads]:
        scop.array(name)
    return write, reads


def _subs(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.strip()[1:-1].split("]["))


def _params(scop: Scop) -> str:
    return f"[{', '.join(scop.params)}] -> " if scop.params else ""


def _context(scop: Scop, binding: dict | None) -> str:
    if not binding:
        return ""
    return " and ".join(f"{p} = {int(binding[p])}" for p in scop.params)


def domain(scop: Scop, binding: dict | None = None) -> isl.UnionSet:
    """All statement instances; with a binding the parameters are fixed to its values."""
    ctx = _context(scop, binding)
    parts = []
    for st in scop.statements:
        cons = " and ".join(c for c in (st.domain, ctx) if c)
        head = f"{st.name}[{', '.join(st.iters)}]"
        parts.append(f"{head} : {cons}" if cons else head)
    try:
        return isl.UnionSet(f"{_params(scop)}{{ {'; '.join(parts)} }}")
    except isl.Error as e:
        raise ScopError(f"scop {scop.name!r}: bad iteration domain: {e}") from None


def access_maps(scop: Scop, binding: dict | None = None) -> tuple[isl.UnionMap, isl.UnionMap]:
    """(writes, reads) as union maps from instances to array elements, intersected with the domain."""
    dom = domain(scop, binding)
    w_parts, r_parts = [], []
    for st in scop.statements:
        write, reads = accesses(scop, st)
        src = f"{st.name}[{', '.join(st.iters)}]"
        w_parts.append(f"{src} -> {write[0]}[{', '.join(write[1])}]")
        r_parts += [f"{src} -> {a}[{', '.join(s)}]" for a, s in reads]
    try:
        w = isl.UnionMap(f"{_params(scop)}{{ {'; '.join(w_parts)} }}")
        r = isl.UnionMap(f"{_params(scop)}{{ {'; '.join(r_parts)} }}") if r_parts else isl.UnionMap("{ }")
    except isl.Error as e:
        raise ScopError(f"scop {scop.name!r}: subscripts are not affine: {e}") from None
    return w.intersect_domain(dom), r.intersect_domain(dom)


def original_schedule(scop: Scop, binding: dict | None = None) -> isl.UnionMap:
    """The textual order as a schedule map (2d+1 vectors padded with zeros to one length)."""
    depth = max(len(st.schedule) for st in scop.statements)
    parts = []
    for st in scop.statements:
        vec = [str(x) for x in st.schedule] + ["0"] * (depth - len(st.schedule))
        parts.append(f"{st.name}[{', '.join(st.iters)}] -> [{', '.join(vec)}]")
    return isl.UnionMap(f"{_params(scop)}{{ {'; '.join(parts)} }}").intersect_domain(domain(scop, binding))


def trip_counts(scop: Scop, binding: dict) -> dict[str, dict[str, int]]:
    """Per statement, the number of distinct values each iterator takes (for big-loops-first)."""
    out = {}
    for st in scop.statements:
        cons = " and ".join(c for c in (st.domain, _context(scop, binding)) if c) or "true"
        s = isl.Set(f"{_params(scop)}{{ [{', '.join(st.iters)}] : {cons} }}")
        counts = {}
        for k, it in enumerate(st.iters):
            proj = s.project_out(isl.dim_type.set, k + 1, len(st.iters) - k - 1).project_out(
                isl.dim_type.set, 0, k)
            lo, hi = proj.lexmin(), proj.lexmax()
            counts[it] = _point(hi) - _point(lo) + 1 if not proj.is_empty() else 0
        out[st.name] = counts
    return out


def bounds(s: isl.Set) -> list[tuple[int, int]]:
    """(min, max) of each coordinate of a bounded, non-empty set."""
    n, out = s.dim(isl.dim_type.set), []
    for k in range(n):
        one = s.project_out(isl.dim_type.set, k + 1, n - k - 1).project_out(isl.dim_type.set, 0, k)
        out.append((_point(one.lexmin()), _point(one.lexmax())))
    return out


def _point(s: isl.Set) -> int:
    return int(s.sample_point().get_coordinate_val(isl.dim_type.set, 0).to_python())
