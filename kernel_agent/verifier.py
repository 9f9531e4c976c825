"""The verifier, a program (not a model): runs a candidate in the sandbox on several seeds and edge inputs and
compares every output with a float64 run of the reference; each rejection names its reason."""
# Tolerance: |got - ref64| <= atol + rtol*|ref64| with atol = max(1e-5 * max|ref64|, 2 x the reference's own
# error at its dtype); an element also passes where it matches the reference run at the task's dtype (that
# precision's overflow/NaN behaviour). NaN must match NaN; signed zeros compare equal (IEEE).
from __future__ import annotations

import os
import pickle
import atexit
import select
import subprocess
import threading
import sys
from dataclasses import dataclass, field

import numpy as np

from .kernel import forbidden_symbols

RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9, np.dtype(np.float16): 1e-2}


@dataclass
class Verdict:
    """ok, the reason when not, and what was checked (cases, worst errors, candidate timings)."""

    ok: bool
    reason: str = ""
    record: dict = field(default_factory=dict)


def edge_cases(inputs: list, index_inputs: set, rng) -> list[tuple[str, list]]:
    """Edge variants of one input set: zeros, -0.0, NaN/Inf sprinkled, denormals, large values, int limits."""
    def vary(fn):
        return [fn(a) if (a.dtype.kind == "f" and i not in index_inputs) else a for i, a in enumerate(inputs)]

    def sprinkle(a):
        b = a.copy()
        flat = b.reshape(-1)
        if flat.size:
            pos = rng.choice(flat.size, size=min(3, flat.size), replace=False)
            for p, v in zip(pos, (np.nan, np.inf, -np.inf)):
                flat[p] = v
        return b
    tiny = {np.dtype(np.float32): 1e-42, np.dtype(np.float64): 1e-310}
    cases = [("zeros", vary(np.zeros_like)), ("negative-zero", vary(lambda a: np.full_like(a, -0.0))),
             ("nan-inf", vary(sprinkle)),
             ("denormals", vary(lambda a: (a * tiny.get(a.dtype, 0)).astype(a.dtype))),
             ("large", vary(lambda a: (a * 100).astype(a.dtype)))]
    ints = [i for i, a in enumerate(inputs) if a.dtype.kind in "iu" and i not in index_inputs]
    if ints:
        lim = [np.full_like(a, np.iinfo(a.dtype).max if k % 2 else np.iinfo(a.dtype).min)
               if i in ints else a for k, (i, a) in enumerate(enumerate(inputs))]
        cases.append(("integer-limits", lim))
    return cases


def _f64(a):
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def compare(got, ref64, ref_native, inputs) -> str:
    """'' when `got` passes, else the reason."""
    got = np.asarray(got)
    if got.shape != ref_native.shape:
        return f"output shape {got.shape}, expected {ref_native.shape}"
    if got.dtype != ref_native.dtype:
        return f"output dtype {got.dtype}, expected {ref_native.dtype}"
    if got.dtype.kind not in "fc":
        bad = got != ref_native
        return f"{int(bad.sum())} of {got.size} elements differ" if bad.any() else ""
    g, r, rn = got.astype(np.float64), np.asarray(ref64, np.float64), ref_native.astype(np.float64)
    fin = np.isfinite(r)
    scale = float(np.abs(r[fin]).max()) if fin.any() else 1.0
    both = fin & np.isfinite(rn)
    own = np.abs(rn[both] - r[both])
    atol = max(1e-5 * max(scale, 1e-30), 2 * float(own.max()) if own.size else 0.0)
    rtol = RTOL.get(got.dtype, 1e-4)

    def close(x, y):
        with np.errstate(invalid="ignore"):
            both_nan = np.isnan(x) & np.isnan(y)
            same_inf = np.isinf(x) & (x == y)
            return both_nan | same_inf | (np.abs(x - y) <= atol + rtol * np.abs(y))
    ok = close(g, r) | close(g, rn)
    if ok.all():
        return ""
    if scale > atol and not np.any(g) and np.any(np.abs(r[fin]) > atol):
        return "output is all zeros"
    for k, a in enumerate(inputs):
        if a.shape == got.shape and np.array_equal(a, got, equal_nan=True):
            return f"output is a copy of input {k}"
    if np.isnan(g[~ok]).any() and not np.isnan(r[~ok]).all():
        return f"NaN where the reference is finite ({int((np.isnan(g) & ~ok).sum())} elements)"
    i = int(np.flatnonzero(~ok)[0])
    return (f"{int((~ok).sum())} of {got.size} elements off; first at flat index {i}: got {g.flat[i]!r}, "
            f"reference {r.flat[i]!r} (atol {atol:.3g}, rtol {rtol:g})")


class _Server:
    """The fork server (kernel_agent.sandbox), started once per process and restarted if it dies."""

    def __init__(self):
        self.proc = None
        self.lock = threading.Lock()

    def start(self):
        env = dict(os.environ, OMP_WAIT_POLICY="passive")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "kernel_agent.sandbox"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env,
                                     stderr=None if os.environ.get("MSGX_SANDBOX_DEBUG")
                                     else subprocess.DEVNULL)
        atexit.register(self.stop)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def request(self, job: dict, timeout: float) -> dict:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            job = dict(job, timeout=timeout)
            data = pickle.dumps(job)
            try:
                self.proc.stdin.write(len(data).to_bytes(8, "little") + data)
                self.proc.stdin.flush()
                ready = select.select([self.proc.stdout], [], [], timeout + 60)[0]
                if not ready:
                    raise OSError("no answer")
                head = self.proc.stdout.read(8)
                if len(head) < 8:
                    raise OSError("server exited")
                return pickle.loads(self.proc.stdout.read(int.from_bytes(head, "little")))
            except (OSError, pickle.UnpicklingError) as e:
                self.stop()
                return {"error": f"sandbox server failed: {e}"}


_SERVER = _Server()


def run_child(job: dict, timeout: float) -> dict:
    """Run one job in a forked sandbox child; crashes and timeouts come back as {'error': reason}."""
    return _SERVER.request(job, timeout)


def _check(outs, refs, cases, names, c, n_seed) -> str:
    got, (r64, rn) = outs[c], refs[c]
    if len(got) != len(rn):
        return f"{len(got)} outputs, expected {len(rn)}"
    for k, (g, a, b) in enumerate(zip(got, r64, rn)):
        why = compare(g, a, b, cases[c])
        if why and c >= n_seed:
            return f"wrong only on {names[c]} (all seeds pass), output {k}: {why}"
        if why:
            return f"{names[c]}, output {k}: {why}"
    return ""


def verify(task, candidate: dict, *, seeds=(0, 1, 2), reps: int = 0, timeout: float = 30.0) -> Verdict:
    """Check a candidate ({'kind': 'c', 'spec', 'so_path'} or {'kind': 'py', 'source'}) against the task."""
    if candidate["kind"] == "error":
        return Verdict(False, candidate["reason"])
    if candidate["kind"] == "c" and candidate["so_path"]:
        src = candidate["spec"].source
        if "asm" in src or "syscall" in src:
            return Verdict(False, "inline assembly / raw system calls are not allowed")
        bad = forbidden_symbols(candidate["so_path"])
        if bad:
            return Verdict(False, "; ".join(bad))
    cases, names = [], []
    for s in seeds:
        cases.append(task.make_inputs(s))
        names.append(f"seed {s}")
    rng = np.random.default_rng(1234)
    for name, case in edge_cases(cases[0], task.index_inputs, rng):
        cases.append(case)
        names.append(f"edge input '{name}'")
    refs = []
    for case in cases:
        with np.errstate(all="ignore"):
            r64 = task.run_reference([_f64(a) for a in case])
            rn = task.run_reference([a.copy() for a in case])
        refs.append((r64, rn))
    job = dict(candidate, cases=cases, reps=reps)
    res = run_child(job, timeout)
    if "error" in res:
        return Verdict(False, res["error"])
    if res["changed"]:
        c, k = res["changed"][0]
        return Verdict(False, f"modified its input {k} ({names[c]})")
    record = {"cases": names, "times": res["times"]}
    outs = res["outputs"]
    n_seed = len(seeds)
    order = [0] + [c for c in range(1, len(cases))]  # seed 0 first, then the cache check, then the rest
    why0 = _check(outs, refs, cases, names, 0, n_seed)
    if why0:
        return Verdict(False, why0, record)
    for i in range(1, n_seed):
        if all(np.array_equal(a, b, equal_nan=True) for a, b in zip(outs[0], outs[i])) and \
                not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(refs[0][1], refs[i][1])):
            return Verdict(False, "returns the same output for different inputs (cached result)", record)
    for c in order[1:]:
        why = _check(outs, refs, cases, names, c, n_seed)
        if why:
            return Verdict(False, why, record)
    for c, (a_out, b_out) in enumerate(zip(outs, res["again"])):
        if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(a_out, b_out)):
            return Verdict(False, f"output changed when run again after timing ({names[c]})", record)
    return Verdict(True, "", record)
