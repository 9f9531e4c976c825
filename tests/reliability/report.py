"""Run every reliability part with counters and write RELIABILITY.md (bounded CI sizes, or --long ones)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIZES = {  # bounded (CI) and long (nightly)
    False: {
        "graphs": 500,
        "hostile": 300,
        "soak_runs": 500,
        "soak_model": "small",
        "dvm_programs": 5000,
        "reduction_shapes": [(64, 4096), (3, 1000, 33)],
    },
    True: {
        "graphs": 10_000,
        "hostile": 1000,
        "soak_runs": 2500,
        "soak_model": "tiny_gpt",
        "dvm_programs": 100_000,
        "reduction_shapes": [(64, 4096), (1 << 20,), (3, 1000, 33)],
    },
}


def _differential(n: int, out: list) -> dict:
    from .differential import ORT_CRASHED, Stats, check_case, configs, poly_built
    from .graphs import RandomChooser, build_case, save_regression

    stats = Stats()
    folder = Path(__file__).parent / "regressions"
    for seed in range(n):
        case = build_case(RandomChooser(seed))
        if check_case(case, stats):
            save_regression(case, folder)  # a failing case becomes a regression test
        if (seed + 1) % 500 == 0:
            print(f"[reliability] {seed + 1} graphs, {len(stats.mismatches)} mismatches", file=sys.stderr,
                  flush=True)
    out += [
        "## Differential fuzzing against onnxruntime",
        "",
        f"- random graphs: **{stats.graphs}** ("
        + ", ".join(f"{k} {v}" for k, v in sorted(stats.by_dtype.items()))
        + f"; {stats.symbolic} with symbolic dims, each run at two bindings)",
        f"- executors and generators per graph: {', '.join(label for label, _ in configs())}"
        + (
            ""
            if poly_built()
            else " (polyhedral.backend not built: 'poly' ran fused bodies on the reference)"
        ),
        f"- comparisons (graph x configuration x feed): **{stats.runs}**",
        f"- mismatches: **{len(stats.mismatches)}**",
        f"- skipped because onnxruntime was wrong or refused the graph: {sum(stats.skipped.values())}"
        + "".join(f"\n  - {why}: {k}" for why, k in sorted(stats.skipped.items())),
        f"- onnxruntime crashed (compared with its unoptimized run instead): "
        f"{sum(b.startswith(ORT_CRASHED) for b in stats.ort_bugs)}",
    ]
    for desc, problems in stats.mismatches[:10]:
        out.append(f"  - `{desc}`: {problems[0][:200]}")
    return {
        "graphs": stats.graphs,
        "runs": stats.runs,
        "mismatches": len(stats.mismatches),
        "skipped": sum(stats.skipped.values()),
    }


def _hostile(n: int, out: list) -> dict:
    from .hostile import MEMORY_LIMIT, TIME_LIMIT, run_hostile

    s = run_hostile(n, seed=2)
    out += [
        "## Hostile models",
        "",
        f"- mutated models: **{s.tried}**; not a MsgxError (or a normal run after a harmless bit flip/cut): "
        f"**{len(s.failures)}**",
        f"- bounds: {TIME_LIMIT:.0f} s and {MEMORY_LIMIT >> 30} GiB of address space per worker; largest "
        f"resident growth from one model {s.max_rss_growth / 2**20:.1f} MiB, "
        f"slowest model {s.max_seconds:.2f} s; "
        f"worker restarts (crash or hang) {s.restarts}",
        "",
        "| category | outcomes |",
        "|---|---|",
    ]
    for cat, outcomes in sorted(s.outcomes.items()):
        out.append(f"| {cat} | {', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))} |")
    for f in s.failures[:10]:
        out.append(f"- failure: model {f[0]} ({f[1]}): {f[2][:200]}")
    return {"tried": s.tried, "failures": len(s.failures)}


def _soak(runs: int, model: str, out: list) -> dict:
    import onnx_models

    from .soak import CONFIGS, gpt_feeds, small_feeds, small_model, soak

    m, feeds = (small_model(), small_feeds) if model == "small" else (onnx_models.build(model), gpt_feeds)
    out += [
        "## Soak",
        "",
        f"Model `{model}`, {runs} runs per configuration with changing input shapes; "
        "resident memory after the first 20% of the runs vs at the end.",
        "",
        "| configuration | runs | RSS after warm-up | RSS at end | growth | caches at end |",
        "|---|---|---|---|---|---|",
    ]
    worst, total = 0.0, 0
    for mode, level in CONFIGS:
        r = soak(m, feeds, runs, mode, level)
        worst, total = max(worst, r.growth), total + r.runs
        out.append(
            f"| {r.config} | {r.runs} | {r.rss_warm / 2**20:.1f} MiB | {r.rss_end / 2**20:.1f} MiB | "
            f"{r.growth:+.2%} | {', '.join(f'{k} {v}' for k, v in r.caches.items())} |"
        )
    out.append(f"\nTotal runs **{total}**, largest growth after warm-up **{worst:+.2%}** (bound 5%).")
    return {"runs": total, "max_growth": worst}


def _concurrency(out: list) -> dict:
    from .concurrency import cache_processes, damaged_entries, threaded_runs
    from .soak import CONFIGS

    out += ["## Concurrency and the on-disk cache", ""]
    bad = 0
    for mode, level in CONFIGS:
        r = threaded_runs(mode, level)
        bad += len(r["mismatches"]) + len(r["errors"])
        out.append(
            f"- one {mode} {level} session, 8 threads: {r['runs']} runs, {len(r['mismatches'])} wrong, "
            f"{len(r['errors'])} errors"
        )
    with tempfile.TemporaryDirectory() as tmp:
        p = cache_processes(tmp)
        out.append(
            f"- {p['processes']} processes, {p['operations']} get/put of the same {p['keys']} keys: "
            f"{p['wrong_reads']} wrong reads, {p['corruptions']} corruptions seen, {p['intact']} of "
            f"{p['keys']} entries intact at the end"
        )
        d = damaged_entries(tmp)
    detected = sum(v["returned"] is None and v["rebuilt"] for v in d.values())
    out.append(
        f"- damaged entries ({', '.join(d)}): {detected} of {len(d)} never returned and rebuilt; "
        f"{sum(v['corruptions'] for v in d.values())} counted as corruptions (a missing half is a miss)"
    )
    return {
        "thread_failures": bad,
        "wrong_reads": p["wrong_reads"],
        "damage_detected": detected,
        "damage_cases": len(d),
    }


def _numerics(shapes, out: list) -> dict:
    from .numerics import TOL, reduced_precision_errors, reduction_repeats

    out += [
        "## Numerics",
        "",
        "Largest error of each chain over all six configurations, scaled by "
        "max(1, max |exact|), against float64 computed from the same inputs:",
        "",
        "| dtype | "
        + " | ".join(["elementwise", "softmax", "layernorm", "reduce_mean", "matmul_gelu"])
        + " | tolerance |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = {}
    for dtype in ("float16", "bfloat16"):
        e = reduced_precision_errors(dtype)
        per = {}
        for (chain, _), v in e.items():
            per[chain] = max(per.get(chain, 0.0), v)
        worst[dtype] = max(per.values())
        out.append(f"| {dtype} | " + " | ".join(f"{per[c]:.1e}" for c in per) + f" | {TOL[dtype]:.0e} |")
    nondet = []
    for op in ("ReduceSum", "SumOfSquares", "Softmax", "LayerNorm"):
        for shape in shapes:
            r = reduction_repeats(op, shape)
            nondet += [f"{op}{list(shape)} {k}" for k, v in r.items() if v != 1]
    out.append(
        f"\nDeterminism: 4 reductions x {len(shapes)} shapes x 6 configurations, 7 runs each (two fresh "
        f"sessions and one reused): **{len(nondet)}** gave differing bits" + (f": {nondet}" if nondet else "")
    )
    return {"worst": worst, "nondeterministic": len(nondet)}


def _dvm_fuzz(n: int, out: list) -> dict:
    script = (
        "import sys, json; sys.path.insert(0, %r)\nfrom tests.dvm_runtime.test_fuzz import fuzz\n"
        "print(json.dumps(fuzz(%d, 7)))\n"
    ) % (str(ROOT), n)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    st = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
    agent = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
            "tests/kernel_agent/test_llm.py",
            "-k",
            "adversarial or rejected",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    agent_line = (agent.stdout.strip().splitlines() or ["no output"])[-1]
    out += [
        "## Generated-code safety",
        "",
        "- DVM bytecode fuzz (random and mutated programs against the validating C VM, in a subprocess): "
        + (
            f"**{st['cases']}** programs, {st['valid']} valid, {st['ran']} ran, {st['rejected']} rejected at "
            f"run time, {st['disagree']} C/numpy validator disagreements"
            if st
            else f"**the worker died** (exit {proc.returncode}): {proc.stderr[-300:]}"
        ),
        f"- kernel agent sandbox and verifier rejections (tests/kernel_agent/test_llm.py): {agent_line}",
    ]
    return {"programs": st.get("cases", 0), "died": proc.returncode != 0, "agent": agent_line}


def generate(long: bool = False, path: Path | None = None, parts=None) -> dict:
    """Run the parts (all by default) and write the report; returns the summary numbers."""
    size = SIZES[long]
    if not os.environ.get("MSGX_CACHE_DIR"):  # generated kernels of random graphs: not for the user's cache
        os.environ["MSGX_CACHE_DIR"] = tempfile.mkdtemp(prefix="msgx-reliability-cache-")
    jobs = {
        "differential": lambda o: _differential(size["graphs"], o),
        "hostile": lambda o: _hostile(size["hostile"], o),
        "soak": lambda o: _soak(size["soak_runs"], size["soak_model"], o),
        "concurrency": _concurrency,
        "numerics": lambda o: _numerics(size["reduction_shapes"], o),
        "generated_code": lambda o: _dvm_fuzz(size["dvm_programs"], o),
    }
    body, summary = [], {}
    for name, job in jobs.items():
        if parts and name not in parts:
            continue
        t0 = time.perf_counter()
        print(f"[reliability] {name} ...", file=sys.stderr, flush=True)
        try:
            summary[name] = job(body)
        except Exception:  # noqa: BLE001 - a broken part is reported, the others still run
            summary[name] = {"error": traceback.format_exc(limit=3)}
            body += [f"## {name}: the part itself failed", "", "```", summary[name]["error"], "```"]
        body.append(f"\n_{name}: {time.perf_counter() - t0:.0f} s_\n")
        _write(path, long, body, parts)  # after every part: a run stopped early still leaves its numbers
    return summary


def _write(path, long: bool, body: list, parts) -> None:
    head = [
        "# RELIABILITY",
        "",
        f"Generated by `python -m tests.reliability{' --long' if long else ''}"
        + "".join(f" --part {p}" for p in parts or ())
        + "` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC ({'long' if long else 'bounded'} "
        f"mode; {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs, load average "
        f"{os.getloadavg()[0]:.1f}: timings depend on what else ran).",
        "",
    ]
    (path or ROOT / "RELIABILITY.md").write_text("\n".join(head + body) + "\n")
