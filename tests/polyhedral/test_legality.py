"""Legality: the isl check agrees with a brute-force instance-by-instance check on random schedules (legal
and illegal ones), and every preset's schedule passes the brute-force check."""
import random

import islpy as isl
import pytest

from polyhedral import config, deps, scheduler
from polyhedral.polybench import SCOPS
from polyhedral.stmt import access_maps, domain, original_schedule

TINY = {"gemm": dict(NI=3, NJ=4, NK=3), "jacobi-1d": dict(T=3, N=6), "seidel-2d": dict(T=2, N=5),
        "fdtd-2d": dict(T=2, NX=3, NY=4), "covariance": dict(M=3, N=4), "atax": dict(M=3, N=4)}


def _points(umap: isl.UnionMap) -> dict:
    """{(stmt, instance tuple): [(range name, range tuple), ...]} by enumerating the map's points."""
    out: dict = {}
    for m in deps.maps(umap):
        name, n_in, rname = m.get_tuple_name(isl.dim_type.in_), m.dim(isl.dim_type.in_), \
            m.get_tuple_name(isl.dim_type.out)

        def add(p, name=name, n_in=n_in, rname=rname, n=m.dim(isl.dim_type.in_) + m.dim(isl.dim_type.out)):
            c = [int(p.get_coordinate_val(isl.dim_type.set, k).to_python()) for k in range(n)]
            out.setdefault((name, tuple(c[:n_in])), []).append((rname, tuple(c[n_in:])))
        m.wrap().foreach_point(add)
    return out


def brute_force_legal(scop, binding, sched: isl.UnionMap) -> bool:
    """Every pair of accesses to one element, at least one a write, keeps its original order."""
    w, r = access_maps(scop, binding)
    orig = {k: v[0][1] for k, v in _points(original_schedule(scop, binding)).items()}
    new = {k: v[0][1] for k, v in _points(sched.intersect_domain(domain(scop, binding))).items()}
    touches: dict = {}
    for kind, um in (("w", w), ("r", r)):
        for inst, elems in _points(um).items():
            for arr, e in elems:
                touches.setdefault((arr, e), []).append((orig[inst], inst, kind))
    for events in touches.values():
        events.sort()
        for a in range(len(events)):
            for b in range(a + 1, len(events)):
                (_, ia, ka), (_, ib, kb) = events[a], events[b]
                if ia != ib and "w" in (ka, kb) and not new[ia] < new[ib]:
                    return False
    return True


def _random_schedule(scop, rng: random.Random) -> isl.UnionMap:
    depth = max(len(s.iters) for s in scop.statements)
    fused = rng.random() < 0.5
    perm_all = list(range(depth))
    rng.shuffle(perm_all)
    parts = []
    for k, st in enumerate(scop.statements):
        order = [p for p in perm_all if p < len(st.iters)] if rng.random() < 0.8 else \
            rng.sample(range(len(st.iters)), len(st.iters))
        rows = [("-" if rng.random() < 0.15 else "") + st.iters[p] for p in order]
        if len(rows) > 1 and rng.random() < 0.3:
            rows[1] = f"{rows[1]} + {st.iters[order[0]]}"
        rows += ["0"] * (depth - len(rows))
        vec = rows + [str(k)] if fused else [str(k)] + rows
        parts.append(f"{st.name}[{', '.join(st.iters)}] -> [{', '.join(vec)}]")
    params = f"[{', '.join(scop.params)}] -> "
    return isl.UnionMap(f"{params}{{ {'; '.join(parts)} }}")


@pytest.mark.parametrize("name", sorted(TINY))
def test_isl_check_agrees_with_brute_force_on_random_schedules(name):
    scop, binding = SCOPS[name], TINY[name]
    dep = deps.compute(scop, binding)
    rng = random.Random(hash(name) % 1000)
    verdicts = []
    for _ in range(30):
        sched = _random_schedule(scop, rng)
        fast = deps.is_legal(dep, sched)
        assert fast == brute_force_legal(scop, binding, sched), str(sched)
        verdicts.append(fast)
    assert not all(verdicts), "no illegal schedule was drawn: the property test would be vacuous"
    assert deps.is_legal(dep, original_schedule(scop, binding))


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("preset", sorted(config.PRESETS))
def test_every_preset_schedule_is_legal_by_brute_force(name, preset):
    scop, binding = SCOPS[name], TINY[name]
    res = scheduler.schedule(scop, binding, config.preset(preset))
    assert brute_force_legal(scop, binding, res.schedule)


def test_illegal_schedule_is_rejected_with_a_typed_error():
    scop, binding = SCOPS["jacobi-1d"], TINY["jacobi-1d"]
    dep = deps.compute(scop, binding)
    reversed_time = isl.UnionMap("[T, N] -> { S0[t, i] -> [-t, 0, i]; S1[t, i] -> [-t, 1, i] }")
    assert not brute_force_legal(scop, binding, reversed_time)
    with pytest.raises(deps.IllegalScheduleError, match="violates"):
        deps.check(dep, reversed_time)
