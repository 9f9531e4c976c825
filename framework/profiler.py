"""Profiling into Chrome trace-event JSON (opens in Perfetto and chrome://tracing): one complete ("X") event
per kernel run, compile events (backend compile, DVM encode, C compile, agent generation) and pass timings.

Backends report compile work with `compile_event(name, cat, seconds, **args)`; it costs one thread-local
lookup when no profiler is active.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import defaultdict

from .errors import MsgxError

KERNEL, COMPILE, PASS, SESSION = "kernel", "compile", "pass", "session"
_LOCAL = threading.local()  # per thread: the stack of active profilers


class ProfileError(MsgxError):
    """A trace cannot be written or read (bad path, not a trace-event file)."""


def active() -> "Profiler | None":
    """The innermost profiler active on this thread, or None."""
    stack = getattr(_LOCAL, "stack", None)
    return stack[-1] if stack else None


class activated:
    """Make `prof` the target of compile_event on this thread while inside (None: nothing changes). A class,
    not a generator context manager: it brackets every profiled run, so it stays cheap."""

    __slots__ = ("prof",)

    def __init__(self, prof: "Profiler | None"):
        self.prof = prof

    def __enter__(self):
        if self.prof is not None:
            _LOCAL.__dict__.setdefault("stack", []).append(self.prof)

    def __exit__(self, *exc):
        if self.prof is not None:
            _LOCAL.stack.remove(self.prof)


def compile_event(name: str, cat: str, seconds: float, start: float | None = None, **args) -> None:
    """Record compile work that just ended (took `seconds`, or began at perf_counter `start`)."""
    prof = active()
    if prof is not None:
        end = time.perf_counter()
        prof.add(name, cat, end - seconds if start is None else start, end, **args)


def shape_dtype(x):
    """(shape, dtype) of an array value, None for anything else (an omitted input, a sequence)."""
    return (x.shape, x.dtype) if hasattr(x, "shape") and hasattr(x, "dtype") else None


def _unpack(info) -> tuple[list, int]:
    """Shapes as lists and the byte count of (shape, dtype) records."""
    shapes = [list(i[0]) if i is not None else None for i in info]
    return shapes, sum(math.prod(i[0]) * i[1].itemsize for i in info if i is not None)


class StepTimes:
    """One run's kernel records in compact form, for a run whose shapes repeat an earlier one (a shape-cache
    hit): the steps with their (shape, dtype) records, and the start and end time of each, flat."""

    __slots__ = ("info", "times")

    def __init__(self, info: list, times: list):
        self.info, self.times = info, times

    def records(self) -> list:
        t = self.times
        return [(st, t[2 * k], t[2 * k + 1], ins, outs) for k, (st, ins, outs) in enumerate(self.info)]


def _expand(records: list):
    """The (site, t0, t1, ins, outs) records of a run, StepTimes entries unpacked."""
    for r in records:
        if type(r) is StepTimes:
            yield from r.records()
        else:
            yield r


class Site:
    """Where a kernel ran, for executors without steps (PyNative): the node and its backend's name."""

    __slots__ = ("node", "backend")

    def __init__(self, node, backend: str):
        self.node, self.backend = node, backend


def kernel_class(op: str, backend: str, fallbacks=frozenset(), name: str = "") -> str:
    """'fused' (a cluster on a fast backend), 'fallback' (a cluster the numpy reference ran), else
    'reference' (an unfused op on the reference)."""
    if op != "msgx::Fused":
        return "reference" if backend == "numpy" else "fused"
    return "fallback" if backend == "numpy" or name in fallbacks else "fused"


class Profiler:
    """Collects events; kernel runs are kept raw (node, times, shapes) and turned into dicts on write."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.origin = time.perf_counter()
        self.pid = os.getpid()
        self.events: list[dict] = []
        # per run: (records, thread ident, run number); a record is (site, t0, t1, ins, outs) with site.node,
        # site.backend and (shape, dtype) per input/output: the executors append it right after the kernel
        # returns, cheaply, and events are built on write
        self._kernels: list[tuple] = []
        self._current = threading.local()  # per thread: the records list of the run in progress
        self._runs: list[tuple] = []  # (t0, t1, run, input shapes, thread): session runs, as events on write
        self._tids: dict[int, int] = {}
        self.runs = 0

    def _tid(self, ident: int | None = None) -> int:
        ident = threading.get_ident() if ident is None else ident
        tid = self._tids.get(ident)
        if tid is None:
            tid = self._tids[ident] = len(self._tids) + 1
        return tid

    def _us(self, t: float) -> float:
        return round((t - self.origin) * 1e6, 3)

    def add(self, name: str, cat: str, t0: float, t1: float, **args) -> None:
        """One complete event from perf_counter t0 to t1."""
        self.events.append({"name": name, "cat": cat, "ph": "X", "ts": self._us(t0),
                            "dur": round(max(t1 - t0, 0.0) * 1e6, 3), "pid": self.pid, "tid": self._tid(),
                            "args": args})

    def run_span(self, t0: float, t1: float, input_shapes: list) -> None:
        """One session run (kept raw: this sits between the last kernel and run()'s return)."""
        self._runs.append((t0, t1, self.runs, input_shapes, threading.get_ident()))

    def new_run(self) -> list:
        """The list that receives the kernel records of the run about to start."""
        records: list = []
        self._kernels.append((records, threading.get_ident(), self.runs))
        self._current.records = records
        return records

    def kernel(self, node, backend: str, t0: float, t1: float, args, outs) -> None:
        """PyNative's per-kernel hook: one record into the current run."""
        records = getattr(self._current, "records", None)
        if records is None:
            records = self.new_run()
        records.append((Site(node, backend), t0, t1, [shape_dtype(a) for a in args],
                        [shape_dtype(o) for o in outs]))

    def kernel_spans(self, first_run: int = 0) -> list[list[tuple[float, float]]]:
        """(t0, t1) of every kernel, per run, from run `first_run` on."""
        return [[(r[1], r[2]) for r in _expand(records)] for records, _, run in self._kernels if run >= first_run]

    def coverage(self, first_run: int = 0) -> list[float]:
        """Per session run from `first_run` on: the share of its time (the "run" event) that its kernels
        cover. What is left is the executor's own work between kernels."""
        spans = {run: (t0, t1) for t0, t1, run, _, _ in self._runs}
        out = []
        for records, _, run in self._kernels:
            if run >= first_run and run in spans and spans[run][1] > spans[run][0]:
                out.append(sum(r[2] - r[1] for r in _expand(records)) / (spans[run][1] - spans[run][0]))
        return out

    def kernel_events(self, fallbacks=frozenset(), first_run: int = 0) -> list[dict]:
        out = []
        for records, ident, run in self._kernels:
            if run < first_run:
                continue
            tid = self._tid(ident)
            for site, t0, t1, ins, outs in _expand(records):
                (ins, in_bytes), (outs, out_bytes) = _unpack(ins), _unpack(outs)
                node, backend = site.node, site.backend
                op = f"{node.domain}::{node.op}" if node.domain else node.op
                args = {"op": op, "backend": backend, "input_shapes": ins, "output_shapes": outs,
                        "bytes": in_bytes + out_bytes, "run": run,
                        "class": kernel_class(op, backend, fallbacks, node.name)}
                body = node.attrs.get("body") if op == "msgx::Fused" else None
                if body is not None:
                    args.update(kind=node.attrs.get("kind"), fused_ops=len(body.nodes),
                                ops=[n.op for n in body.nodes])
                out.append({"name": node.name or op, "cat": KERNEL, "ph": "X", "ts": self._us(t0),
                            "dur": round(max(t1 - t0, 0.0) * 1e6, 3), "pid": self.pid, "tid": tid,
                            "args": args})
        return out

    def trace(self, fallbacks=frozenset(), meta: dict | None = None) -> dict:
        """The whole trace as a trace-event JSON object (events sorted by start time)."""
        runs = [{"name": "run", "cat": SESSION, "ph": "X", "ts": self._us(t0),
                 "dur": round(max(t1 - t0, 0.0) * 1e6, 3), "pid": self.pid, "tid": self._tid(ident),
                 "args": {"run": run, "input_shapes": [list(s) for s in shapes]}}
                for t0, t1, run, shapes, ident in self._runs]
        events = sorted(self.events + runs + self.kernel_events(fallbacks), key=lambda e: (e["ts"], -e["dur"]))
        names = [{"name": "process_name", "ph": "M", "pid": self.pid, "tid": 0, "args": {"name": "msgx"}}]
        names += [{"name": "thread_name", "ph": "M", "pid": self.pid, "tid": tid,
                   "args": {"name": "main" if tid == 1 else f"thread {tid}"}} for tid in self._tids.values()]
        return {"traceEvents": names + events, "displayTimeUnit": "ms", "otherData": dict(meta or {})}

    def write(self, path: str | os.PathLike | None = None, fallbacks=frozenset(),
              meta: dict | None = None) -> str:
        """Write the trace (to `path`, the profiler's path, or msgx_profile_<time>.json); return the path."""
        path = os.fspath(path) if path is not None else self.path or \
            time.strftime("msgx_profile_%Y-%m-%d_%H-%M-%S.json")
        try:
            with open(path, "w") as f:
                json.dump(self.trace(fallbacks, meta), f)
        except OSError as e:
            raise ProfileError(f"cannot write the trace to {path!r}: {e.strerror or e}") from None
        return path


def load_trace(path: str | os.PathLike) -> list[dict]:
    """The events of a trace file (the object form or a bare list)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ProfileError(f"cannot read trace {os.fspath(path)!r}: {e}") from None
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise ProfileError(f"{os.fspath(path)!r} is not a trace-event file (no traceEvents list)")
    return events


def summarize(events: list[dict]) -> dict:
    """Kernel time per node (sorted, largest first) and the share of kernel time per class."""
    per: dict[str, dict] = {}
    by_class: dict[str, float] = defaultdict(float)
    total = 0.0
    for e in events:
        if e.get("cat") != KERNEL or e.get("ph") != "X":
            continue
        a = e.get("args", {})
        row = per.setdefault(e["name"], {"name": e["name"], "op": a.get("op", "?"),
                                         "backend": a.get("backend"), "class": a.get("class", "reference"),
                                         "calls": 0, "total_us": 0.0})
        row["calls"] += 1
        row["total_us"] += e["dur"]
        by_class[row["class"]] += e["dur"]
        total += e["dur"]
    rows = sorted(per.values(), key=lambda r: -r["total_us"])
    share = {c: (by_class.get(c, 0.0) / total if total else 0.0) for c in ("fused", "fallback", "reference")}
    return {"kernels": rows, "total_us": total, "share": share}


def format_summary(summary: dict, top: int = 15) -> str:
    """The top kernels by time as a text table, then the class shares."""
    total = summary["total_us"] or 1.0
    lines = [f"{'kernel':<40} {'op':<14} {'backend':<8} {'class':<9} {'calls':>6} {'total ms':>9} "
             f"{'mean us':>9} {'share':>6}"]
    for r in summary["kernels"][:top]:
        lines.append(f"{r['name'][:40]:<40} {r['op'][:14]:<14} {str(r['backend'])[:8]:<8} {r['class']:<9} "
                     f"{r['calls']:>6} {r['total_us'] / 1e3:>9.3f} {r['total_us'] / r['calls']:>9.1f} "
                     f"{r['total_us'] / total:>6.1%}")
    s = summary["share"]
    lines.append(f"kernel time {summary['total_us'] / 1e3:.3f} ms: fused kernels {s['fused']:.1%}, "
                 f"reference fallbacks (clusters on numpy) {s['fallback']:.1%}, "
                 f"unfused ops on the reference {s['reference']:.1%}")
    return "\n".join(lines)
