"""Profiler: Chrome trace-event JSON of kernel runs, compile events and passes; `msgx run --profile`,
`msgx profile`."""
import json
import math
import statistics
import time

import pytest

import onnx_models
from framework import profiler
from framework.cli import main
from framework.compile import passes_for
from framework.session import InferenceSession

PHASES = {"X", "B", "E", "i", "I", "M", "C"}


def check_trace_event_format(data) -> list[dict]:
    """The JSON object form of the trace-event format: what Perfetto and chrome://tracing read."""
    assert isinstance(data, dict) and isinstance(data["traceEvents"], list)
    assert data.get("displayTimeUnit", "ms") in ("ms", "ns")
    for e in data["traceEvents"]:
        assert isinstance(e["name"], str) and e["ph"] in PHASES, e
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int), e
        assert isinstance(e.get("args", {}), dict), e
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name") and isinstance(e["args"]["name"], str), e
            continue
        assert isinstance(e["ts"], (int, float)) and math.isfinite(e["ts"]) and e["ts"] >= 0, e
        assert isinstance(e["cat"], str) and e["cat"], e
        if e["ph"] == "X":
            assert isinstance(e["dur"], (int, float)) and math.isfinite(e["dur"]) and e["dur"] >= 0, e
    return data["traceEvents"]


def _strict_load(path):
    def bad(c):
        raise ValueError(f"non-standard JSON constant {c}")
    with open(path) as f:
        return json.loads(f.read(), parse_constant=bad)


@pytest.fixture(scope="module")
def gpt():
    return onnx_models.build("tiny_gpt")


def test_o1_trace_is_valid_and_complete(gpt, tmp_path):
    path = tmp_path / "trace.json"
    sess = InferenceSession(gpt, jit_level="O1", profile=str(path))
    feed = onnx_models.example_inputs("tiny_gpt", {"batch": 2, "seq": 8})
    sess.run(None, feed)
    sess.run(None, feed)
    assert sess.end_profiling() == str(path)
    events = check_trace_event_format(_strict_load(path))
    kernels = [e for e in events if e.get("cat") == "kernel"]
    steps, skipped = sess._executor.steps, sess._executor.shape_steps
    # every step in the first run; the second, like any run of a shape seen before, skips the steps that
    # compute from input shapes alone (their results are cached per shape)
    assert skipped and [e["args"]["run"] for e in kernels].count(0) == len(steps)
    assert [e["args"]["run"] for e in kernels].count(1) == len(steps) - len(skipped)
    fused = [st for st in steps if st.node.op == "Fused"]
    assert fused and {e["args"]["backend"] for e in kernels} == {st.backend for st in steps}
    for st in fused:  # each cluster: op, backend, body size
        ev = next(e for e in kernels if e["name"] == st.node.name)
        assert (ev["args"]["op"], ev["args"]["backend"]) == ("msgx::Fused", st.backend)
        assert ev["args"]["fused_ops"] == len(st.node.attrs["body"].nodes)
    # the last MatMul: ids [2, 8] -> x [2, 8, 64] @ w [64, 256]
    logits = next(e for e in kernels if e["name"] == "logits")
    assert logits["args"]["input_shapes"] == [[2, 8, 64], [64, 256]]
    assert logits["args"]["output_shapes"] == [[2, 8, 256]]
    assert logits["args"]["bytes"] == 4 * (2 * 8 * 64 + 64 * 256 + 2 * 8 * 256)
    passes = [e["name"] for e in events if e.get("cat") == "pass"]
    assert passes == [name for name, _ in passes_for("O1")]
    encodes = [e for e in events if e.get("cat") == "encode"]
    dvm = [st for st in steps if st.backend == "dvm"]
    assert len(encodes) == len(dvm)  # one encode per DVM kernel, in the first run only (cached after)
    first_run_end = max(e["ts"] + e["dur"] for e in events
                        if e.get("cat") == "session" and e["args"]["run"] == 0)
    assert all(e["ts"] < first_run_end for e in encodes)
    assert sum(e.get("cat") == "compile" for e in events) == len(steps)


def test_kernel_times_sum_to_the_measured_run_time(gpt):
    """Must-show 1: kernel durations cover >= 90% of the wall time of sess.run (median over runs)."""
    sess = InferenceSession(gpt, jit_level="O1", profile=True)
    feed = onnx_models.example_inputs("tiny_gpt", {"batch": 4, "seq": 64})
    sess.run(None, feed)
    prof, ratios = sess._profiler, []
    for _ in range(15):
        first = prof.runs
        t0 = time.perf_counter()
        sess.run(None, feed)
        wall = time.perf_counter() - t0
        (spans,) = prof.kernel_spans(first)
        ratios.append(sum(t1 - t0 for t0, t1 in spans) / wall)
    assert 0.9 <= statistics.median(ratios) <= 1.0, ratios


def test_pynative_lazy_groups_are_traced(gpt, tmp_path):
    sess = InferenceSession(gpt, mode="pynative", jit_level="O1", profile=str(tmp_path / "t.json"))
    sess.run(None, onnx_models.example_inputs("tiny_gpt", {"batch": 1, "seq": 4}))
    events = check_trace_event_format(_strict_load(sess.end_profiling()))
    groups = [e for e in events if e.get("cat") == "kernel" and e["args"]["op"] == "msgx::Fused"]
    assert len(groups) == sess.stats["lazy_fusion"]["groups"]
    assert all(e["name"].startswith("lazy_") for e in groups)
    assert any(e["args"]["backend"] == "dvm" for e in groups)
    from dvm_runtime.backend import DvmBackend
    nodes = {n.name: n for n in sess._executor.group_backends}
    for e in groups:  # a group on the reference is one the DVM declines
        assert e["args"]["backend"] == ("dvm" if DvmBackend().supports(nodes[e["name"]]) else "numpy")
    singles = [e for e in events if e.get("cat") == "kernel" and e["args"]["op"] != "msgx::Fused"]
    assert len(singles) + sum(e["args"]["fused_ops"] for e in groups) == len(sess.graph.nodes)  # each op once


def test_profiling_off_by_default_and_stops_at_end(gpt, tmp_path):
    sess = InferenceSession(gpt)
    assert sess.end_profiling() is None
    sess = InferenceSession(gpt, profile=str(tmp_path / "a.json"))
    feed = onnx_models.example_inputs("tiny_gpt")
    sess.run(None, feed)
    sess.end_profiling()
    n = len(_strict_load(tmp_path / "a.json")["traceEvents"])
    sess.run(None, feed)  # after end_profiling: nothing recorded, nothing rewritten
    assert len(_strict_load(tmp_path / "a.json")["traceEvents"]) == n


def test_compile_event_records_only_when_active():
    profiler.compile_event("c compile k", "c_compile", 0.001)  # no profiler: a no-op
    prof = profiler.Profiler()
    with profiler.activated(prof):
        profiler.compile_event("c compile k", "c_compile", 0.002, cc="gcc")
    profiler.compile_event("agent k", "agent", 0.5)
    got = [(e["name"], e["cat"], e["args"]) for e in prof.events]
    assert got == [("c compile k", "c_compile", {"cc": "gcc"})]
    assert prof.events[0]["dur"] == pytest.approx(2000.0)


def test_summary_shares_and_top_kernels():
    def ev(name, op, backend, cls, dur):
        return {"name": name, "cat": "kernel", "ph": "X", "ts": 0, "dur": dur, "pid": 1, "tid": 1,
                "args": {"op": op, "backend": backend, "class": cls}}
    events = [ev("fused_0", "msgx::Fused", "dvm", "fused", 60.0),
              ev("fused_0", "msgx::Fused", "dvm", "fused", 40.0),
              ev("fused_1", "msgx::Fused", "numpy", "fallback", 50.0),
              ev("mm", "MatMul", "numpy", "reference", 50.0),
              {"name": "encode fused_0", "cat": "encode", "ph": "X", "ts": 0, "dur": 999.0, "pid": 1,
               "tid": 1}]
    s = profiler.summarize(events)
    assert s["total_us"] == 200.0
    assert s["share"] == {"fused": 0.5, "fallback": 0.25, "reference": 0.25}
    assert [(k["name"], k["calls"], k["total_us"]) for k in s["kernels"]][0] == ("fused_0", 2, 100.0)
    text = profiler.format_summary(s)
    assert "fused kernels 50.0%" in text and "reference fallbacks (clusters on numpy) 25.0%" in text


def test_kernel_class():
    assert profiler.kernel_class("msgx::Fused", "dvm") == "fused"
    assert profiler.kernel_class("msgx::Fused", "numpy") == "fallback"
    assert profiler.kernel_class("msgx::Fused", "dvm", {"k"}, "k") == "fallback"  # a shape the DVM declined
    assert profiler.kernel_class("MatMul", "numpy") == "reference"


def test_cli_run_profile_and_profile_command(tmp_path, capsys):
    path = tmp_path / "run.json"
    assert main(["run", "--jit-level", "O1", "--repeat", "3", "--profile", str(path)]) == 0
    assert f"trace written to {path}" in capsys.readouterr().out
    events = check_trace_event_format(_strict_load(path))
    assert sum(e.get("cat") == "session" for e in events) == 3
    assert main(["profile", "--model", "tiny_gpt", "--jit-level", "O1", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "fused_" in out and "fused kernels" in out and "reference fallbacks" in out


def test_cli_profile_a_model_file(tmp_path, capsys):
    assert main(["models", "export", str(tmp_path)]) == 0
    capsys.readouterr()
    trace = tmp_path / "mlp.json"
    assert main(["profile", str(tmp_path / "mlp.onnx"), "-o", str(trace), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "reference" in out and "unfused ops on the reference 100.0%" in out  # O0: no fused kernels
    assert check_trace_event_format(_strict_load(trace))


def test_unwritable_trace_is_a_clear_error(gpt, tmp_path, capsys):
    assert main(["run", "--repeat", "1", "--profile", str(tmp_path / "no" / "such" / "dir.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ProfileError" in err[0] and "dir.json" in err[0]


def test_trace_loader_rejects_other_json(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"a": 1}))
    with pytest.raises(profiler.ProfileError, match="not a trace-event file"):
        profiler.load_trace(bad)


def test_shapes_and_bytes_with_omitted_inputs():
    import numpy as np
    info = [profiler.shape_dtype(v) for v in (None, np.zeros((2, 3), np.float32), [np.zeros(1)])]
    assert profiler._unpack(info) == ([None, [2, 3], None], 24)


def test_coverage_is_kernel_time_over_each_run_span():
    prof = profiler.Profiler()
    for run, (t0, t1, kernels) in enumerate([(0.0, 1.0, [(0.1, 0.5), (0.5, 0.9)]), (2.0, 4.0, [(2.0, 3.0)])]):
        prof.runs = run
        records = prof.new_run()
        records.extend((None, a, b, [], []) for a, b in kernels)
        prof.run_span(t0, t1, [])
    assert [round(c, 6) for c in prof.coverage()] == [0.8, 0.5]
    assert [round(c, 6) for c in prof.coverage(first_run=1)] == [0.5]


def test_cache_hit_runs_record_the_shapes_of_the_run_that_filled_the_cache(gpt, tmp_path):
    """Runs of a shape seen before take only times; their events still carry every kernel's shapes."""
    sess = InferenceSession(gpt, jit_level="O1", profile=str(tmp_path / "t.json"))
    small, big = (onnx_models.example_inputs("tiny_gpt", {"batch": b, "seq": s}) for b, s in ((1, 4), (2, 8)))
    for feed in (small, big, small, big):
        sess.run(None, feed)
    kernels = [e for e in check_trace_event_format(_strict_load(sess.end_profiling())) if e.get("cat") == "kernel"]
    by_run = {r: [e for e in kernels if e["args"]["run"] == r] for r in range(4)}
    for first, again in ((0, 2), (1, 3)):  # a cache hit runs the steps that do not compute from shapes alone
        hit = {e["name"]: e["args"] for e in by_run[again]}
        assert hit and len(by_run[again]) < len(by_run[first])
        for e in by_run[first]:
            if e["name"] in hit:
                assert hit[e["name"]]["input_shapes"] == e["args"]["input_shapes"]
                assert hit[e["name"]]["output_shapes"] == e["args"]["output_shapes"]
    logits = [e for e in by_run[3] if e["name"] == "logits"][0]
    assert logits["args"]["output_shapes"] == [[2, 8, 256]] and logits["dur"] > 0
