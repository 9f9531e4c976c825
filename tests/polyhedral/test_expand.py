"""Array expansion (expand.py): which scratch arrays are expanded and along which loops, when it is wanted
(a shared operand beyond L1), when it is not legal (a value crosses the loops), and that the expanded
kernels compute what numpy does on 1 and 2 threads, with the caller's array of the old shape or none."""
import numpy as np
import pytest

from polyhedral import build, config, expand, polybench, scheduler
from polyhedral.stmt import Array, Scop, Statement

DOITGEN = polybench.SCOPS["doitgen"]


@pytest.fixture
def l1(monkeypatch):
    def set_l1(nbytes):
        monkeypatch.setattr(expand, "l1d_bytes", lambda: nbytes)
    set_l1(48 << 10)
    return set_l1


def test_doitgen_sum_is_expanded_along_r_and_q_where_c4_exceeds_l1(l1):
    scop, notes = expand.expanded(DOITGEN, DOITGEN.sizes["large"])   # C4: 205 KB
    assert notes == ["expanded sum along r, q (25.6 MiB)"]
    assert scop.array("sum").shape == (150, 140, "NP")
    assert [st.body for st in scop.statements] == [
        "sum[r][q][p] = 0.0", "sum[r][q][p] += A[r][q][s] * C4[s][p]", "A[r][q][p] = sum[r][q][p]"]
    assert expand.expanded(DOITGEN, DOITGEN.sizes["medium"]) is None   # C4: 28.8 KB, in L1
    l1(16 << 10)
    assert expand.expanded(DOITGEN, DOITGEN.sizes["medium"]) is not None


def test_the_size_cap_and_arrays_with_no_loops_to_expand_along(l1, monkeypatch):
    monkeypatch.setattr(expand, "EXPAND_MAX_BYTES", 1 << 20)
    assert expand.expanded(DOITGEN, DOITGEN.sizes["large"]) is None
    l1(0)
    for name in ("2mm", "atax"):   # tmp: its statements share no loop / its subscripts use the shared one
        scop = polybench.SCOPS[name]
        assert expand.expanded(scop, scop.sizes["mini"]) is None, name


def _carried() -> Scop:
    """doitgen's shape, but each (r, q) starts from half the previous sum: a value crosses the loops."""
    rq = "0 <= r < NR and 0 <= q < NQ and 0 <= p < NP"
    return Scop("carried", ("NQ", "NR", "NP"), (Array("A", ("NR", "NQ", "NP"), "inout"),
                                                Array("C4", ("NP", "NP"), "in"), Array("sum", ("NP",), "temp")), (
        Statement("S0", ("r", "q", "p"), rq, "sum[p] = 0.5 * sum[p]", (0, "r", 0, "q", 0, "p", 0, 0, 0)),
        Statement("S1", ("r", "q", "p", "s"), f"{rq} and 0 <= s < NP", "sum[p] += A[r][q][s] * C4[s][p]",
                  (0, "r", 0, "q", 0, "p", 1, "s", 0)),
        Statement("S2", ("r", "q", "p"), rq, "A[r][q][p] = sum[p]", (0, "r", 0, "q", 1, "p", 0, 0, 0))))


def test_a_value_carried_across_the_loops_prevents_expansion(l1):
    l1(0)
    assert expand.expanded(_carried(), dict(NQ=4, NR=3, NP=5)) is None
    assert expand.expanded(DOITGEN, dict(NQ=4, NR=3, NP=5)) is not None   # the same shape, re-initialised


@pytest.mark.parametrize("threads", [1, 2])
def test_expanded_doitgen_matches_numpy(l1, tmp_path, monkeypatch, threads):
    l1(0)
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path))
    b = DOITGEN.sizes["mini"]
    res = scheduler.schedule(DOITGEN, b, config.preset("cpu-contiguity"))
    assert res.scop is not None and res.scop.array("sum").shape == (10, 8, "NP")
    assert any(n.startswith("expanded sum") for n in res.notes)
    (k,) = build.compile_scops([(DOITGEN, b, res, "k")])
    k.set_threads(threads)
    x = polybench.inputs(DOITGEN, b, seed=4)
    want = polybench.reference("doitgen", x, b)
    for passed in ("old shape", "none"):   # the kernel's own scratch array either way
        arrays = {a.name: x[a.name].copy() for a in DOITGEN.arrays if passed == "old shape" or a.role != "temp"}
        k(arrays, x)
        np.testing.assert_allclose(arrays["A"], want["A"], rtol=1e-12, err_msg=passed)
