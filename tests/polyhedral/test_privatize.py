"""Array reductions privatised per chunk (privatize.py): which updates qualify, which loops get threads with
copies, and that the results match numpy at several thread counts (chunks of uneven sizes among them)."""
from dataclasses import replace

import numpy as np
import pytest

from polyhedral import build, codegen, config, polybench, privatize, scheduler
from polyhedral.stmt import Array, Scop, Statement

OURS = replace(config.preset("cpu-contiguity"), min_parallel_work=0)
ARRAYS = (Array("A", ("M", "N"), "in"), Array("x", ("N",), "in"), Array("y", ("N",), "inout"),
          Array("t", ("M",), "inout"))


def _scop(update: str, extra: tuple = ()) -> Scop:
    """t[i] = A[i] . x, then `update` (over i, j) into y; `extra` statements join the i loop."""
    return Scop("red", ("M", "N"), ARRAYS, (
        Statement("S0", ("i",), "0 <= i < M", "t[i] = 0.0", (0, "i", 0, 0, 0)),
        Statement("S1", ("i", "j"), "0 <= i < M and 0 <= j < N", "t[i] += A[i][j] * x[j]",
                  (0, "i", 1, "j", 0)),
        Statement("S2", ("i", "j"), "0 <= i < M and 0 <= j < N", update, (0, "i", 2, "j", 0)),
    ) + extra)


@pytest.mark.parametrize("body, target", [
    ("y[j] += A[i][j] * t[i]", "y"), ("y[j] = y[j] + A[i][j] - t[i]", "y"), ("y[j] -= A[i][j]", None),
    ("y[j] = A[i][j] + y[j]", None), ("y[j] += y[j + 1] * A[i][j]", None), ("y[j] = y[j] * A[i][j]", None),
    ("y[j] = y[j] + (A[i][j] > 0 ? 1.0 : 0.0)", None)])
def test_reduction_target_takes_plain_sums_only(body, target):
    st = Statement("S", ("i", "j"), "0 <= i < M and 0 <= j < N", body, (0, "i", 0, "j", 0))
    assert privatize.reduction_target(_scop(body), st) == target


def _compiled(scop, b, tmp_path, monkeypatch):
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path))
    res = scheduler.schedule(scop, b, OURS)
    (k,) = build.compile_scops([(scop, b, res, "k")])
    return codegen.function(scop, b, res, "k"), k


def _run(k, scop, b, threads):
    x = polybench.inputs(scop, b, seed=3)
    arrays = {a.name: x[a.name].copy() for a in scop.arrays}
    k.set_threads(threads)
    k(arrays, x)
    return x, arrays


def test_a_loop_that_accumulates_into_an_array_runs_on_threads_with_copies(tmp_path, monkeypatch):
    scop, b = _scop("y[j] += A[i][j] * t[i]"), dict(M=61, N=37)
    src, k = _compiled(scop, b, tmp_path, monkeypatch)
    assert "msgx_priv" in src and "msgx_parallel(" in src
    for threads in (1, 2, 3):
        x, got = _run(k, scop, b, threads)
        t = x["A"] @ x["x"]
        np.testing.assert_allclose(got["t"], t, rtol=1e-12)
        np.testing.assert_allclose(got["y"], x["y"] + x["A"].T @ t, rtol=1e-12, err_msg=f"{threads} threads")


def test_an_array_the_loop_also_reads_is_not_privatised(tmp_path, monkeypatch):
    """S3 reads y[0] in the same i loop: each iteration must see the sums of the earlier ones."""
    extra = (Statement("S3", ("i",), "0 <= i < M", "t[i] = t[i] * y[0]", (0, "i", 3, 0, 0)),)
    scop, b = _scop("y[j] += A[i][j] * 0.001", extra), dict(M=23, N=19)
    src, k = _compiled(scop, b, tmp_path, monkeypatch)
    assert "msgx_priv" not in src
    x, got = _run(k, scop, b, 2)
    y, t = x["y"].copy(), np.zeros(b["M"])
    for i in range(b["M"]):
        t[i] = x["A"][i] @ x["x"]
        y += x["A"][i] * 0.001
        t[i] *= y[0]
    np.testing.assert_allclose(got["y"], y, rtol=1e-12)
    np.testing.assert_allclose(got["t"], t, rtol=1e-12)


def test_copies_bigger_than_the_budget_are_not_made(tmp_path, monkeypatch):
    monkeypatch.setattr(codegen, "PRIVATE_BYTES_MAX", 8 * 36)
    scop, b = _scop("y[j] += A[i][j] * t[i]"), dict(M=61, N=37)
    res = scheduler.schedule(scop, b, OURS)
    assert "msgx_priv" not in codegen.function(scop, b, res, "k")
    assert "msgx_priv" in codegen.function(scop, dict(M=61, N=36), scheduler.schedule(scop, dict(M=61, N=36),
                                                                                       OURS), "k")


@pytest.mark.parametrize("name", ["atax", "bicg"])
def test_polybench_reductions_over_rows_are_privatised(name, tmp_path, monkeypatch):
    scop, b = polybench.SCOPS[name], dict(M=125, N=118)
    src, k = _compiled(scop, b, tmp_path, monkeypatch)
    assert "msgx_priv" in src
    assert ("msgx_y =" in src) if name == "atax" else ("msgx_s =" in src and "msgx_q =" not in src)
    for threads in (1, 2):
        x, got = _run(k, scop, b, threads)
        for arr, want in polybench.reference(name, x, b).items():
            np.testing.assert_allclose(got[arr], want, rtol=1e-12, atol=1e-12, err_msg=f"{name}.{arr}")
