"""Runs hostile models (mutate.py) in a worker subprocess under an address-space limit and a per-model alarm,
so a crash, hang or runaway allocation is recorded against the model instead of ending the run."""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .mutate import STRICT, mutation

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 6 << 30  # address space of the worker (BLAS and the DVM pool reserve some without touching it)
TIME_LIMIT = 20.0  # seconds per model (the machine is shared)
RSS_LIMIT = 1 << 30  # resident growth one model may cause


class _Hang(BaseException):
    """Raised by the per-model alarm; a BaseException so no `except Exception` in msgx swallows it."""


def _on_alarm(*_):
    raise _Hang()


def guarded(fn, time_limit: float) -> str:
    """Call fn under an alarm; the outcome as a short string."""
    from framework.errors import MsgxError

    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        fn()
        return "ran"
    except MsgxError as e:
        return f"MsgxError:{type(e).__name__}"
    except _Hang:
        return "hang"
    except BaseException as e:  # noqa: BLE001 - anything else is what this test exists to find
        return f"other:{type(e).__name__}: {str(e)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


SESSIONS = (
    dict(mode="graph", jit_level="O0"),
    dict(mode="graph", jit_level="O1"),
    dict(mode="pynative", jit_level="O0"),
)


def classify(category: str, model, feed, time_limit: float = TIME_LIMIT) -> str:
    """Load and run one model in each executor; the worst outcome (crash-like, then a run, then MsgxError)."""
    import framework

    outcomes = [
        guarded(lambda: framework.InferenceSession(model, **kw).run(None, feed), time_limit)
        for kw in SESSIONS
    ]
    return min(outcomes, key=lambda o: (o.startswith("MsgxError"), o == "ran"))


def worker(seed: int, start: int, count: int, workdir: str, time_limit: float) -> None:
    """Subprocess side: one JSON line before and after each model."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    import framework  # noqa: F401 - imported before the first model, so its memory is the baseline

    # tests of this harness plant a crash or a hang at given indices: "crash:1,hang:3"
    plant = {
        int(i): what
        for what, i in (p.split(":") for p in os.environ.get("MSGX_HOSTILE_PLANT", "").split(",") if p)
    }
    for i in range(start, start + count):
        print(json.dumps({"i": i, "phase": "start"}), flush=True)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        if plant.get(i) == "crash":
            os.abort()
        if plant.get(i) == "hang":
            category, outcome = "planted", guarded(lambda: time.sleep(1e6), time_limit)
        else:
            try:
                category, model, feed = mutation(i, seed, Path(workdir))
            except Exception as e:  # a generator bug, not a finding about msgx
                print(json.dumps({"i": i, "category": "?", "outcome": f"generator:{e!r}"}), flush=True)
                continue
            outcome = classify(category, model, feed, time_limit)
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
        print(
            json.dumps(
                {
                    "i": i,
                    "category": category,
                    "outcome": outcome,
                    "rss_growth": grew,
                    "seconds": time.perf_counter() - t0,
                }
            ),
            flush=True,
        )


@dataclass
class HostileStats:
    tried: int = 0
    outcomes: dict = field(default_factory=dict)  # category -> {outcome: count}
    failures: list = field(default_factory=list)  # (index, category, outcome)
    max_rss_growth: int = 0
    max_seconds: float = 0.0
    restarts: int = 0

    def add(self, i: int, category: str, outcome: str) -> None:
        self.tried += 1
        per = self.outcomes.setdefault(category, {})
        key = outcome if outcome.startswith("MsgxError") else outcome.split(":")[0]
        per[key] = per.get(key, 0) + 1
        if not acceptable(category, outcome):
            self.failures.append((i, category, outcome))


def acceptable(category: str, outcome: str) -> bool:
    return outcome.startswith("MsgxError") or (outcome == "ran" and category not in STRICT)


def run_hostile(count: int, seed: int = 0, workdir: str | None = None) -> HostileStats:
    """Run `count` mutations in worker subprocesses; a dead or stuck worker is replaced."""
    import tempfile

    stats = HostileStats()
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    with tempfile.TemporaryDirectory(prefix="msgx-hostile-") as tmp:
        nxt = 0
        while nxt < count:
            cmd = [
                sys.executable,
                "-m",
                "tests.reliability.hostile",
                str(seed),
                str(nxt),
                str(count - nxt),
                workdir or tmp,
                str(TIME_LIMIT),
            ]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
            current = None
            try:
                while True:
                    # per model TIME_LIMIT plus slack for an alarm that cannot fire; longer to start
                    wait = TIME_LIMIT + 30 if current is not None else 300
                    ready, _, _ = select.select([proc.stdout], [], [], wait)
                    if not ready:  # stuck outside Python (the alarm could not fire): a hang
                        stats.add(current, "?", "hang (killed)")
                        break
                    line = proc.stdout.readline()
                    if not line:  # the worker died: a crash if it was inside a model
                        rc = proc.wait()
                        if current is not None:
                            stats.add(current, "?", f"crash (exit {rc})")
                        break
                    msg = json.loads(line)
                    if msg.get("phase") == "start":
                        current = msg["i"]
                        continue
                    current = None
                    stats.add(msg["i"], msg["category"], msg["outcome"])
                    stats.max_rss_growth = max(stats.max_rss_growth, msg.get("rss_growth", 0))
                    stats.max_seconds = max(stats.max_seconds, msg.get("seconds", 0.0))
                    if msg.get("rss_growth", 0) > RSS_LIMIT:
                        stats.failures.append(
                            (msg["i"], msg["category"], f"rss grew {msg['rss_growth']} bytes")
                        )
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
            nxt = stats.tried
            if nxt < count:
                stats.restarts += 1
    return stats


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
