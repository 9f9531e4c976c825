"""`msgx bench report`: every suite -> JSON lines, Markdown, ratio plots and BENCHMARKS.md with provenance."""
import json
import subprocess

import pytest

from benchmarks import report
from benchmarks.__main__ import SUITES
from framework.cli import main as msgx


def _row(case, ratios, error=None):
    return {"suite": "s", "case": case, "ratios": ratios, "error": error, "meta": {}}


def test_real_suite_end_to_end(tmp_path):
    """One real suite, narrowed to one small model: rows, table, plot and provenance in the report."""
    out = tmp_path / "BENCHMARKS.md"
    rc = msgx(["bench", "report", "--suites", "models", "--output", str(out),
               "--suite-args", "models=--models mlp --rounds 2 --warmup 1 --min-round-s 0.001"])
    assert rc == 0
    text = out.read_text()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=report.ROOT, capture_output=True,
                          text=True).stdout
    assert f"`{head.strip()}`" in text
    cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    assert f"Machine: {cpu}, " in text
    rows = [json.loads(ln) for ln in (tmp_path / "benchmarks/results/models.jsonl").read_text().splitlines()]
    assert [r["case"] for r in rows] == ["mlp b1", "mlp b64"] and all(r["error"] is None for r in rows)
    for r in rows:  # the suite's own table is embedded, with its ratio cells
        assert f"| {r['case']} |" in text and f"{r['ratios']['onnxruntime']:.2f}" in text
    assert "![models ratios](benchmarks/results/models_ratios.png)" in text
    from PIL import Image
    with Image.open(tmp_path / "benchmarks/results/models_ratios.png") as im:
        assert im.format == "PNG" and im.size[0] > 500


def test_report_holds_every_suite(tmp_path, monkeypatch):
    """Must-show 3: one command, a section per suite in SUITES; a failed suite shows its log and fails."""
    ran = []

    def fake(name, out_dir, extra, quick, timeout):
        ran.append((name, quick))
        failed = name == SUITES[-1]
        rows = [] if failed else [_row(f"{name} a", {"peer": 0.5}), _row(f"{name} b", {"peer": 2.0})]
        return {"suite": name, "command": f"python -m benchmarks {name}", "rc": 1 if failed else 0,
                "seconds": 1.0, "rows": rows, "table": f"| {name} table |\n",
                "log_tail": f"{name} crashed here"}
    monkeypatch.setattr(report, "run_suite", fake)
    out = tmp_path / "B.md"
    assert report.main(["--output", str(out)]) == 1  # the last suite failed
    assert ran == [(s, True) for s in SUITES]
    text = out.read_text()
    for s in SUITES:
        assert f"## {s}\n" in text and f"| [{s}](#{s}) |" in text
    for s in SUITES[:-1]:
        assert f"| {s} table |" in text and (tmp_path / f"benchmarks/results/{s}_ratios.png").exists()
        assert "msgx / peer: geomean 1.00 over 2 cases (msgx faster in 1)" in text
    assert f"{SUITES[-1]} crashed here" in text
    for s in SUITES[:-1]:  # what --from-results re-renders from: the suites' JSON lines
        (tmp_path / f"benchmarks/results/{s}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in fake(s, None, [], True, 0)["rows"]))
    out.unlink()
    ran.clear()
    assert report.main(["--output", str(out), "--from-results"]) == 1
    assert out.read_text() == text and not ran  # the same report, nothing run again


def test_ratio_points_and_geomean():
    rows = [_row("a", {"ort": 0.25, "torch": 4.0}), _row("b", {"ort": 4.0}), _row("c", {}, error="x"),
            {"case": "summary", "ratios": {"ort": None}}]
    assert report.ratio_points(rows) == {"ort": [("a", 0.25), ("b", 4.0)], "torch": [("a", 4.0)]}
    assert report.geomean([0.25, 4.0]) == pytest.approx(1.0)
    assert report.plot("s", [_row("c", {})], report.Path("/nonexistent/x.png")) is None  # nothing to plot


def test_unknown_suite_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        report.main(["--suites", "nosuch"])
    assert e.value.code == 2 and "nosuch" in capsys.readouterr().err
