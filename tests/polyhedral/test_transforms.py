"""The cpu-contiguity preset's code transformations: register tiling of reduction nests (regtile.py) and the
inner-parallel schedule for latency-bound recurrences. Each is checked against numpy (ragged and triangular
edges included) and against a config that turns it off."""
from dataclasses import replace

import numpy as np
import pytest

from polyhedral import build, codegen, config, deps, polybench, regtile, scheduler
from polyhedral.stmt import Array, Scop, Statement

OURS = config.preset("cpu-contiguity")
OFF = replace(OURS, name="no-register-tile", register_tile=())


def _run(scop, b, cfg, tmp_path, monkeypatch, threads=1, seed=5):
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path))
    res = scheduler.schedule(scop, b, cfg)
    (k,) = build.compile_scops([(scop, b, res, "k")])
    x = polybench.inputs(scop, b, seed=seed)
    arrays = {a.name: x[a.name].copy() for a in scop.arrays}
    k.set_threads(threads)
    k(arrays, x)
    return res, arrays, x


# sizes chosen so every blocked nest has full blocks and ragged rows/columns (not multiples of 4 or 12)
ODD = {"gemm": dict(NI=23, NJ=37, NK=19), "syrk": dict(M=27, N=33), "syr2k": dict(M=13, N=30),
       "covariance": dict(M=29, N=31), "doitgen": dict(NQ=5, NR=6, NP=53),
       "2mm": dict(NI=9, NJ=27, NK=14, NL=26)}


@pytest.mark.parametrize("name", sorted(ODD))
@pytest.mark.parametrize("threads", [1, 2])
def test_register_tiled_kernels_match_numpy(name, threads, tmp_path, monkeypatch):
    scop, b = polybench.SCOPS[name], ODD[name]
    res, got, x = _run(scop, b, replace(OURS, min_parallel_work=0), tmp_path, monkeypatch, threads)
    assert "msgx_acc0_0" in codegen.function(scop, b, res, "k"), "no register block was generated"
    for arr, want in polybench.reference(name, x, b).items():
        np.testing.assert_allclose(got[arr], want, rtol=1e-12, atol=1e-12, err_msg=f"{name}: {arr}")


def test_both_register_tile_flavours_and_the_switch_off():
    """gemm blocks columns (j is stride-1 in C and B: vector accumulators, k outermost in the block); syrk
    blocks dot products (k is stride-1 in both reads of A); register_tile=() leaves the loops alone."""
    gemm, syrk = polybench.SCOPS["gemm"], polybench.SCOPS["syrk"]
    g = codegen.function(gemm, ODD["gemm"], scheduler.schedule(gemm, ODD["gemm"], OURS), "k")
    s = codegen.function(syrk, ODD["syrk"], scheduler.schedule(syrk, ODD["syrk"], OURS), "k")
    assert "msgx_st_msgx_wd(&C" in g and "msgx_hsum_msgx_wd(msgx_acc" not in g
    assert "msgx_hsum_msgx_wd(msgx_acc" in s
    for scop in (gemm, syrk):
        b = ODD[scop.name]
        assert "msgx_acc" not in codegen.function(scop, b, scheduler.schedule(scop, b, OFF), "k")


def test_factors_without_the_reduction_iterator_leave_the_sum():
    """sum_k alpha A[i][k] B[k][j] = alpha sum_k A[i][k] B[k][j]: gemm's blocks add A B in the k loop and
    scale once at the store; sums and quotients, or products whose every factor uses k, stay whole."""
    assert regtile.split_invariant("(alpha * A[i][k]) * (B[k][j])", "k") == ("alpha", "A[i][k] * (B[k][j])")
    assert regtile.split_invariant("A[i][k] * x[j] * 2.0", "k") == ("x[j] * 2.0", "A[i][k]")
    for whole in ("alpha * A[i][k] + B[k][j]", "alpha * A[i][k] / B[k][j]", "A[i][k] * B[k][j]",
                  "(a + k) * (b + k)", "alpha * beta"):
        assert regtile.split_invariant(whole, "k") == ("", whole), whole
    gemm = polybench.SCOPS["gemm"]
    text = codegen.function(gemm, ODD["gemm"], scheduler.schedule(gemm, ODD["gemm"], OURS), "k")
    loop = text[text.index("msgx_acc0_0 = msgx_acc0_0 +"):].split(";")[0]
    assert "alpha" not in loop and "+ (alpha) * msgx_acc0_0)" in text, loop


def test_register_tiling_declines_what_it_cannot_block():
    """A reduction whose operand uses the column iterator with a stride (not stride 1 in any loop), and a
    body with a call, stay as scheduled."""
    arrays = (Array("A", ("N", "N"), "in"), Array("B", ("N", "N"), "in"), Array("C", ("N", "N"), "inout"))
    strided = Scop("strided", ("N",), arrays, (Statement(
        "S0", ("i", "j", "k"), "0 <= i < N and 0 <= j < N and 0 <= k < N",
        "C[i][j] += A[2 * k][j] * B[j][k]", (0, "i", 0, "j", 0, "k", 0)),))
    call = Scop("call", ("N",), arrays, (Statement(
        "S0", ("i", "j", "k"), "0 <= i < N and 0 <= j < N and 0 <= k < N",
        "C[i][j] += exp(A[i][k]) * B[k][j]", (0, "i", 0, "j", 0, "k", 0)),))
    for scop, n in ((strided, 8), (call, 16)):
        b = {"N": n}
        assert "msgx_acc" not in codegen.function(scop, b, scheduler.schedule(scop, b, OURS), "k"), scop.name


def test_bad_register_tile_config():
    with pytest.raises(config.ConfigError, match="register_tile"):
        replace(OURS, register_tile=(4,))
    assert config.from_dict({"name": "x", "register_tile": [2, 2]}).register_tile == (2, 2)


def test_seidel_gets_a_legal_schedule_with_free_innermost_loops(tmp_path, monkeypatch):
    """seidel-2d's textual order carries A[i][j-1] -> A[i][j] on the innermost loop (one division latency per
    point); cpu-contiguity takes rows that leave it free, and the result still matches numpy."""
    scop = polybench.SCOPS["seidel-2d"]
    b = scop.sizes["mini"]
    res, got, x = _run(scop, b, OURS, tmp_path, monkeypatch)
    assert scheduler._recurrences(scop, res) == [] and any("Feautrier" in n for n in res.notes)
    deps.check(res.dep, res.schedule, "seidel")
    np.testing.assert_allclose(got["A"], polybench.reference("seidel-2d", x, b)["A"], rtol=1e-12)
    off = scheduler.schedule(scop, b, replace(OURS, inner_parallel=False))
    assert scheduler._recurrences(scop, off) == ["S0"] and not off.notes


def test_vector_widths_match_the_prelude():
    """Single-row blocks (doitgen) use VECTOR_BYTES-wide vectors, blocks of rows the wide ones: WIDE_BYTES
    where the compiler targets AVX-512, else VECTOR_BYTES; the emitted lane counts follow MSGX_WIDE."""
    tu = codegen.translation_unit([])
    assert f"vector_size({regtile.VECTOR_BYTES})" in tu and "vector_size(MSGX_WIDE)" in tu
    assert f"#define MSGX_WIDE {regtile.WIDE_BYTES}" in tu and f"#define MSGX_WIDE {regtile.VECTOR_BYTES}" in tu
    doit, gemm = polybench.SCOPS["doitgen"], polybench.SCOPS["gemm"]
    d = codegen.function(doit, ODD["doitgen"], scheduler.schedule(doit, ODD["doitgen"], OURS), "k")
    g = codegen.function(gemm, ODD["gemm"], scheduler.schedule(gemm, ODD["gemm"], OURS), "k")
    assert "msgx_vd msgx_acc" in d and "msgx_wd" not in d
    assert "msgx_wd msgx_acc" in g and "(MSGX_WIDE / 8)" in g


def test_tiles_only_where_a_band_has_reuse(tmp_path, monkeypatch):
    """gemm's band is tiled (A[i][k] is reused along j, B[k][j] along i); a stencil sweep's is not (every
    access uses both i and j), unless tile_needs_reuse is off; the untiled sweep still matches numpy."""
    gemm, jac = polybench.SCOPS["gemm"], polybench.SCOPS["jacobi-2d"]
    plain = replace(OURS, tile_needs_reuse=False)

    def tiled(scop, cfg):
        res = scheduler.schedule(scop, scop.sizes["medium"], cfg)
        return any(r.band >= 0 and r.tile for g in scheduler._groups(res.rows) if len(g) >= 2
                   for r in [res.rows[g[0]]])
    assert tiled(gemm, OURS) and not tiled(jac, OURS) and tiled(jac, plain)
    b = jac.sizes["mini"]
    _, got, x = _run(jac, b, OURS, tmp_path, monkeypatch)
    for arr, want in polybench.reference("jacobi-2d", x, b).items():
        np.testing.assert_allclose(got[arr], want, rtol=1e-12, err_msg=arr)


@pytest.mark.parametrize("name,b", [("gesummv", dict(N=37)), ("bicg", dict(M=29, N=35))])
def test_sums_beside_other_statements_go_to_locals(name, b, tmp_path, monkeypatch):
    """gesummv's two dot products share one loop (both sums in locals, one vector loop); bicg's q[i] sum
    shares its loop with s[j] += r[i]*A[i][j], which carries no dependence on it. Both match numpy."""
    scop = polybench.SCOPS[name]
    res, got, x = _run(scop, b, OURS, tmp_path, monkeypatch)
    src = codegen.function(scop, b, res, "k")
    assert "msgx_acc0 = msgx_acc0 + (" in src and ("msgx_acc1 = msgx_acc1 + (" in src) == (name == "gesummv")
    plain = codegen.function(scop, b, scheduler.schedule(scop, b, config.preset("original")), "k")
    assert "msgx_acc0 = msgx_acc0 + (" not in plain
    for arr, want in polybench.reference(name, x, b).items():
        np.testing.assert_allclose(got[arr], want, rtol=1e-12, err_msg=f"{name}: {arr}")


def test_statements_reading_one_array_stay_fused(tmp_path, monkeypatch):
    """atax: tmp[i] += A[i][j]*x[j] and y[j] += A[i][j]*tmp[i] both read A; no cut separates them for the
    sake of a parallel loop (that would stream A twice), so they share the i loop, as in the source."""
    scop = polybench.SCOPS["atax"]
    b = dict(M=23, N=31)
    res, got, x = _run(scop, b, OURS, tmp_path, monkeypatch)
    cuts = [r.phi for r in res.rows if r.band < 0]
    first_loop = next(k for k, r in enumerate(res.rows) if r.band >= 0)
    assert all(c["S2"][1] == c["S3"][1] for c in cuts[:first_loop]), res.rows
    for arr, want in polybench.reference("atax", x, b).items():
        np.testing.assert_allclose(got[arr], want, rtol=1e-12, err_msg=arr)
