"""The benchmark harness, the model-zoo helpers and the models suite's error handling (not speed)."""
from __future__ import annotations

import collections
import io
import json
import time

import numpy as np
import onnx
import pytest

from benchmarks import harness, models, zoo
from benchmarks.__main__ import main as bench_main
from benchmarks.harness import ROW_KEYS, RUNNER_KEYS, Case, measure


def _spin(seconds: float):
    """Burn `seconds` of this thread's CPU time: under load it stretches like real work does."""
    def run():
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass
    return run


def _work(n: int):
    return lambda: sum(range(n))


def _fails_after(k: int, exc=RuntimeError):
    calls = {"n": 0}

    def run():
        calls["n"] += 1
        if calls["n"] > k:
            raise exc(f"boom after {k} calls")
    return run


# --- harness ---------------------------------------------------------------------------------------------

def _measure_ratio(case: Case, lo: float, hi: float) -> dict:
    """Measure; on a shared, loaded machine one burst can hit a whole case, so allow one retry."""
    for _ in range(2):
        row = measure(case, warmup=1, rounds=7, min_round_s=0.04)
        if lo < row["ratio"] < hi:
            break
    return row


@pytest.mark.parametrize("ours_s, peer_s, lo, hi", [(2e-3, 1e-3, 1.3, 3.0), (1e-3, 2e-3, 1 / 3, 1 / 1.3)])
def test_ratio_of_spin_runners(ours_s, peer_s, lo, hi):
    row = _measure_ratio(Case("spin", {"ours": _spin(ours_s), "peer": _spin(peer_s)}), lo, hi)
    assert row["error"] is None and row["ours"] == "ours" and row["baseline"] == "peer"
    assert lo < row["ratio"] < hi
    assert (row["runners"]["ours"]["median_s"] > row["runners"]["peer"]["median_s"]) == (ours_s > peer_s)


def test_ratio_of_twice_the_work():
    row = _measure_ratio(Case("work", {"ours": _work(40_000), "peer": _work(20_000)}), 1.3, 3.0)
    assert 1.3 < row["ratio"] < 3.0


def test_rounds_interleave_in_balanced_orders():
    """Each round runs every runner once; over the design's rounds each runner runs right after each other
    runner equally often (what ran before changes a round's time), for even and odd counts."""
    log: list[str] = []
    runners = {n: (lambda n=n: log.append(n)) for n in ("a", "b", "c")}
    row = measure(Case("order", runners), warmup=1, rounds=6, min_round_s=0.0)
    assert log[:3] == ["a", "b", "c"]  # warm-up, then one call per runner per round
    rounds = [log[3 + 3 * i:6 + 3 * i] for i in range(6)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds) and len(log) == 21
    follows = collections.Counter((r[i], r[i + 1]) for r in rounds for i in range(2))
    assert len(follows) == 6 and set(follows.values()) == {2}
    assert row["rounds"] == 6 and all(row["runners"][n]["reps"] == 1 for n in "abc")
    for n in (2, 4, 5):
        orders = harness.balanced_orders(n)
        assert all(sorted(o) == list(range(n)) for o in orders)
        pairs = collections.Counter((o[i], o[i + 1]) for o in orders for i in range(n - 1))
        assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1


def test_references_are_timed_in_the_rounds_but_are_not_peers():
    log: list[str] = []
    runners = {n: (lambda n=n: log.append(n)) for n in ("ours", "yardstick", "peer")}
    row = measure(Case("ref", runners, references=("yardstick",)), warmup=1, rounds=3, min_round_s=0.0)
    assert log.count("yardstick") == 4 and "median_s" in row["runners"]["yardstick"]  # warm-up + 3 rounds
    assert set(row["ratios"]) == {"peer"} and row["baseline"] == "peer"
    table = harness.markdown_table([row])
    assert "yardstick ms (IQR)" in table and "ours/yardstick" not in table and "ours/peer" in table


def test_rows_are_json_lines_with_documented_keys():
    stream = io.StringIO()
    case = Case("keys", {"ours": _spin(5e-4), "p1": _spin(5e-4), "p2": _spin(1e-3)}, meta={"k": 1})
    harness.emit(measure(case, warmup=1, rounds=3, min_round_s=0.005, threads=2, suite="t"), stream)
    harness.emit(harness.error_row("bad", "ValueError: no", ours="ours"), stream)
    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert set(ROW_KEYS) <= set(row)
    ok = rows[0]
    assert ok["meta"] == {"k": 1} and ok["threads"] == 2 and ok["suite"] == "t" and ok["env"]["cpu_count"]
    for name in ("ours", "p1", "p2"):
        stats = ok["runners"][name]
        assert set(RUNNER_KEYS) <= set(stats)
        assert stats["min_s"] <= stats["q1_s"] <= stats["median_s"] <= stats["q3_s"] <= stats["max_s"]
    assert ok["ratios"]["p2"] == pytest.approx(ok["runners"]["ours"]["median_s"] / ok["runners"]["p2"]["median_s"])
    assert ok["ratio"] == ok["ratios"]["p1"]
    assert rows[1]["error"] == "ValueError: no" and rows[1]["runners"] == {}


def test_failing_peer_makes_error_row_and_ours_still_timed():
    row = measure(Case("peer-fails", {"ours": _spin(1e-4), "peer": _fails_after(0)}), warmup=1, rounds=3,
                  min_round_s=0.001)
    assert "peer" in row["error"] and "boom" in row["error"]
    assert "median_s" in row["runners"]["ours"] and row["runners"]["peer"] == {"error": row["errors"]["peer"]}
    assert row["ratios"] == {} and row["ratio"] is None


def test_failing_ours_stops_the_case():
    from framework.errors import MsgxError

    peer_calls = []
    row = measure(Case("ours-fails", {"ours": _fails_after(0, MsgxError), "peer": lambda: peer_calls.append(1)}))
    assert row["error"].startswith("ours: MsgxError: boom") and row["rounds"] == 0
    assert peer_calls == [] and row["ratio"] is None


def test_runner_failing_mid_rounds_is_reported():
    row = measure(Case("mid", {"ours": _spin(1e-4), "peer": _fails_after(3)}), warmup=1, rounds=6,
                  min_round_s=0.0)
    assert "boom after 3" in row["errors"]["peer"] and "median_s" in row["runners"]["ours"]


def test_case_budget_caps_rounds():
    row = measure(Case("slow", {"ours": _spin(0.02), "peer": _spin(0.02)}), warmup=1, rounds=50,
                  min_round_s=0.0, max_case_s=0.1, min_rounds=3)
    assert row["rounds"] == 3


def test_run_cases_turns_broken_builders_into_rows_and_tables():
    def broken():
        raise KeyError("no such model")

    stream = io.StringIO()
    items = [Case("fine", {"ours": _spin(1e-4), "peer": _spin(2e-4)}), ("broken", broken),
             ("prebuilt", lambda: harness.error_row("prebuilt", "MsgxError: unsupported op", ours="ours"))]
    rows = harness.run_cases(items, stream=stream, warmup=1, rounds=3, min_round_s=0.001)
    assert [r["case"] for r in rows] == ["fine", "broken", "prebuilt"]
    assert [json.loads(x)["case"] for x in stream.getvalue().splitlines()] == ["fine", "broken", "prebuilt"]
    assert rows[0]["error"] is None and "KeyError" in rows[1]["error"]
    table = harness.markdown_table(rows, {"extra": lambda r: "x"}).splitlines()
    assert len(table) == 2 + 3 and "ours/peer" in table[0] and "extra" in table[0]
    assert "unsupported op" in table[4] and table[2].count("|") == table[0].count("|")


# --- model-zoo helpers -----------------------------------------------------------------------------------

def test_zoo_models_are_the_nine_architectures():
    names = zoo.zoo_models()
    assert len(names) == 9 and {"resnet50", "squeezenet", "vgg19"} <= set(names)
    assert all(p.is_file() for p in names.values())


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet", "inception_v1"])
def test_randomize_weights_makes_random_valid_models(name):
    original = onnx.load(zoo.zoo_models()[name])
    before = original.SerializeToString()
    m = zoo.randomize_weights(original, seed=0)
    assert original.SerializeToString() == before  # a copy, the input is untouched
    onnx.checker.check_model(m)
    assert not any(n.op_type == "ConstantOfShape" for n in m.graph.node)
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    floats = {k: a for k, a in arrays.items() if a.dtype.kind == "f"}
    assert floats and all(a.size < 2 or np.std(a) > 0 for a in floats.values())
    for node in m.graph.node:
        if node.op_type == "BatchNormalization":
            assert (arrays[node.input[4]] > 0).all()
    old_ints = {t.name: onnx.numpy_helper.to_array(t) for t in original.graph.initializer if t.data_type == 7}
    for k, a in arrays.items():
        if a.dtype.kind == "i":
            np.testing.assert_array_equal(a, old_ints[k])
    again = {t.name: onnx.numpy_helper.to_array(t) for t in zoo.randomize_weights(original, 0).graph.initializer}
    other = {t.name: onnx.numpy_helper.to_array(t) for t in zoo.randomize_weights(original, 1).graph.initializer}
    assert all(np.array_equal(a, again[k]) for k, a in arrays.items())
    assert any(a.size > 1 and not np.array_equal(a, other[k]) for k, a in floats.items())


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet"])
def test_randomized_zoo_model_gives_a_useful_softmax(name):
    from benchmarks.peers import ort_session

    m = zoo.randomize_weights(onnx.load(zoo.zoo_models()[name]), seed=0)
    feed = zoo.random_feed(m, seed=0)
    assert list(feed) == [i.name for i in ort_session(m, 1).get_inputs()]
    (probs,) = ort_session(m, 1).run(None, feed)
    assert np.isfinite(probs).all() and probs.sum() == pytest.approx(1.0, rel=1e-4)
    assert probs.max() < 0.9  # not one-hot: the output comparison would otherwise see nothing


def test_random_feed_binds_symbolic_dims():
    import onnx_models

    model = onnx_models.build("mlp")
    (x,) = zoo.random_feed(model, seed=3, dims={"batch": 5}).values()
    assert x.shape[0] == 5 and x.dtype == np.float32
    (y,) = zoo.random_feed(model, seed=3).values()
    assert y.shape[0] == 1


# --- models suite ----------------------------------------------------------------------------------------

def test_compare_scales_by_the_reference():
    ref = [np.array([1000.0, 2000.0], np.float32)]
    assert models.compare([ref[0] + 0.1], ref)["ok"]  # 0.1 / 2000 is far below atol after scaling
    bad = models.compare([ref[0] * 1.01], ref)
    assert not bad["ok"] and bad["max_scaled_err"] == pytest.approx(0.01, rel=1e-3)
    assert not models.compare([ref[0][:1]], ref)["ok"]


class _OrtAsOurs:
    """A stand-in for our session, backed by onnxruntime, optionally returning wrong outputs."""

    def __init__(self, model, skew=0.0):
        from benchmarks.peers import ort_session

        self.sess, self.skew, self.stats = ort_session(model, 1), skew, {"nodes": 1}

    def run(self, names, feed):
        return [o + self.skew for o in self.sess.run(names, feed)]


def _run_suite(tmp_path, factory, monkeypatch):
    monkeypatch.setattr(models, "msgx_session", factory)
    out, md = tmp_path / "r.jsonl", tmp_path / "t.md"
    rc = bench_main(["models", "--models", "mlp", "--quick", "--threads", "1", "--out", str(out), "--md", str(md)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rc == 0 and [r["case"] for r in rows] == ["mlp b1", "mlp b64"]
    assert all(set(ROW_KEYS) <= set(r) for r in rows) and md.read_text().count("\n") == 4
    return rows


def test_models_suite_times_a_matching_model(tmp_path, monkeypatch):
    rows = _run_suite(tmp_path, lambda m, mode, jit: _OrtAsOurs(m), monkeypatch)
    for row in rows:
        assert row["error"] is None and row["ratio"] > 0 and row["threads"] == 1
        assert set(row["meta"]["compile_s"]) == {"msgx", "onnxruntime"} and row["meta"]["max_abs_err"] == 0


def test_models_suite_reports_mismatch_and_errors_as_rows(tmp_path, monkeypatch):
    from framework.errors import UnsupportedOpError

    rows = _run_suite(tmp_path, lambda m, mode, jit: _OrtAsOurs(m, skew=1.0), monkeypatch)
    assert all(r["error"].startswith("mismatch") and r["meta"]["error_kind"] == "mismatch" for r in rows)

    def unsupported(m, mode, jit):
        raise UnsupportedOpError("Gemm", opset=17, node="fc1")

    rows = _run_suite(tmp_path, unsupported, monkeypatch)
    assert all("unsupported op" in r["error"] and r["meta"]["error_kind"] == "MsgxError" for r in rows)
    assert all("onnxruntime" in r["meta"]["compile_s"] for r in rows)

    def buggy(m, mode, jit):
        raise ZeroDivisionError("oops")

    rows = _run_suite(tmp_path, buggy, monkeypatch)
    assert all("crashed" in r["error"] and r["meta"]["error_kind"] == "unexpected" for r in rows)


def test_models_cli_rejects_unknown_models_and_lists_cases(capsys):
    assert bench_main(["models", "--models", "nosuch"]) == 2
    assert bench_main(["models", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "resnet50" in listed and "tiny_gpt b1 s16" in listed
    assert bench_main(["nosuite"]) == 2
