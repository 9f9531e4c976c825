"""Tuner: successive halving over variants. Each round verifies and times the surviving candidates in the
sandbox (every timing run is followed by a re-verification there) and keeps the faster half, within a step
budget counted in sandbox runs."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .verifier import Verdict, verify

MARGIN = 1.15


@dataclass
class Trial:
    """One candidate's history: its label, verdicts and measured times (seconds)."""

    label: str
    candidate: dict
    verdicts: list = field(default_factory=list)
    times: list = field(default_factory=list)

    @property
    def time(self) -> float:
        """The median timed call. Not the fastest: a multi-threaded variant waits for its slowest thread, so
        on a machine whose other cores are busy it is fast only when it happens to find them idle, and its
        best call says little about what a caller gets."""
        return statistics.median(self.times) if self.times else float("inf")


def successive_halving(task, candidates: list[tuple[str, dict]], budget: int, reps=(5, 15),
                       log=lambda msg: None) -> tuple[Trial | None, list[Trial], int]:
    """(best accepted trial or None, all trials, sandbox runs used)."""
    alive = [Trial(label, cand) for label, cand in candidates]
    trials, used, rnd = list(alive), 0, 0
    while alive and used < budget:
        r = reps[min(rnd, len(reps) - 1)]
        for t in list(alive):
            if used >= budget:
                break
            v: Verdict = verify(task, t.candidate, reps=r)
            used += 1
            t.verdicts.append(v)
            if not v.ok:
                alive.remove(t)
                log(f"  {t.label}: rejected: {v.reason}")
                continue
            t.times.extend(v.record.get("times", []))
            log(f"  {t.label}: ok, {t.time * 1e3:.3f} ms")
        tried = [t for t in alive if t.verdicts and len(t.verdicts) == rnd + 1]
        if len(tried) <= 1:
            break
        tried.sort(key=lambda t: _cost(t, trials[0]))
        alive = tried[:max(1, len(tried) // 2)]
        rnd += 1
    ok = [t for t in trials if t.verdicts and all(v.ok for v in t.verdicts)]
    best = min(ok, key=lambda t: _cost(t, trials[0])) if ok else None
    return best, trials, used


def _cost(t: Trial, default: Trial) -> float:
    """Time, with the designer's first choice favoured by MARGIN: on a shared machine a smaller difference
    is within the noise of a few timed calls."""
    return t.time / MARGIN if t is default else t.time
