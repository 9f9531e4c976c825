"""The one benchmark harness: warm-up, interleaved rounds, median and IQR, one JSON line per case.

Row keys: ROW_KEYS; per runner: RUNNER_KEYS; `ratios[peer]` = ours / peer median (< 1: ours is faster).
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

ROW_KEYS = ("suite", "case", "ours", "baseline", "runners", "ratios", "ratio", "error", "errors",
            "threads", "warmup", "rounds", "min_round_s", "meta", "env")
RUNNER_KEYS = ("median_s", "q1_s", "q3_s", "iqr_s", "min_s", "max_s", "reps", "rounds")
# Idle time before each timed round, so no runner's idle threads still run in the next one's round: PyTorch's
# OpenMP workers spin for milliseconds after each parallel region by default (measured here: 3-5 ms of CPU
# after one 8192x1024 torch.sigmoid), and on 2 vCPUs the round after torch.compile's ran its first calls at
# half speed (SiLU-gated 8192x1024: 3.4-5.3 ms calls against 1.62 ms, +7% on the round). onnxruntime's
# spinning is off (peers.ort_session); ours polls 50 us. Sleeping costs no runner anything it pays in use.
QUIET_S = 0.01


@dataclass
class Case:
    """One comparison: the first runner is ours, the others are peers; meta is copied into the row."""

    name: str
    runners: dict[str, Callable[[], object]]
    meta: dict = field(default_factory=dict)
    # runners timed in the same rounds as a yardstick (a copy of the same bytes), not peers: no ratio
    references: tuple[str, ...] = ()


def describe_error(exc: BaseException) -> str:
    """`Type: message` (first line of the message), short enough for a table cell."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def blas_info() -> list[dict] | None:
    """numpy's BLAS thread pools via threadpoolctl (it has its own threads); None when not importable."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    keep = ("user_api", "internal_api", "num_threads", "version", "threading_layer")
    return [{k: p[k] for k in keep if k in p} for p in threadpoolctl.threadpool_info()]


def environment(threads: int | None = None) -> dict:
    """Machine and library facts that every row carries, so a number can be traced to its setting."""
    import numpy as np

    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           "cpu_count": os.cpu_count(), "numpy": np.__version__, "threads": threads}
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    blas = blas_info()
    if blas is not None:
        env["numpy_blas"] = blas
    return env


def copy_bandwidth(nbytes: int = 64 << 20, repeats: int = 5) -> float:
    """Best-of-N memory copy bandwidth in GB/s (read + write): the limit for memory-bound kernels."""
    import numpy as np

    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def _timed(fn: Callable[[], object], reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def settle(fns: list[Callable[[], object]], seconds: float) -> None:
    """Call `fns` round-robin, untimed, for `seconds`: after an idle stretch (a serving phase waiting on
    compiler subprocesses) the first case measured ran up to 1.7x slower than the same case later, for
    every system, and 1 s of busy work beforehand removed the difference."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for fn in fns:
            fn()


def _warm(fn: Callable[[], object], warmup: int, cap_s: float) -> float:
    """Run up to `warmup` calls (at least one; stop once `cap_s` is spent); return the fastest call."""
    best, spent = math.inf, 0.0
    for _ in range(max(1, warmup)):
        t = _timed(fn, 1)
        best, spent = min(best, t), spent + t
        if spent >= cap_s:
            break
    return best


def _quantiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def _summary(samples: list[float], reps: int) -> dict:
    q1, q3 = _quantiles(samples)
    return {"median_s": statistics.median(samples), "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1,
            "min_s": min(samples), "max_s": max(samples), "reps": reps, "rounds": len(samples)}


def _plan_rounds(rounds: int, round_cost: float, max_case_s: float | None, min_rounds: int) -> int:
    if max_case_s is None or round_cost <= 0:
        return rounds
    return max(min(rounds, min_rounds), min(rounds, int(max_case_s // round_cost)))


def balanced_orders(n: int) -> list[list[int]]:
    """Orders of n runners (Williams' design: n of them, 2n for odd n) in which each runner runs right after
    each other runner equally often. What ran just before changes a round's time: a case that fits this
    machine's L3 (300 MiB) finds its arrays evicted after numpy's rounds, which write many temporaries, and
    with the order reversed every other round the runner after numpy was always ours (and no peer's):
    Adam 8192x1024 took 7-8 ms per call for three calls after numpy, 4.2-4.4 ms after itself."""
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        if len(first) % 2:
            first, lo = first + [lo], lo + 1
        else:
            first, hi = first + [hi], hi - 1
    orders = [[(k + i) % n for k in first] for i in range(n)]
    return orders + [o[::-1] for o in orders] if n % 2 else orders


def measure(case: Case, warmup: int = 2, rounds: int = 5, min_round_s: float = 0.05, *,
            baseline: str | None = None, max_case_s: float | None = None, min_rounds: int = 3,
            threads: int | None = None, suite: str = "") -> dict:
    """Warm every runner, time interleaved rounds (in balanced_orders), return the row.

    `max_case_s` cuts rounds (not below `min_rounds`); a runner that raises is dropped, and if ours does the
    case stops. Never raises for a runner's error."""
    names = list(case.runners)
    ours = names[0] if names else None
    peers = [n for n in names[1:] if n not in case.references]
    base = baseline if baseline in peers else (peers[0] if peers else None)
    errors: dict[str, str] = {}
    est: dict[str, float] = {}
    cap = math.inf if max_case_s is None else max_case_s / 4
    for name in names:
        try:
            est[name] = _warm(case.runners[name], warmup, cap)
        except Exception as e:  # noqa: BLE001 - any failure of a runner is a result, not a crash
            errors[name] = describe_error(e)
            if name == ours:
                break
    live = [n for n in names if n in est]
    reps = {n: max(1, math.ceil(min_round_s / max(est[n], 1e-9))) for n in live}
    planned = _plan_rounds(rounds, sum(reps[n] * est[n] for n in live), max_case_s, min_rounds)
    samples: dict[str, list[float]] = {n: [] for n in live}
    if ours in errors:
        planned = 0
    orders = balanced_orders(len(live))
    for i in range(planned):
        gc.collect()
        for n in (live[k] for k in orders[i % len(orders)]):
            if n in errors:
                continue
            time.sleep(QUIET_S)
            try:
                samples[n].append(_timed(case.runners[n], reps[n]))
            except Exception as e:  # noqa: BLE001
                errors[n] = describe_error(e)
    runners = {n: _summary(samples[n], reps[n]) for n in live if n not in errors and samples[n]}
    for n in names:
        if n in errors:
            runners[n] = {"error": errors[n]}
    ratios = {}
    if ours in runners and "median_s" in runners[ours]:
        ratios = {p: runners[ours]["median_s"] / runners[p]["median_s"]
                  for p in names[1:] if p not in case.references and "median_s" in runners.get(p, {})
                  and runners[p]["median_s"] > 0}
    error = "; ".join(f"{n}: {m}" for n, m in errors.items()) or None
    return {"suite": suite, "case": case.name, "ours": ours, "baseline": base, "runners": runners,
            "ratios": ratios, "ratio": ratios.get(base), "error": error, "errors": errors,
            "threads": threads, "warmup": warmup, "rounds": planned, "min_round_s": min_round_s,
            "meta": dict(case.meta), "env": environment(threads)}


def error_row(name: str, error: str, *, ours: str | None = None, baseline: str | None = None,
              meta: dict | None = None, threads: int | None = None, suite: str = "") -> dict:
    """A row for a case that could not be measured at all (e.g. the model failed to load)."""
    return {"suite": suite, "case": name, "ours": ours, "baseline": baseline, "runners": {}, "ratios": {},
            "ratio": None, "error": error, "errors": {ours or "setup": error}, "threads": threads,
            "warmup": 0, "rounds": 0, "min_round_s": None, "meta": dict(meta or {}),
            "env": environment(threads)}


def emit(row: dict, stream: IO[str] | None = None) -> str:
    """Write `row` as one JSON line to `stream` (flushed) and return the line."""
    line = json.dumps(row, default=_json_default, sort_keys=False)
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()
    return line


def _json_default(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bar(done: int, total: int, width: int = 20) -> str:
    """A text progress bar: `[#####---------------] 1/4`."""
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total}"


def run_cases(items: list[Case | tuple[str, Callable[[], Case | dict]]], *, stream: IO[str] | None = None,
              **measure_kw) -> list[dict]:
    """Measure each Case, or build it from a (name, thunk) pair; a thunk may return a finished error row."""
    rows = []
    for i, item in enumerate(items, 1):
        label = item.name if isinstance(item, Case) else item[0]
        progress(f"{bar(i - 1, len(items))} {label}")
        case: Case | dict = item if isinstance(item, Case) else _build(label, item[1], measure_kw)
        row = measure(case, **measure_kw) if isinstance(case, Case) else case
        del case  # let the sessions behind the runners go before the next case is built
        emit(row, stream)
        rows.append(row)
        progress(f"{bar(i, len(items))} {label}: " + (f"ERROR {row['error']}" if row["error"] else
                                                   f"ratio {_fmt_ratio(row['ratio'])}"))
    return rows


def _build(label: str, thunk: Callable[[], Case | dict], measure_kw: dict) -> Case | dict:
    try:
        return thunk()
    except Exception as e:  # noqa: BLE001 - a case that cannot be built is an error row, not a crash
        traceback.print_exc()
        return error_row(label, describe_error(e), threads=measure_kw.get("threads"),
                         suite=measure_kw.get("suite", ""))


@contextlib.contextmanager
def thread_limits(threads: int | None):
    """Give every compute pool of ours `threads` threads while inside, as the peers get: numpy's BLAS (via
    threadpoolctl when importable), and through the environment the DVM C VM (MSGX_NUM_THREADS, read when
    a session is built) and OpenMP kernels (OMP_NUM_THREADS, read when the OpenMP runtime starts)."""
    if not threads:
        yield
        return
    names = ("MSGX_NUM_THREADS", "OMP_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: str(threads) for k in names})
    try:
        try:
            import threadpoolctl
        except ImportError:
            yield
            return
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fmt_ms(runner: dict | None) -> str:
    if not runner or "median_s" not in runner:
        return "-"
    return f"{runner['median_s'] * 1e3:.3g} ({runner['q1_s'] * 1e3:.3g}-{runner['q3_s'] * 1e3:.3g})"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}"


def _cell(text: str, limit: int = 120) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def markdown_table(rows: list[dict], extra: dict[str, Callable[[dict], str]] | None = None) -> str:
    """One line per row: median ms (IQR) per runner, ours/peer ratios, extra columns, and the error."""
    runners: list[str] = []
    for row in rows:
        for name in ([row["ours"]] if row.get("ours") else []) + list(row["runners"]):
            if name not in runners:
                runners.append(name)
    ours = next((r["ours"] for r in rows if r.get("ours")), None)
    peers = [n for n in runners if n != ours and any(n in r["ratios"] for r in rows)]  # not references
    head = ["case", *[f"{n} ms (IQR)" for n in runners], *[f"{ours}/{p}" for p in peers], *(extra or {}),
            "error"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        cells = [row["case"], *[_fmt_ms(row["runners"].get(n)) for n in runners],
                 *[_fmt_ratio(row["ratios"].get(p)) for p in peers],
                 *[fn(row) for fn in (extra or {}).values()], _cell(row["error"] or "")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def add_output_args(p) -> None:
    """The options every suite shares: seed, outputs, quick mode, strictness."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON lines file (default: stdout)")
    p.add_argument("--md", help="also write the Markdown table(s) to this file")
    p.add_argument("--quick", action="store_true", help="few, short rounds")
    p.add_argument("--strict", action="store_true", help="exit 1 if any row has an error")


def finish(rows: list[dict], table: str, args) -> int:
    """Write the Markdown table (to --md, and to stdout or stderr beside the JSON lines); the exit code."""
    if args.md:
        with open(args.md, "w") as f:
            f.write(table)
    print(table, file=sys.stdout if args.out else sys.stderr, end="")
    return 1 if args.strict and any(r["error"] for r in rows) else 0


def add_timing_args(p, defaults: dict) -> None:
    """Rounds and time budgets every suite takes (unset means the suite's default)."""
    p.add_argument("--rounds", type=int, help=f"timed rounds (default {defaults['rounds']})")
    p.add_argument("--warmup", type=int, help=f"warm-up calls per runner (default {defaults['warmup']})")
    p.add_argument("--min-round-s", type=float, help="each round repeats calls for at least this long")
    p.add_argument("--max-case-s", type=float, help="time budget per case; slow cases get fewer rounds")
