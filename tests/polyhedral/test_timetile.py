"""Time tiling of stencils (timetile.py): which nests get it, legality, results vs numpy on ragged tiles at
1 and 2 threads, and the config that turns it off. The L2 size is patched down so that small problems
(seconds of test time, not LARGE's minutes) cross the footprint threshold."""
from dataclasses import replace

import islpy as isl
import numpy as np
import pytest

from polyhedral import build, codegen, config, deps, polybench, scheduler, timetile

OURS = config.preset("cpu-contiguity")
SMALL_TILES = replace(OURS, time_tile=(3, 5), min_parallel_work=0)  # several ragged tiles on small sizes
# sizes that are not multiples of the tile sizes, in every dimension
ODD = {"jacobi-2d": dict(T=11, N=23), "heat-3d": dict(T=7, N=13), "fdtd-2d": dict(T=9, NX=17, NY=21)}


def _tiled(res) -> bool:
    return any("time tiled" in n for n in res.notes)


@pytest.fixture
def tiny_l2(monkeypatch):
    monkeypatch.setattr(timetile, "l2_bytes", lambda: 512)


@pytest.mark.parametrize("name", sorted(ODD))
@pytest.mark.parametrize("threads", [1, 2])
def test_time_tiled_stencils_are_legal_and_match_numpy(name, threads, tiny_l2, tmp_path, monkeypatch):
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path))
    scop, b = polybench.SCOPS[name], ODD[name]
    res = scheduler.schedule(scop, b, SMALL_TILES)
    assert _tiled(res), res.notes
    deps.check(res.dep, res.schedule, name)
    assert "#pragma omp simd" in codegen.function(scop, b, res, "k")
    (k,) = build.compile_scops([(scop, b, res, "k")])
    x = polybench.inputs(scop, b, seed=3)
    got = {a.name: x[a.name].copy() for a in scop.arrays}
    k.set_threads(threads)
    k(got, x)
    for arr, want in polybench.reference(name, x, b).items():
        np.testing.assert_allclose(got[arr], want, rtol=1e-12, atol=1e-12, err_msg=f"{name}: {arr}")


def test_the_wavefront_runs_the_space_tiles_in_parallel(tiny_l2):
    """Dimension 0 (time tile + first space tile) carries the dependences between tiles; dimension 1 (the
    first space tile) carries none, so it is the loop that runs on threads."""
    scop, b = polybench.SCOPS["jacobi-2d"], ODD["jacobi-2d"]
    res = scheduler.schedule(scop, b, SMALL_TILES)
    assert 0 not in res.parallel and 1 in res.parallel
    assert "msgx_parallel(" in codegen.function(scop, b, res, "k")


def test_rows_along_the_stride_1_iterator_go_innermost(tiny_l2):
    """fdtd-2d's proximity rows come as (t, t+j, t+i); the point loops must end with the row along j,
    the iterator each statement walks with stride 1."""
    scop, b = polybench.SCOPS["fdtd-2d"], ODD["fdtd-2d"]
    res = scheduler.schedule(scop, b, SMALL_TILES)
    maps = {}
    res.schedule.foreach_map(lambda m: maps.__setitem__(m.get_tuple_name(isl.dim_type.in_), m))
    s1 = maps["S1"]  # S1[t, i, j]
    n = s1.dim(isl.dim_type.out)
    step = isl.Map("{ S1[t, i, j] -> S1[t, i, j + 1] }").apply_domain(s1).apply_range(s1).deltas()
    outer_equal = isl.Set(f"{{ [{', '.join(f'v{k}' for k in range(n))}] : "
                          f"{' and '.join(f'v{k} = 0' for k in range(n - 1))} }}")
    inner = step.intersect(outer_equal)  # the neighbour along j in the same innermost loop
    assert not inner.is_empty() and inner.is_equal(inner.fix_val(isl.dim_type.set, n - 1, 1))


def test_switches_and_gates(tiny_l2):
    """time_tile=() turns it off; nests of fewer than three rows (jacobi-1d) and schedules whose outer
    loop is parallel (gemm) are left alone."""
    jac = polybench.SCOPS["jacobi-2d"]
    off = scheduler.schedule(jac, ODD["jacobi-2d"], replace(SMALL_TILES, time_tile=()))
    assert not _tiled(off) and not off.notes
    one_d = polybench.SCOPS["jacobi-1d"]
    assert not _tiled(scheduler.schedule(one_d, dict(T=9, N=40), SMALL_TILES))
    gemm = polybench.SCOPS["gemm"]
    assert not _tiled(scheduler.schedule(gemm, dict(NI=20, NJ=21, NK=22), SMALL_TILES))


def test_arrays_that_fit_twice_l2_stay_untiled():
    scop = polybench.SCOPS["jacobi-2d"]
    b = dict(T=10, N=30)  # 14 KiB: far below any L2
    assert not _tiled(scheduler.schedule(scop, b, OURS))
    assert timetile.footprint(scop, b) == 2 * 30 * 30 * 8


def test_bad_time_tile_config():
    with pytest.raises(config.ConfigError, match="time_tile"):
        replace(OURS, time_tile=(16,))
    with pytest.raises(config.ConfigError, match="time_tile"):
        replace(OURS, time_tile=(16, 1))
    assert config.from_dict({"name": "x", "time_tile": [8, 16]}).time_tile == (8, 16)
