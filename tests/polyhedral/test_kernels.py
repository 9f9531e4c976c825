"""Generated PolyBench kernels (every preset, one C file per preset) match numpy versions of the equations."""
import numpy as np
import pytest

from polyhedral import build, config, polybench, scheduler

FAST = ("gemm", "atax", "covariance", "jacobi-2d", "seidel-2d", "fdtd-2d")


def _check(names, preset, tmp_path, monkeypatch, threads=1):
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path))
    cfg = preset if isinstance(preset, config.Config) else config.preset(preset)
    items = []
    for n in names:
        scop = polybench.SCOPS[n]
        b = scop.sizes["mini"]
        res = scheduler.schedule(scop, b, cfg)
        items.append((scop, b, res, "k_" + n.replace("-", "_")))
    kernels = build.compile_scops(items)
    for (scop, b, res, _), k in zip(items, kernels):
        x = polybench.inputs(scop, b, seed=3)
        ref = polybench.reference(scop.name, x, b)
        arrays = {a.name: x[a.name].copy() for a in scop.arrays}
        k.set_threads(threads)
        k(arrays, x)
        for name, want in ref.items():
            np.testing.assert_allclose(arrays[name], want, rtol=1e-9, atol=1e-12,
                                       err_msg=f"{scop.name} / {cfg.name}: array {name}")
        assert not np.array_equal(arrays[next(iter(ref))], x[next(iter(ref))]) or scop.name == "covariance"
    return items


@pytest.mark.parametrize("preset", sorted(config.PRESETS))
def test_generated_kernels_match_numpy(preset, tmp_path, monkeypatch):
    _check(FAST, preset, tmp_path, monkeypatch)


def test_kernels_on_the_thread_pool_match_numpy(tmp_path, monkeypatch):
    """Every parallel loop on the pool (no work threshold), 2 and 3 threads: the same results as numpy."""
    from dataclasses import replace

    from polyhedral import codegen
    cfg = replace(config.preset("cpu-contiguity"), name="all-threads", min_parallel_work=0)
    for threads in (2, 3):
        items = _check(polybench.KERNELS, cfg, tmp_path, monkeypatch, threads)
    pooled = [s.name for s, b, r, fn in items if "msgx_parallel(" in codegen.function(s, b, r, fn)]
    assert len(pooled) >= 12, pooled


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(config.PRESETS))
def test_all_polybench_kernels_match_numpy(preset, tmp_path, monkeypatch):
    _check(polybench.KERNELS, preset, tmp_path, monkeypatch)


def test_config_files_and_bad_configs(tmp_path):
    (tmp_path / "c.toml").write_text('name = "mine"\nobjectives = [["contiguity", "sum"], ["proximity"]]\n'
                                     'fusion = "none"\ntile_sizes = [16]\n'
                                     '[[directives]]\nkind = "parallel"\niterator = "i"\n')
    c = config.load(tmp_path / "c.toml")
    assert c.objectives_at(0) == ("contiguity", "sum") and c.objectives_at(5) == ("proximity",)
    assert c.directives[0].kind == "parallel" and c.tile_at(3) == 16
    (tmp_path / "c.json").write_text('{"name": "j", "objectives": [["feautrier"]], "fusion": "max"}')
    assert config.load(tmp_path / "c.json").fusion == "max"
    with pytest.raises(config.ConfigError, match="unknown objective"):
        config.from_dict({"name": "x", "objectives": [["fastest"]]})
    with pytest.raises(config.ConfigError, match="unknown config field"):
        config.from_dict({"name": "x", "tiles": [3]})
    with pytest.raises(config.ConfigError, match="unknown scheduler preset"):
        config.preset("nope")
    scop = polybench.SCOPS["gemm"]
    res = scheduler.schedule(scop, scop.sizes["mini"], c)
    assert res.config.name == "mine"


def test_contiguity_puts_the_stride_one_loop_innermost():
    """gemm: isl keeps the k reduction innermost (B read with stride NJ); cpu-contiguity makes j innermost."""
    scop = polybench.SCOPS["gemm"]
    b = scop.sizes["mini"]
    res = scheduler.schedule(scop, b, config.preset("cpu-contiguity"))
    last = [r.phi["S1"][0] for r in res.rows if r.band >= 0][-1]
    assert last == (0, 1, 0)  # coefficient 1 on j, the last subscript of C[i][j] and B[k][j]


def test_serial_directive_keeps_threads_off_a_loop():
    from dataclasses import replace

    from polyhedral import codegen
    scop = polybench.SCOPS["gemm"]
    b = scop.sizes["medium"]  # big enough for a parallel region to pay off
    free = replace(config.preset("cpu-contiguity"), name="free", tile_sizes=())
    serial = replace(free, name="serial", directives=(config.Directive("serial", "i"),))
    with_threads = codegen.function(scop, b, scheduler.schedule(scop, b, free), "k")
    without = codegen.function(scop, b, scheduler.schedule(scop, b, serial), "k")
    assert "msgx_parallel(" in with_threads and "msgx_parallel(" not in without
