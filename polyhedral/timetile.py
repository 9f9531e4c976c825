"""Time tiling (Pluto's parallelogram tiles, run as a wavefront) of nests inside a sequential outer loop.

A stencil's time loop carries dependences, so the scheduler's rows (t, i, j) leave every time step to sweep
all of its arrays: once they exceed the L2 cache, each step streams them from L3 or memory again (jacobi-2d
at LARGE: 13.5 MB per step). Here the statements are rescheduled as one permutable band (proximity rows
that keep every dependence weakly satisfied, i.e. the space rows skewed by the time row: t, 2t+i, 2t+j),
and every row but the innermost is tiled, so a tile runs several time steps over a block of rows that stays
in L2. Tiles with equal (time tile + first space tile) carry no dependence between them (every dependence
has non-negative tile distances), so that sum is a sequential wavefront loop and the space tile loop inside
it runs on threads. Inside a tile the points run (t, statement in textual order, space rows...): each
statement gets its own stride-1 innermost loop, which vectorises (a fused shifted nest interleaves the
statements under guards and does not). The result goes through `deps.check`; an illegal one is dropped.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import islpy as isl

from . import deps as deps_mod
from .config import Config
from .stmt import Scop, accesses, domain

L2_FALLBACK_BYTES = 1 << 20


def l2_bytes() -> int:
    """This machine's per-core L2 size (sysfs), or 1 MiB when it cannot be read."""
    try:
        text = Path("/sys/devices/system/cpu/cpu0/cache/index2/size").read_text().strip()
        units = {"K": 1 << 10, "M": 1 << 20}
        return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except (OSError, ValueError):
        return L2_FALLBACK_BYTES


def footprint(scop: Scop, binding: dict) -> int:
    """Bytes of every array the statements touch (what one time step sweeps)."""
    elem = 8 if scop.dtype == "double" else 4
    names = set()
    for st in scop.statements:
        write, reads = accesses(scop, st)
        names |= {a for a, _ in [write, *reads]}
    total = 0
    for a in names:
        n = 1
        for d in scop.shape(a, binding):
            n *= int(d)
        total += n * elem
    return total


def wanted(scop: Scop, binding: dict, res) -> bool:
    """Whether `res` (a Farkas result) puts every statement inside an outermost loop that carries a
    dependence, and the arrays swept per iteration of it exceed twice the L2 cache. Below that they stay
    in L2 across time steps (MEDIUM stencils: time tiling measured 0-12% slower)."""
    cfg = res.config
    if not cfg.time_tile or cfg.directives or not res.rows or res.rows[0].band < 0 or 0 in res.parallel:
        return False
    if any(not any(res.rows[0].phi[st.name][0]) for st in scop.statements):
        return False
    return footprint(scop, binding) > 2 * l2_bytes()


def schedule(scop: Scop, binding: dict, config: Config, dep: deps_mod.Deps):
    """The time-tiled schedule as a scheduler Result, or None when the statements do not form one
    permutable band of three or more rows, or the tiled order is illegal."""
    from .scheduler import Result, SchedulingError, _affine, _contiguous, _Farkas

    band_cfg = replace(config, objectives=(("proximity", "sum"),), fusion="max", permutable=True,
                       tile_sizes=(), inner_parallel=False)
    try:
        rows = _Farkas(scop, binding, band_cfg, dep).run()
    except SchedulingError:
        return None
    if len(rows) < 3 or len({r.band for r in rows}) != 1 or rows[0].band < 0:
        return None
    # a permutable band's rows may be reordered freely: the rows that move along a statement's stride-1
    # iterator go innermost (fdtd-2d's proximity rows come as t, t+j, t+i), the time row stays outermost
    contig = {st.name: _contiguous(scop, st) for st in scop.statements}

    def strided_use(row):
        return sum(1 for st in scop.statements if row.phi[st.name][0][st.iters.index(contig[st.name])])
    rows = [rows[0], *sorted(rows[1:], key=strided_use)]
    sizes = [config.time_tile[min(k, len(config.time_tile) - 1)] for k in range(len(rows) - 1)]
    parts = []
    for pos, st in enumerate(scop.statements):
        exprs = [_affine(st.iters, *r.phi[st.name]) for r in rows]
        tiles = [f"floor(({e})/{t})" for e, t in zip(exprs, sizes)]
        vec = [f"{tiles[0]} + {tiles[1]}", *tiles[1:], exprs[0], str(pos), *exprs[1:]]
        parts.append(f"{st.name}[{', '.join(st.iters)}] -> [{', '.join(vec)}]")
    params = f"[{', '.join(scop.params)}] -> " if scop.params else ""
    sched = isl.UnionMap(f"{params}{{ {'; '.join(parts)} }}").intersect_domain(domain(scop, binding))
    if not deps_mod.is_legal(dep, sched):
        return None
    note = (f"{config.name}: time tiled ({', '.join(map(str, sizes))}) as a wavefront: the arrays "
            f"({footprint(scop, binding) >> 10} KiB) exceed twice L2")
    return Result(sched, deps_mod.parallel_dims(dep, sched), config, [], [note], dep,
                  {st.name: st.iters for st in scop.statements})
