"""The kernel-agent suite: every task in kernel_agent/tasks through the offline generator, then the accepted
kernel against the task's numpy reference in interleaved rounds (harness.measure). Reports fast_0 (share of
tasks with a verified kernel), fast_1 (verified and faster than the reference), the geomean speedup and the
generation time per task. --threads limits BLAS for both sides (MatMul host steps) and the thread counts
the tuner tries for the kernel (OMP_NUM_THREADS); numpy's elementwise ufuncs and reductions run on one
thread whatever it is. The table's "threads" column is the accepted variant's (1 unless more measured
faster; MSGX_AGENT_THREADS overrides the candidates).

Generation runs against a fresh registry (a temporary MSGX_CACHE_DIR) unless --use-registry."""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import harness

SUITE = "agent"
DEFAULTS = {"rounds": 7, "warmup": 2, "min_round_s": 0.05, "max_case_s": 6.0}
QUICK = {"rounds": 3, "warmup": 1, "min_round_s": 0.02, "max_case_s": 2.0}
TASKS = Path(__file__).resolve().parent.parent / "kernel_agent" / "tasks"


def task_files(names=None) -> list[Path]:
    files = sorted(TASKS.glob("*.py"))
    return [f for f in files if not names or f.stem in names]


def _case(path: Path, budget: int, stats: dict):
    import kernel_agent
    from kernel_agent.designer import Variant
    from kernel_agent.task import load_task
    from kernel_agent.verifier import compare

    def build():
        task = load_task(path)
        t0 = time.perf_counter()
        try:
            k = kernel_agent.generate(task, "offline", budget)
        except Exception as e:  # noqa: BLE001 - a task without a kernel is a fast_0 miss, reported
            stats[task.name] = {"ok": False, "gen_s": time.perf_counter() - t0,
                                "why": harness.describe_error(e)}
            raise
        gen_s = time.perf_counter() - t0
        inputs = task.make_inputs(0)  # re-checked here, in this process, with the verifier's comparison
        ref64 = task.run_reference([a.astype(np.float64) if a.dtype.kind == "f" else a for a in inputs])
        ref = task.run_reference(inputs)
        why = [w for w in (compare(g, a, b, inputs) for g, a, b in zip(k.fn(*inputs), ref64, ref)) if w]
        stats[task.name] = {"ok": not why, "gen_s": gen_s, "variant": k.variant,
                            "threads": Variant.from_label(k.variant).threads}
        if why:
            raise AssertionError(f"kernel disagrees with the reference on seed 0: {why[0]}")
        runners = {"agent": lambda: k.fn(*inputs), "numpy": lambda: task.reference(*inputs)}
        return harness.Case(task.name, runners, {"variant": k.variant, "gen_s": gen_s, "kind": task.kind})
    return build


def summary(rows: list[dict], stats: dict) -> dict:
    n = len(rows)
    ok = [r for r in rows if not r["error"] and stats.get(r["case"], {}).get("ok")]
    sp = [1.0 / r["ratio"] for r in ok if r.get("ratio")]
    fast_1 = sum(1 for s in sp if s > 1.0)
    return {"tasks": n, "fast_0": len(ok) / n if n else 0.0, "fast_1": fast_1 / n if n else 0.0,
            "geomean_speedup": math.exp(sum(math.log(s) for s in sp) / len(sp)) if sp else None,
            "gen_s_total": sum(s["gen_s"] for s in stats.values())}


def add_args(p) -> None:
    """The suite's options (shared by `msgx bench agent` and `msgx agent bench`)."""
    p.add_argument("--tasks", nargs="*", help="task names (default: all)")
    p.add_argument("--budget", type=int, default=3, help="sandbox runs per task (verification + tuning)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads for both sides; the most OpenMP threads the tuner tries for the kernel")
    p.add_argument("--use-registry", action="store_true",
                   help="reuse the user's registry (no fresh generation)")
    harness.add_output_args(p)
    harness.add_timing_args(p, DEFAULTS)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="msgx bench agent", description=__doc__)
    add_args(p)
    return run(p.parse_args(argv))


def run(args) -> int:
    timing = dict(QUICK if args.quick else DEFAULTS)
    for k in timing:
        if getattr(args, k, None) is not None:
            timing[k] = getattr(args, k)
    if not args.use_registry:
        os.environ["MSGX_CACHE_DIR"] = tempfile.mkdtemp(prefix="msgx-agent-bench-")
    stats: dict = {}
    items = [(f.stem, _case(f, args.budget, stats)) for f in task_files(args.tasks)]
    out = open(args.out, "w") if args.out else sys.stdout
    with harness.thread_limits(args.threads):
        rows = harness.run_cases(items, stream=out, suite=SUITE, threads=args.threads, **timing)
    s = summary(rows, stats)
    extra = {"speedup": lambda r: "-" if not r.get("ratio") else f"{1 / r['ratio']:.2f}x",
             "gen s": lambda r: f"{stats.get(r['case'], {}).get('gen_s', float('nan')):.1f}",
             "variant": lambda r: str(stats.get(r["case"], {}).get("variant", "-")),
             "threads": lambda r: str(stats.get(r["case"], {}).get("threads", "-"))}
    table = harness.markdown_table(rows, extra)
    from kernel_agent.coder import PARALLEL_MIN_ELEMENTS
    gm = s["geomean_speedup"]
    gm = "-" if gm is None else f"{gm:.2f}x"
    table += (f"\n{s['tasks']} tasks: fast_0 {s['fast_0']:.0%}, fast_1 {s['fast_1']:.0%}, geomean speedup "
              f"{gm} vs the numpy reference; generation {s['gen_s_total']:.0f} s in all\nthreads: the "
              f"kernel's OpenMP threads (stages under {PARALLEL_MIN_ELEMENTS} elements run on one); the "
              f"reference runs on one (BLAS on {args.threads})\n")
    harness.progress("summary " + harness.emit({"suite": SUITE, **s}))
    if args.out:
        out.close()
    return harness.finish(rows, table, args)
