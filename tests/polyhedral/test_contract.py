"""Array contraction (polyhedral/contract.py): a scratch array whose rows belong to one loop's iterations is
kept as one row per thread; one read across rows keeps the whole array. Results are numpy's either way."""
from dataclasses import replace

import islpy as isl
import numpy as np
import pytest

from polyhedral import build, codegen, contract, scheduler, stmt
from polyhedral.backend import CLUSTER_CONFIG
from polyhedral.stmt import Array, Scop, Statement

N = 24
CFG = replace(CLUSTER_CONFIG, min_parallel_work=0)  # threads on the row loop even at this size


def _scop(read: str) -> Scop:
    """T[i][j] = 2 X[i][j] + 1, then Y[i][j] = T[i][j] + `read` (a second element of T)."""
    arrays = (Array("X", (N, N), "in"), Array("T", (N, N), "temp"), Array("Y", (N, N), "out"))
    return Scop("c", (), arrays, (
        Statement("S0", ("i", "j"), f"0 <= i < {N} and 0 <= j < {N}", "T[i][j] = X[i][j] * 2.0f + 1.0f",
                  (0, "i", 0, "j", 0)),
        Statement("S1", ("i", "j"), f"0 <= i < {N} and 0 <= j < {N}", f"Y[i][j] = T[i][j] + {read}",
                  (1, "i", 0, "j", 0))), dtype="float")


READS = {  # second read of T -> (is T contracted, numpy of Y from T)
    "T[i][23 - j]": (True, lambda t: t + t[:, ::-1]),  # same row, reversed
    "T[j][i]": (False, lambda t: t + t.T),  # a column: rows of other iterations
}


def _compile(scop, cache_dir, monkeypatch):
    monkeypatch.setenv("MSGX_CACHE_DIR", str(cache_dir))
    res = scheduler.schedule(scop, {}, CFG)
    text = codegen.function(scop, {}, res, "k")
    (k,) = build.compile_scops([(scop, {}, res, "k")])
    return res, text, k


@pytest.mark.parametrize("read", sorted(READS))
@pytest.mark.parametrize("threads", [1, 2])
def test_row_private_scratch_is_contracted_and_matches_numpy(read, threads, tmp_path, monkeypatch):
    contracted, want = READS[read]
    scop = _scop(read)
    res, text, k = _compile(scop, tmp_path, monkeypatch)
    rows = contract.private_rows(scop, {}, res.schedule, codegen._ast(scop, {}, res))
    assert ("T" in rows) == contracted, (rows, text)
    assert ("float T[1][24]" in text) == contracted, text
    x = np.random.default_rng(3).standard_normal((N, N)).astype(np.float32)
    t = np.full((N, N), np.nan, np.float32)  # a contracted T is never touched
    arrays = {"X": x, "T": t, "Y": np.zeros((N, N), np.float32)}
    k.set_threads(threads)
    k(arrays)
    np.testing.assert_allclose(arrays["Y"], want(x * 2 + 1), rtol=1e-6)
    assert np.isnan(t).all() == contracted


def test_row_lives_in_the_output_row_written_from_it(tmp_path, monkeypatch):
    """Y[i][j] = T[i][j] + T[i][j] reads T only at the element it writes and is Y's only access: T's row is
    Y's row (no stack row, no T), and Y is numpy's. Reading T reversed (the test above) keeps the stack row."""
    scop = _scop("T[i][j]")
    res, text, k = _compile(scop, tmp_path, monkeypatch)
    rows = contract.private_rows(scop, {}, res.schedule, codegen._ast(scop, {}, res))
    assert rows["T"][2] == "Y", rows
    assert "float (*T)[24] = (float (*)[24])&Y[c" in text and "float T[1]" not in text, text
    x = np.random.default_rng(4).standard_normal((N, N)).astype(np.float32)
    for threads in (1, 2):
        arrays = {"X": x, "T": np.full((N, N), np.nan, np.float32), "Y": np.zeros((N, N), np.float32)}
        k.set_threads(threads)
        k(arrays)
        np.testing.assert_allclose(arrays["Y"], 2 * (x * 2 + 1), rtol=1e-6)
        assert np.isnan(arrays["T"]).all()


@pytest.mark.parametrize("first", ["Y", "Z"])
def test_row_lives_only_in_an_output_written_after_its_last_read(first, tmp_path, monkeypatch):
    """T feeds two outputs, Y = 3 T and Z = T + 1, one written after the other in each iteration (the
    schedule is given, both orders: whichever output the search meets first, one case offers it the wrong
    one): a home in the first one written would hand the second its values in place of T's. T lives in the
    one written later, and both outputs are numpy's."""
    arrays = (Array("X", (N, N), "in"), Array("T", (N, N), "temp"), Array("Y", (N, N), "out"),
              Array("Z", (N, N), "out"))
    dom = f"0 <= i < {N} and 0 <= j < {N}"
    scop = Scop("c2", (), arrays, (
        Statement("S0", ("i", "j"), dom, "T[i][j] = X[i][j] * 2.0f + 1.0f", (0, "i", 0, "j", 0)),
        Statement("S1", ("i", "j"), dom, "Y[i][j] = T[i][j] * 3.0f", (0, "i", 1, "j", 0)),
        Statement("S2", ("i", "j"), dom, "Z[i][j] = T[i][j] + 1.0f", (0, "i", 2, "j", 0))), dtype="float")
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path))
    res = scheduler.schedule(scop, {}, CFG)
    pos = {"S1": 1, "S2": 2} if first == "Y" else {"S1": 2, "S2": 1}
    res = replace(res, schedule=isl.UnionMap(
        "{ " + "; ".join(f"{st}[i, j] -> [i, j, {p}]" for st, p in [("S0", 0), *pos.items()]) + " }")
        .intersect_domain(stmt.domain(scop)))
    rows = contract.private_rows(scop, {}, res.schedule, codegen._ast(scop, {}, res))
    assert rows["T"][2] == ("Z" if first == "Y" else "Y"), rows
    (k,) = build.compile_scops([(scop, {}, res, "k")])
    x = np.random.default_rng(5).standard_normal((N, N)).astype(np.float32)
    out = {"X": x, "T": np.zeros((N, N), np.float32), "Y": np.zeros((N, N), np.float32),
           "Z": np.zeros((N, N), np.float32)}
    k(out)
    t = x * 2 + 1
    np.testing.assert_allclose(out["Y"], 3 * t, rtol=1e-6)
    np.testing.assert_allclose(out["Z"], t + 1, rtol=1e-6)


def test_outputs_and_shifted_rows_are_not_contracted(tmp_path, monkeypatch):
    """A row read one iteration later (T[i - 1]) crosses iterations; an `out` array is the caller's."""
    shifted = _scop("T[i][j]")
    shifted = replace(shifted, statements=(shifted.statements[0], replace(
        shifted.statements[1], domain=f"1 <= i < {N} and 0 <= j < {N}", body="Y[i][j] = T[i - 1][j]")))
    res = scheduler.schedule(shifted, {}, CFG)
    assert contract.private_rows(shifted, {}, res.schedule, codegen._ast(shifted, {}, res)) == {}
    as_output = replace(shifted, arrays=(shifted.arrays[0], replace(shifted.arrays[1], role="out"),
                                         shifted.arrays[2]))
    same_row = replace(as_output, statements=_scop("T[i][j]").statements)
    res = scheduler.schedule(same_row, {}, CFG)
    assert contract.private_rows(same_row, {}, res.schedule, codegen._ast(same_row, {}, res)) == {}


def test_config_switch_turns_contraction_off(tmp_path, monkeypatch):
    scop = _scop("T[i][23 - j]")
    res = scheduler.schedule(scop, {}, replace(CFG, contract=False))
    assert "float T[1]" not in codegen.function(scop, {}, res, "k")


def test_polybench_2mm_under_isl_keeps_tmp_as_rows_and_matches_numpy(tmp_path, monkeypatch):
    """isl fuses 2mm's two products along i: tmp's rows belong to i's iterations and are contracted; D (the
    kernel's result; tmp is scratch) is numpy's, on 1 and 2 threads."""
    from polyhedral import config, polybench

    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path))
    scop, b = polybench.SCOPS["2mm"], dict(NI=20, NJ=19, NK=21, NL=22)
    res = scheduler.schedule(scop, b, replace(config.preset("isl"), min_parallel_work=0))
    assert "double tmp[1][19]" in codegen.function(scop, b, res, "k")
    (k,) = build.compile_scops([(scop, b, res, "k")])
    x = polybench.inputs(scop, b, seed=2)
    want = polybench.reference("2mm", x, b)
    assert set(want) == {"D"}
    for threads in (1, 2):
        arrays = {a.name: x[a.name].copy() for a in scop.arrays}
        k.set_threads(threads)
        k(arrays, x)
        np.testing.assert_allclose(arrays["D"], want["D"], rtol=1e-12)
