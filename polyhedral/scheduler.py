"""The configurable scheduler: one schedule row at a time, each the lexicographic minimum of the config's
objectives over the Farkas-linearised constraints (isl `coefficients`, `lexmin`); cuts and bands as in Pluto.
Presets `isl` and `original` use isl's own scheduler and the textual order. Every result is checked legal."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import islpy as isl
import numpy as np

from framework.errors import MsgxError

from . import deps as deps_mod
from .config import Config
from .stmt import Scop, accesses, bounds, original_schedule, trip_counts


class SchedulingError(MsgxError):
    """The scheduler found no legal schedule for a scop under a config."""


@dataclass
class Row:
    """One schedule dimension: per statement (coefficients over its iterators, constant); band id or -1."""

    phi: dict[str, tuple[tuple[int, ...], int]]
    band: int
    tile: bool = True  # False: the band's loops carry no reuse between tiles (config.tile_needs_reuse)


@dataclass
class Result:
    schedule: isl.UnionMap  # final (tiled) schedule, intersected with the domain
    parallel: set[int]  # dimensions that carry no dependence
    config: Config
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dep: deps_mod.Deps | None = None
    dep_iters: dict = field(default_factory=dict)  # statement -> iterators (for directives)
    # the scop this schedules where it is not the caller's (expand.py: scratch arrays expanded); code
    # generation and the compiled kernel's array shapes follow it
    scop: Scop | None = None

    def work_per_entry(self, dim: int, stmts: frozenset) -> float:
        """Statement instances of `stmts` per execution of a loop at `dim` (total / outer iterations)."""
        sets: list[isl.Map] = []
        self.schedule.foreach_map(sets.append)
        total, outer = 0, None
        for m in sets:
            if m.get_tuple_name(isl.dim_type.in_) not in stmts:
                continue
            total += _count(m.domain())
            r = m.range().project_out(isl.dim_type.set, dim, m.dim(isl.dim_type.out) - dim)
            outer = r if outer is None else outer.union(r)
        return total / max(1, _count(outer)) if outer is not None else 0.0

    def loop_parallel(self, dim: int, stmts: frozenset) -> bool:
        """A loop at `dim` over `stmts` only carries no dependence (finer than the global `parallel`) and no
        `serial`/`reduce` directive names an iterator it runs over."""
        if self.rows:
            row = self.rows[_dim_rows(self.rows, self.config)[dim]]
            for d in self.config.directives:
                if d.kind in ("serial", "reduce"):
                    for st in stmts:
                        iters = self.dep_iters.get(st, ())
                        named = d.stmt in ("*", st) and d.iterator in iters
                        if named and row.phi[st][0][iters.index(d.iterator)]:
                            return False
        if dim in self.parallel:
            return True
        return self.dep is not None and deps_mod.loop_is_parallel(self.dep, self.schedule, dim, set(stmts))


def schedule(scop: Scop, binding: dict, config: Config, dep: deps_mod.Deps | None = None) -> Result:
    """A legal schedule for the scop at these sizes; a Farkas failure falls back to isl, then the original.
    With config.expand, scratch arrays may be expanded first (the Result's `scop`)."""
    if config.expand and config.algorithm == "farkas" and dep is None:
        from . import expand
        found = expand.expanded(scop, binding)
        if found is not None:
            res = schedule(found[0], binding, replace(config, expand=False))
            res.notes.extend(found[1])
            return replace(res, config=config, scop=found[0])
    dep = dep or deps_mod.compute(scop, binding)
    notes: list[str] = []
    rows: list[Row] = []
    if config.algorithm == "original":
        sched = original_schedule(scop, binding)
    elif config.algorithm == "isl":
        sched = _isl(scop, binding, dep)
    else:
        try:
            rows = _Farkas(scop, binding, config, dep).run()
            sched = _to_map(scop, binding, rows, config)
            deps_mod.check(dep, sched, f"{config.name} schedule of {scop.name}")
        except (SchedulingError, deps_mod.IllegalScheduleError) as e:
            notes.append(f"{config.name}: {e}; using isl's schedule")
            rows, sched = [], _isl(scop, binding, dep)
    deps_mod.check(dep, sched, f"{config.name} schedule of {scop.name}")
    res = Result(sched, deps_mod.parallel_dims(dep, sched), config, rows, notes, dep,
                 {st.name: st.iters for st in scop.statements})
    if config.inner_parallel and config.algorithm == "farkas" and _recurrences(scop, res):
        # Feautrier's rows kept as permutable bands and tiled as cubes of the first tile size: an untiled
        # front spans every time step, so at LARGE its points leave the cache between fronts (seidel-2d
        # 2000x2000, 60 steps: 2.8x the original order untiled, 5.2x tiled by 32; MEDIUM 3.5x / 4.0x)
        alt = schedule(scop, binding, replace(config, objectives=(("feautrier", "sum"),), fusion="max",
                                              permutable=True, tile_sizes=(config.tile_at(0),),
                                              inner_parallel=False, time_tile=()), dep)
        if not alt.notes and not _recurrences(scop, alt):
            alt.notes.append(f"{config.name}: innermost loops of {', '.join(_recurrences(scop, res))} carry "
                             "a dependence; Feautrier's rows leave every innermost loop free")
            return replace(alt, config=config)
    if config.algorithm == "farkas" and not res.notes:
        from . import timetile
        if timetile.wanted(scop, binding, res):
            return timetile.schedule(scop, binding, config, dep) or res
    return res


def _recurrences(scop: Scop, res: Result) -> list[str]:
    """Statements (other than reductions, which codegen vectorises) whose innermost loop carries a
    dependence: each iteration waits for the one before (a latency-bound chain, no vector lanes)."""
    from .codegen import _reduction
    out = []
    for st in scop.statements:
        if not st.iters or _reduction(st) is not None:
            continue
        maps: list[isl.Map] = []
        res.schedule.foreach_map(lambda m: maps.append(m) if m.get_tuple_name(isl.dim_type.in_) == st.name
                                 else None)
        inner = _innermost_dim(maps[0]) if maps else None
        if inner is not None and not res.loop_parallel(inner, frozenset({st.name})):
            out.append(st.name)
    return out


def _innermost_dim(m: isl.Map) -> int | None:
    """The last schedule dimension that takes more than one value over the statement's instances."""
    rng = m.range()
    for d in reversed(range(rng.dim(isl.dim_type.set))):
        one = rng.project_out(isl.dim_type.set, d + 1, rng.dim(isl.dim_type.set) - d - 1) \
            .project_out(isl.dim_type.set, 0, d)
        if not one.is_singleton():
            return d
    return None


def _isl(scop: Scop, binding: dict, dep: deps_mod.Deps) -> isl.UnionMap:
    """isl's scheduler on the parametric dependences (with the sizes fixed, it is far slower: minutes)."""
    sym = deps_mod.compute(scop, None)
    d = sym.all
    sc = isl.ScheduleConstraints.on_domain(sym.domain).set_validity(d).set_proximity(d).set_coincidence(d)
    if scop.params:
        ctx = " and ".join(f"{p} >= {int(binding[p])}" for p in scop.params)
        sc = sc.set_context(isl.Set(f"[{', '.join(scop.params)}] -> {{ : {ctx} }}"))
    return sc.compute_schedule().get_map().intersect_domain(dep.domain)


def _count(s: isl.Set) -> int:
    """Points of the bounding box of a bounded set (a cheap size estimate; exact for rectangles)."""
    if s.is_empty():
        return 0
    return math.prod(hi - lo + 1 for lo, hi in bounds(s))


def _groups(rows: list[Row]) -> list[list[int]]:
    groups: list[list[int]] = []
    for k, r in enumerate(rows):
        if groups and r.band >= 0 and rows[groups[-1][0]].band == r.band:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def _tiles(rows: list[Row], g: list[int], config: Config) -> list[int]:
    if len(g) < 2 or rows[g[0]].band < 0 or not rows[g[0]].tile:
        return []
    return [config.tile_at(j) for j in range(len(g))]


L1_BYTES = 32 * 1024  # data reused across a band loop that fits this stays in cache untiled


def _band_reuses(scop: Scop, rows: list[Row], g: list[int], trips: dict) -> bool:
    """Whether tiling band `g` can keep data in cache that would otherwise be evicted: for a statement with
    two or more of the band's iterators, some access uses some of them but not all (the same elements are
    read again along the others: gemm's B[k][j] along i), and those elements (the access over the band
    iterators it uses) exceed L1_BYTES. A stencil sweep (every access uses every band iterator) reuses only
    neighbouring rows, and a matrix-vector product reuses a vector that fits in L1: both stay in cache
    untiled, and tiling would only shorten their vector loops. Accesses that use none of the band iterators
    (fict[t]) sit in a register. A skewed row (more than one iterator) counts as reuse, as before."""
    elem = 8 if scop.dtype == "double" else 4
    for st in scop.statements:
        phis = [rows[k].phi[st.name][0] for k in g]
        if any(sum(1 for c in phi if c) > 1 for phi in phis):
            return True
        band_iters = {st.iters[phi.index(next(c for c in phi if c))] for phi in phis if any(phi)}
        if len(band_iters) < 2:
            continue
        write, reads = accesses(scop, st)
        for _, subs in [write, *reads]:
            used = {it for it in band_iters if any(re.search(rf"\b{re.escape(it)}\b", x) for x in subs)}
            if used and used != band_iters and \
                    elem * int(np.prod([trips[st.name][it] for it in used])) > L1_BYTES:
                return True
    return False


def _dim_rows(rows: list[Row], config: Config) -> list[int]:
    """The row each dimension of the tiled schedule comes from (a tile loop counts as its row)."""
    out = []
    for g in _groups(rows):
        if any(t > 1 for t in _tiles(rows, g, config)):
            out += g
        out += g
    return out


def _to_map(scop: Scop, binding: dict, rows: list[Row], config: Config) -> isl.UnionMap:
    """The rows as a schedule map, each permutable band of >= 2 rows tiled by the config's tile sizes."""
    groups = _groups(rows)
    parts = []
    for st in scop.statements:
        vec = []
        for g in groups:
            exprs = [_affine(st.iters, *rows[k].phi[st.name]) for k in g]
            tiles = _tiles(rows, g, config)
            if any(t > 1 for t in tiles):
                vec += [f"floor(({e})/{t})" if t > 1 else "0" for e, t in zip(exprs, tiles)]
            vec += exprs
        parts.append(f"{st.name}[{', '.join(st.iters)}] -> [{', '.join(vec)}]")
    params = f"[{', '.join(scop.params)}] -> " if scop.params else ""
    from .stmt import domain
    return isl.UnionMap(f"{params}{{ {'; '.join(parts)} }}").intersect_domain(domain(scop, binding))


def _affine(iters, coefs, const) -> str:
    terms = [f"{c}*{it}" for c, it in zip(coefs, iters) if c]
    if const or not terms:
        terms.append(str(const))
    return " + ".join(terms)


def _contiguous(scop: Scop, st) -> str | None:
    """The iterator best placed innermost: fewest accesses it strides through (it appears in a subscript
    other than the last), then most accesses it walks with stride 1 (alone in the last subscript)."""
    write, reads = accesses(scop, st)
    refs = [write, *reads]

    def uses(it, sub):
        return re.search(rf"\b{re.escape(it)}\b", sub) is not None

    def key(it):
        strided = sum(any(uses(it, x) for x in subs[:-1]) for _, subs in refs)
        unit = sum(subs[-1].replace(" ", "") in (it, f"{it}+1", f"{it}-1") for _, subs in refs)
        return (strided, -unit, -st.iters.index(it))
    return min(st.iters, key=key) if st.iters else None


class _Farkas:
    """Row-by-row search; state: rows so far, per-statement rank, dependence remainders."""

    def __init__(self, scop: Scop, binding: dict, config: Config, dep: deps_mod.Deps):
        self.scop, self.binding, self.cfg = scop, binding, config
        self.stmts = list(scop.statements)
        self.index = {s.name: k for k, s in enumerate(self.stmts)}
        # parametric dependences (sizes only bounded below): isl's Farkas sets and ILPs stay small
        sym = deps_mod.compute(scop, None).all
        if scop.params:
            ctx = " and ".join(f"{p} >= {int(binding[p])}" for p in scop.params)
            sym = sym.intersect_params(isl.Set(f"[{', '.join(scop.params)}] -> {{ : {ctx} }}"))
        self.maps = [m for m in deps_mod.maps(sym) if not m.is_empty()]
        self.params = f"[{', '.join(scop.params)}] -> " if scop.params else ""
        self._farkas: dict[str, isl.Set] = {}
        self.coef_vars = []  # global variable names of the statement coefficients
        for s in self.stmts:
            self.coef_vars += [f"{s.name}_cst"] + [f"{s.name}_{it}" for it in reversed(s.iters)]
        trips = self.trips = trip_counts(scop, binding)
        self.contig, self.weight, self.serial = {}, {}, set()
        for s in self.stmts:
            c = _contiguous(scop, s)
            for d in config.directives:
                if d.stmt in ("*", s.name) and d.iterator in s.iters and d.kind == "vector":
                    c = d.iterator
            self.contig[s.name] = c
            order = sorted(s.iters, key=lambda it: -trips[s.name][it])
            self.weight[s.name] = {it: order.index(it) for it in s.iters}
        self.rows: list[Row] = []
        self.H = {s.name: [] for s in self.stmts}

    def _coefficients(self, m: isl.Map) -> isl.Set:
        """Valid forms c_cst + c_par.p + c_src.i + c_dst.j >= 0 over the dependence, as an integer set."""
        out = None
        for bm in m.get_basic_maps():  # piece by piece: coalesced stencil pieces have costly duals
            text = str(bm.wrap().coefficients().flatten()).replace("rat: ", "")
            piece = isl.Set(text).reset_tuple_id()
            out = piece if out is None else out.intersect(piece)
        return out

    def farkas_of(self, m: isl.Map) -> isl.Set:
        key = str(m)
        if key not in self._farkas:
            self._farkas[key] = self._coefficients(m)
        return self._farkas[key]

    def rank(self, name: str) -> int:
        return int(np.linalg.matrix_rank(np.array(self.H[name], dtype=float))) if self.H[name] else 0

    def run(self) -> list[Row]:
        cfg = self.cfg
        remaining = list(self.maps)
        if cfg.fusion != "max":
            remaining = self._cut(remaining, initial=True)
        band, band_deps, dim = 0, list(remaining), 0
        snaps: dict[int, list] = {}  # row index -> dependences unsatisfied before it (post-hoc bands)
        for _ in range(64):
            if all(self.rank(s.name) >= len(s.iters) for s in self.stmts):
                break
            active = band_deps if cfg.permutable else remaining
            sol = self._solve(active, dim)
            if "parallel" in cfg.objectives_at(dim):  # a dependence-free row if no worse for contiguity,
                par = self._solve(active, dim, zero=True)  # distributing the statements to get one
                if par is not None and (sol is None or par["_cost"] <= sol["_cost"]):
                    sol = par
                elif par is None and remaining:
                    rows_before = len(self.rows)
                    rem = self._cut(remaining)
                    if self._last_cut_split and cfg.fusion == "smart" and self._cut_splits_shared_reads():
                        del self.rows[rows_before:]  # keep the fusion: parallel loops would read it twice
                    elif self._last_cut_split:
                        remaining, band, band_deps = rem, band + 1, list(rem)
                        continue
            if sol is not None and sol["_cost"] > 0 and cfg.fusion != "none" and remaining:
                # fusion is costing contiguity (a stride-1 loop pushed outward): distribute if that helps
                rows_before, kept = len(self.rows), remaining
                rem = self._cut(remaining)
                if self._last_cut_split:
                    alt = self._solve(rem, dim)
                    if alt is not None and alt["_cost"] < sol["_cost"]:
                        remaining, band, band_deps = rem, band + 1, list(rem)
                        continue
                    del self.rows[rows_before:]
                remaining = kept
            if sol is not None:
                sol.pop("_cost", None)
                snaps[len(self.rows)] = list(remaining)
                self.rows.append(Row(sol, band))
                for s in self.stmts:
                    if self.rank(s.name) < len(s.iters):
                        self.H[s.name].append(list(sol[s.name][0]))
                remaining = [r for r in (self._restrict_equal(m, sol) for m in remaining) if not r.is_empty()]
                if not cfg.permutable:
                    band, band_deps = band + 1, list(remaining)
                dim += 1
                continue
            if len(band_deps) != len(remaining) or any(
                    not a.is_equal(b) for a, b in zip(band_deps, remaining)):
                band, band_deps = band + 1, list(remaining)
                continue
            remaining = self._cut(remaining)
            if not self._last_cut_split:
                raise SchedulingError(f"no legal hyperplane for {self.scop.name} at dimension {dim}")
            band, band_deps = band + 1, list(remaining)
        else:
            raise SchedulingError(f"{self.scop.name}: too many schedule dimensions")
        if remaining:
            remaining = self._cut(remaining)
            if remaining:
                raise SchedulingError(f"{self.scop.name}: dependences left unordered after all dimensions")
        if not cfg.permutable:
            self._posthoc_bands(snaps)
        if cfg.tile_needs_reuse:
            for g in _groups(self.rows):
                if not _band_reuses(self.scop, self.rows, g, self.trips):
                    for k in g:
                        self.rows[k].tile = False
        return self.rows

    def _cut_splits_shared_reads(self) -> bool:
        """Whether the cut just appended separates two statements, fused so far, that read the same input
        array (atax's A[i][j] in tmp[i] += A[i][j]*x[j] and y[j] += A[i][j]*tmp[i]): distributing them for a
        parallel loop would stream that array from memory twice, which costs more than the threads give
        on a memory-bound nest."""
        cut = self.rows[-1].phi
        before = {s.name: tuple(r.phi[s.name][1] for r in self.rows[:-1] if r.band < 0) for s in self.stmts}
        reads = {s.name: {a for a, _ in accesses(self.scop, s)[1]
                          if self.scop.array(a).role == "in"} for s in self.stmts}
        return any(before[a.name] == before[b.name] and cut[a.name][1] != cut[b.name][1]
                   and reads[a.name] & reads[b.name] for a in self.stmts for b in self.stmts)

    def _posthoc_bands(self, snaps: dict[int, list]) -> None:
        """Group consecutive rows into permutable bands (every dependence unsatisfied at the band's start
        has a non-negative distance on each of its rows), so they can be tiled."""
        band, start = 0, None
        for k, r in enumerate(self.rows):
            if r.band < 0:
                start = None
                continue
            if start is None or not all(self._nonneg(m, r.phi) for m in snaps[start]):
                band, start = band + 1, k
            r.band = band

    def _nonneg(self, m: isl.Map, phi) -> bool:
        s, t = m.get_tuple_name(isl.dim_type.in_), m.get_tuple_name(isl.dim_type.out)
        si, ti = self.stmts[self.index[s]].iters, self.stmts[self.index[t]].iters
        ti2 = [f"{x}_" for x in ti]
        lt = (f"{self.params}{{ {s}[{', '.join(si)}] -> {t}[{', '.join(ti2)}] : "
              f"{_affine(ti2, *phi[t])} < {_affine(si, *phi[s])} }}")
        return m.intersect(isl.Map(lt)).is_empty()

    def _restrict_equal(self, m: isl.Map, phi) -> isl.Map:
        """The dependence pairs the new row leaves at distance 0 (the others are strongly satisfied)."""
        s, t = m.get_tuple_name(isl.dim_type.in_), m.get_tuple_name(isl.dim_type.out)
        si, ti = self.stmts[self.index[s]].iters, self.stmts[self.index[t]].iters
        ti2 = [f"{x}_" for x in ti]
        eq = (f"{self.params}{{ {s}[{', '.join(si)}] -> {t}[{', '.join(ti2)}] : "
              f"{_affine(si, *phi[s])} = {_affine(ti2, *phi[t])} }}")
        return m.intersect(isl.Map(eq))

    def _cut(self, remaining: list[isl.Map], initial: bool = False) -> list[isl.Map]:
        """A scalar row ordering the statements' strongly connected components topologically (initially
        by the fusion policy); returns the dependences it leaves unordered."""
        n = len(self.stmts)
        edges = {(self.index[m.get_tuple_name(isl.dim_type.in_)],
                  self.index[m.get_tuple_name(isl.dim_type.out)])
                 for m in remaining}
        comp = _sccs(n, edges)
        order = sorted(set(comp), key=lambda c: min(k for k in range(n) if comp[k] == c))
        order = _topo(order, {(comp[a], comp[b]) for a, b in edges if comp[a] != comp[b]})
        pos = {c: k for k, c in enumerate(order)}
        if initial and self.cfg.fusion == "smart":  # fuse neighbouring components of equal depth only
            depth = {c: max(len(self.stmts[k].iters) for k in range(n) if comp[k] == c) for c in order}
            grp, g = {}, 0
            for k, c in enumerate(order):
                if k and depth[c] != depth[order[k - 1]]:
                    g += 1
                grp[c] = g
            pos = grp
        value = {self.stmts[k].name: pos[comp[k]] for k in range(n)}
        group = {s.name: tuple(r.phi[s.name][1] for r in self.rows if r.band < 0) for s in self.stmts}
        self._last_cut_split = any(group[a] == group[b] and value[a] != value[b]
                                   for a in value for b in value)
        if not self._last_cut_split:
            return remaining
        self.rows.append(Row({s.name: ((0,) * len(s.iters), value[s.name]) for s in self.stmts}, -1))
        return [m for m in remaining if value[m.get_tuple_name(isl.dim_type.in_)] ==
                value[m.get_tuple_name(isl.dim_type.out)]]

    def _solve(self, band_deps: list[isl.Map], dim: int, zero: bool = False):
        """The next row: lexmin of (objectives..., constants, coefficients) under weak satisfaction of the
        band's dependences, bounds and linear independence; None when infeasible."""
        from .scheduler_ilp import solve_row
        return solve_row(self, band_deps, dim, zero)


def _sccs(n: int, edges: set) -> list[int]:
    """Component id per node (Tarjan)."""
    adj = {k: [b for a, b in edges if a == k] for k in range(n)}
    index, low, comp, stack, on, counter = {}, {}, [-1] * n, [], set(), [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            while True:
                w = stack.pop()
                on.discard(w)
                comp[w] = v
                if w == v:
                    break
    for v in range(n):
        if v not in index:
            visit(v)
    return comp


def _topo(nodes: list, edges: set) -> list:
    """Kahn's order, ties broken by the given order (textual order of the statements)."""
    out, done = [], set()
    while len(out) < len(nodes):
        for c in nodes:
            if c not in done and all(a in done for a, b in edges if b == c):
                out.append(c)
                done.add(c)
                break
    return out
