"""The data-parallel suite: training samples/s of examples/train_dp.py with n ranks vs one rank, one
compute thread per rank, in interleaved rounds (each round starts one mpirun job per rank count).

    python -m benchmarks dp [--model cnn|lm] [--ranks 2] [--rounds 3] [--steps 60] [--global-batch 256]

Each job reports samples/s after its first (compiling) step; the row gives the median over rounds and the
speedup (n ranks / 1 rank). Needs mpirun (Debian's openmpi-bin) and mpi4py.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from . import harness

SUITE = "dp"
ROOT = Path(__file__).resolve().parents[1]


def run_job(ranks: int, args) -> float:
    """One mpirun job; returns its samples/s."""
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "core" if ranks <= (os.cpu_count() or 1) else "none",
           "-n", str(ranks), sys.executable, str(ROOT / "examples" / "train_dp.py"), "--model", args.model,
           "--steps", str(args.steps), "--global-batch", str(args.global_batch), "--threads", "1", "--quiet",
           "--mode", "graph", "--jit-level", args.jit_level]
    # the ranks import this checkout (a script's sys.path starts at examples/, not here): an install that
    # points elsewhere made every job fail
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MSGX_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    found = re.search(r"samples/s ([0-9.]+)", proc.stdout)
    if proc.returncode != 0 or not found:
        # the exception's own line first: a table cell shows one line, and a traceback's first (or mpirun's
        # closing banner) says nothing
        lines = [ln.strip() for ln in proc.stderr.splitlines() if re.search(r"[A-Za-z]", ln)]
        why = next((ln for ln in reversed(lines) if re.match(r"([\w.]+(Error|Exception)\b|.*\berror: )", ln)),
                   lines[-1] if lines else "no output")
        raise RuntimeError(f"{ranks}-rank job failed (exit {proc.returncode}): {why}\n{proc.stderr[-800:]}")
    return float(found.group(1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks dp", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cnn", choices=["cnn", "lm"])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--global-batch", type=int, default=256)
    p.add_argument("--jit-level", default="O1", choices=["O0", "O1"])
    harness.add_output_args(p)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps = 1, 20
    if shutil.which("mpirun") is None:
        print("the dp suite needs mpirun: apt-get install openmpi-bin libopenmpi-dev", file=sys.stderr)
        return 2
    case = f"{args.model} global batch {args.global_batch}: {args.ranks} ranks vs 1 (1 thread each)"
    rates: dict[int, list[float]] = {1: [], args.ranks: []}
    error = None
    try:
        for r in range(args.rounds):
            for ranks in (1, args.ranks):  # interleaved: machine noise hits both alike
                harness.progress(f"{harness.bar(r, args.rounds)} round {r + 1}: {ranks} rank(s)")
                rates[ranks].append(run_job(ranks, args))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        error = harness.describe_error(e)
    one = statistics.median(rates[1]) if rates[1] else None
    many = statistics.median(rates[args.ranks]) if rates[args.ranks] else None
    row = {"suite": SUITE, "case": case, "samples_per_s": {"1": rates[1], str(args.ranks): rates[args.ranks]},
           "median_1": one, f"median_{args.ranks}": many, "speedup": many / one if one and many else None,
           "error": error, "env": harness.environment(1)}
    stream = open(args.out, "w") if args.out else sys.stdout
    harness.emit(row, stream)
    def fmt(v, spec=".1f"):
        return "-" if v is None else format(v, spec)
    table = (f"| case | 1 rank samples/s | {args.ranks} ranks samples/s | speedup | error |\n"
             f"|---|---|---|---|---|\n"
             f"| {case} | {fmt(one)} | {fmt(many)} | {fmt(row['speedup'], '.2f')} | {error or ''} |\n")
    return harness.finish([row], table, args)


if __name__ == "__main__":
    sys.exit(main())
