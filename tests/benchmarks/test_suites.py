"""Smoke tests of the operator and dynamic-shape suites: they run, rows carry the documented keys, every
peer's output was checked, and the torch peers are skipped cleanly without torch (tiny sizes, one round,
no torch.compile: these test the suites, not speed)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from benchmarks import bandwidth, dynamic, ops, peers
from benchmarks.__main__ import main as bench_main
from benchmarks.harness import ROW_KEYS, RUNNER_KEYS

HAVE_TORCH = peers.torch_available()
OPS_ARGS = ["--quick", "--rounds", "1", "--warmup", "1", "--min-round-s", "0", "--no-compile",
            "--bandwidth-mib", "4"]
DYN_ARGS = ["--quick", "--rounds", "1", "--warmup", "1", "--min-round-s", "0", "--no-compile"]


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def no_torch(monkeypatch):
    """`import torch` fails, as it does where the benchmark extra is not installed."""
    monkeypatch.setitem(sys.modules, "torch", None)
    assert peers.torch_module() is None and not peers.torch_available()


def test_ops_suite_rows_checked_and_on_dvm(tmp_path):
    out, md = tmp_path / "ops.jsonl", tmp_path / "ops.md"
    assert bench_main(["ops", "--sizes", "4x8,16x32", *OPS_ARGS, "--out", str(out), "--md", str(md)]) == 0
    rows = _rows(out)
    assert [r["case"] for r in rows] == [f"{c} {s}" for s in ("4x8", "16x32") for c in ops.CHAINS]
    peer_names = ["numpy", "onnxruntime"] + (["torch"] if HAVE_TORCH else [])
    for row in rows:
        assert set(ROW_KEYS) <= set(row) and row["suite"] == "ops" and row["ours"] == "msgx"
        assert row["error"] is None, row["error"]
        assert set(ops.META_KEYS) <= set(row["meta"])
        meta = row["meta"]
        assert meta["ran_on_dvm"] and "dvm" in meta["msgx_backends"]
        assert set(meta["check"]) == set(peer_names) and all(c["ok"] for c in meta["check"].values())
        # the copy of the same bytes is timed in the same rounds as a yardstick, not compared as a peer
        assert list(row["runners"]) == ["msgx", *peer_names, ops.COPY]
        assert set(row["ratios"]) == set(peer_names)
        for r in row["runners"].values():
            assert set(RUNNER_KEYS) <= set(r)
        assert set(meta["gbps"]) == set(row["runners"]) and meta["copy_bandwidth"]["gbps"] > 0
        for key, limit in (("copy_fraction", meta["gbps"][ops.COPY]), ("peak_fraction",
                                                                      meta["copy_bandwidth"]["gbps"])):
            assert set(meta[key]) == set(peer_names) | {"msgx"}
            assert meta[key]["msgx"] == pytest.approx(meta["gbps"]["msgx"] / limit)
        assert meta["bytes"] >= 2 * 4 * np.prod(meta["shape"])  # at least one input and one output
        assert "msgx" in meta["compile_s"] and "onnxruntime" in meta["compile_s"] and meta["ort_ops"]
    adam = next(r for r in rows if r["case"] == "adam 16x32")
    assert adam["meta"]["bytes"] == 7 * 16 * 32 * 4 + 6 * 4  # p, g, m, v in; p', m', v' out; 6 scalars
    text = md.read_text()
    assert "msgx/onnxruntime" in text and "copy bandwidth" in text and text.count("\n| bias_gelu") == 2
    assert "copy ms (IQR)" in text and "msgx/copy" not in text and "in the same rounds" in text


def test_ops_suite_without_torch(tmp_path, no_torch):
    out = tmp_path / "ops.jsonl"
    # without --no-compile: torch.compile must be skipped as cleanly as eager torch
    args = [a for a in OPS_ARGS if a != "--no-compile"]
    assert ops.main(["--sizes", "4x8", "--chains", "softmax,adam", *args, "--out", str(out)]) == 0
    for row in _rows(out):
        assert row["error"] is None and list(row["runners"]) == ["msgx", "numpy", "onnxruntime", ops.COPY]
        assert "skipped" in row["meta"]["torch"] and "torch.compile" not in row["meta"]["compile_s"]


def test_ops_peer_that_disagrees_is_an_error_not_a_time(tmp_path, monkeypatch):
    chain = ops.CHAINS["chain6"]
    monkeypatch.setitem(ops.CHAINS, "chain6", ops.Chain(chain.name, chain.doc, chain.inputs, chain.nodes,
                                                        chain.n_out, lambda x, y, z: x + 1, chain.torch))
    out = tmp_path / "ops.jsonl"
    assert ops.main(["--sizes", "4x8", "--chains", "chain6", *OPS_ARGS, "--no-torch", "--out", str(out)]) == 0
    (row,) = _rows(out)
    assert "differs from msgx" in row["errors"]["numpy"] and not row["meta"]["check"]["numpy"]["ok"]
    assert "median_s" in row["runners"]["onnxruntime"] and "numpy" not in row["ratios"]


def test_ops_bad_arguments():
    assert ops.main(["--sizes", "huge"]) == 2 and ops.main(["--chains", "nope"]) == 2
    assert ops.parse_sizes("small,3x5") == [("small", (64, 256)), ("3x5", (3, 5))]


def test_copy_bandwidth_is_positive():
    bw = bandwidth.measure(2, 1 << 20, repeats=2)
    assert bw["gbps"] == max(bw["gbps_1t"], bw["gbps_nt"]) > 0


def _check_dynamic(rows: list[dict], lengths: list[int], systems: list[str]):
    *per_len, summ = rows
    assert [r["case"] for r in per_len] == [f"seq {n}" for n in sorted(lengths)]
    for row in per_len:
        assert set(ROW_KEYS) <= set(row) and row["suite"] == "dynamic" and row["error"] is None
        assert list(row["runners"]) == systems and set(row["meta"]["first_call_s"]) == set(systems)
    assert set(ROW_KEYS) <= set(summ) and summ["case"] == "summary"
    meta = summ["meta"]
    assert sorted(meta["order"]) == sorted(lengths) and meta["msgx_info"]["backends"].get("dvm")
    for name in systems:
        s = meta["systems"][name]
        assert set(dynamic.SUMMARY_KEYS) <= set(s) and s["error"] is None and s["lengths"] == len(lengths)
        assert s["total_s"] >= s["setup_s"] + s["max_first_call_s"] - 1e-12
        if name != "msgx":  # every peer's output was checked against ours at every length
            assert s["checked_lengths"] == len(lengths) and s["max_scaled_err"] < dynamic.RTOL
            assert name in meta["ratios_total"] and name in meta["ratios_steady_geomean"]
    return meta


def test_dynamic_suite_checks_every_system(tmp_path):
    out, md = tmp_path / "dyn.jsonl", tmp_path / "dyn.md"
    lengths = [1, 5, 9]
    assert bench_main(["dynamic", "--lengths", ",".join(map(str, lengths)), *DYN_ARGS, "--out", str(out),
                       "--md", str(md)]) == 0
    systems = ["msgx", "msgx O0", "onnxruntime"] + (["torch"] if HAVE_TORCH else [])
    meta = _check_dynamic(_rows(out), lengths, systems)
    assert all(v.startswith("skipped") for v in _rows(out)[-1]["errors"].values())
    assert "## Per system" in md.read_text() and "torch.compile(dynamic=True)" in md.read_text()
    assert meta["n_ctx"] == dynamic.N_CTX
    enc = meta["msgx_info"]["encode_us"]  # every new length encodes the fused kernels anew
    assert enc["n"] >= len(lengths) and 0 < enc["median_us"] <= enc["p90_us"] <= enc["max_us"]


def test_dynamic_suite_without_torch(tmp_path, no_torch):
    out = tmp_path / "dyn.jsonl"
    args = [a for a in DYN_ARGS if a != "--no-compile"]
    assert dynamic.main(["--lengths", "2,7", *args, "--out", str(out)]) == 0
    rows = _rows(out)
    _check_dynamic(rows, [2, 7], ["msgx", "msgx O0", "onnxruntime"])
    assert rows[-1]["errors"] == {s: "skipped: torch not installed" for s in
                                  ("torch", dynamic.TC_STATIC, dynamic.TC_DYNAMIC)}


def test_dynamic_model_serves_lengths_beyond_the_bundled_128():
    import framework

    model = dynamic.build_model()
    wpe = dynamic.weights(model)["wpe"]
    assert wpe.shape[0] == dynamic.N_CTX
    import onnx_models

    np.testing.assert_array_equal(wpe[:128], dynamic.weights(onnx_models.build("tiny_gpt"))["wpe"])
    feed = {"ids": dynamic.feeds([256], 1, 0)[256]}
    (logits,) = framework.InferenceSession(model, jit_level="O1").run(None, feed)
    assert logits.shape == (1, 256, 256) and np.isfinite(logits).all()


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_torch_model_matches_onnxruntime():
    import torch

    model = dynamic.build_model()
    ids = dynamic.feeds([200], 2, 3)[200]
    (ref,) = peers.ort_session(model, 1).run(None, {"ids": ids})
    with torch.inference_mode():
        got = dynamic.torch_model(torch, dynamic.weights(model))(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_torch_inductor_cache_modes():
    with pytest.raises(ValueError):
        peers.torch_inductor_cache("hot")
    with peers.torch_inductor_cache("warm") as d:
        assert d is None


def test_pynative_suite_compares_fused_against_unfused(tmp_path):
    out, md = tmp_path / "pyn.jsonl", tmp_path / "pyn.md"
    assert bench_main(["pynative", "--dims", "1x3,2x5", "--quick", "--rounds", "1", "--warmup", "1",
                       "--min-round-s", "0", "--out", str(out), "--md", str(md)]) == 0
    rows = _rows(out)
    assert [r["case"] for r in rows] == ["tiny_gpt b1 s3", "tiny_gpt b2 s5"]
    for row in rows:
        assert set(ROW_KEYS) <= set(row) and row["error"] is None, row["error"]
        assert row["ours"] == "msgx pynative O1" and row["baseline"] == "msgx pynative O0"
        assert set(row["ratios"]) == {"msgx pynative O0", "msgx graph O0"} and row["ratio"] > 0
    assert "msgx pynative O1/msgx pynative O0" in md.read_text()


def test_poly_summary_names_peers_the_numpy_check_left_out():
    """A PolyBench peer whose output differs from numpy is not timed; the summary says which and by how much
    (synthetic rows: this tests the report, not the kernels)."""
    from benchmarks import poly

    def row(case, size, threads, ratios, checks):
        return {"case": case, "threads": threads, "ratios": ratios, "error": None, "errors": {},
                "meta": {"kernel": case.split()[0], "size": size, "check_rel_err": checks}}
    rows = [row("gemm medium t1", "medium", 1, {"original": 0.25, "polly": 0.5},
                {"cpu-contiguity": 1e-15, "polly": 2e-15}),
            row("gemm medium t2", "medium", 2, {"original": 0.2}, {"cpu-contiguity": 1e-15, "polly": 0.21}),
            row("atax medium t2", "medium", 2, {"original": 0.9}, {"polly": "clang with Polly is not available"})]
    text = poly.summary(rows)
    assert "| 1 | medium | polly | 2.00 | 1 | gemm medium t1 (2.00) |" in text
    assert "| 2 | medium | original | 2.36 | 2 | atax medium t2 (1.11) |" in text
    assert "left out by the numpy check" in text and "polly at gemm medium t2 (0.21)" in text
    assert "atax" not in text.split("left out")[1]


def test_offsets_places_outputs_and_runs_the_sessions_program(capsys):
    from benchmarks import offsets
    from dvm_runtime import cvm
    if not cvm.available():
        pytest.skip(f"the C VM is unavailable: {cvm.why_unavailable()}")
    for off in (0, 32, 2112):
        arr = offsets.placed(off, (8, 64), np.float32)
        assert arr.ctypes.data % 4096 == off and arr.shape == (8, 64)
    chain = ops.CHAINS["softmax"]
    feed = chain.inputs(8, 64, np.random.default_rng(0))
    prog = offsets.encoded_program(chain, feed)
    (x,) = feed.values()
    out = offsets.placed(2144, x.shape, np.float32)
    bufs = [out if src is None else x for _, src, _, _ in prog.slots]
    cvm.extension().Program(np.asarray(prog.code, np.uint64), None, 1)(bufs)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    offsets.main(["softmax", "8x64", "--offsets", "0,2112", "--rounds", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["outputs at    0", "outputs at 2112"]
