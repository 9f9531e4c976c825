"""Runs the ONNX node conformance cases (shipped with the onnx package) through msgx's Python API.

Used by tests/framework/test_conformance.py and as a script: `python -m tests.conformance [--mode graph]
[--op Add] [--report FILE]` prints one line per case (pass / fail: reason) and the pass rate.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import warnings
from functools import lru_cache

import numpy as np

import framework
from framework.errors import MsgxError

EXPECTED_FAILURES = __file__.replace("conformance.py", "framework/expected_failures.txt")


@lru_cache(maxsize=1)
def cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return tuple(collect_testcases(None))


def _compare(name, want, got, rtol, atol) -> str | None:
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{name}: expected a sequence of {len(want)}, got {type(got).__name__}"
        for i, (w, g) in enumerate(zip(want, got)):
            why = _compare(f"{name}[{i}]", w, g, rtol, atol)
            if why:
                return why
        return None
    if want is None:
        return None if got is None else f"{name}: expected an empty optional"
    want = np.asarray(want)
    if not isinstance(got, np.ndarray):
        return f"{name}: expected an array, got {type(got).__name__}"
    if want.dtype != got.dtype:
        return f"{name}: dtype {got.dtype}, expected {want.dtype}"
    if want.shape != got.shape:
        return f"{name}: shape {got.shape}, expected {want.shape}"
    if want.dtype == object or want.dtype.kind in "US":
        return None if want.tolist() == got.tolist() else f"{name}: strings differ"
    if want.dtype.kind in "biu":
        return None if np.array_equal(want, got) else f"{name}: values differ"
    w, g = want.astype(np.float64), got.astype(np.float64)
    if want.dtype.kind == "c":
        w, g = want.astype(np.complex128), got.astype(np.complex128)
    if np.allclose(g, w, rtol=rtol, atol=atol, equal_nan=True):
        return None
    err = np.nanmax(np.abs(g - w)) if w.size else 0
    return f"{name}: values differ (max abs err {err:.3g})"


def _data(value):
    """Test data may be arrays, TensorProtos (exotic dtypes), sequences (lists) or optionals (None)."""
    from onnx import TensorProto, numpy_helper
    if isinstance(value, TensorProto):
        arr = numpy_helper.to_array(value)
        return arr.astype(object) if arr.dtype.kind in "SU" else arr
    if isinstance(value, list):
        return [_data(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "SU":
        return value.astype(object)
    return value


def run_case(case, mode: str = "graph") -> str | None:
    """None when the case passes, else a one-line reason."""
    try:
        sess = framework.InferenceSession(case.model, mode=mode)
    except MsgxError as e:
        return f"load: {type(e).__name__}: {e}".splitlines()[0][:200]
    except Exception as e:  # a crash is a bug of ours: report it as such
        return f"load CRASH: {type(e).__name__}: {e}".splitlines()[0][:200]
    names = [i.name for i in case.model.graph.input]
    for inputs, outputs in case.data_sets:
        feed = {n: _data(v) for n, v in zip(names, inputs)}
        outputs = [_data(v) for v in outputs]
        try:
            with np.errstate(all="ignore"):
                got = sess.run(None, feed)
        except MsgxError as e:
            return f"run: {type(e).__name__}: {e}".splitlines()[0][:200]
        except Exception as e:
            return f"run CRASH: {type(e).__name__}: {e}".splitlines()[0][:200]
        if len(got) != len(outputs):
            return f"{len(got)} outputs, expected {len(outputs)}"
        for o, w, g in zip(case.model.graph.output, outputs, got):
            why = _compare(o.name, w, g, case.rtol, case.atol)
            if why:
                return why
    return None


def run_all(mode: str = "graph", op: str | None = None, progress=False) -> dict[str, str | None]:
    results = {}
    selected = [c for c in cases() if op is None or any(n.op_type == op for n in c.model.graph.node)]
    for i, c in enumerate(selected):
        results[c.name] = run_case(c, mode)
        if progress and i % 100 == 0:
            print(f"  {i}/{len(selected)}", file=sys.stderr)
    return results


def expected_failures(mode: str) -> set[str]:
    """Cases listed as failing in `mode`: lines of `MODE CASE  # reason`."""
    try:
        with open(EXPECTED_FAILURES) as f:
            rows = [line.split("#")[0].split() for line in f if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return set()
    return {r[1] for r in rows if len(r) >= 2 and r[0] == mode}


def write_expected() -> None:
    lines = ["# ONNX node cases msgx fails today, per executor; this list may only shrink.\n"]
    for mode in ("graph", "pynative"):
        for name, why in sorted(run_all(mode).items()):
            if why is not None:
                lines.append(f"{mode} {name}  # {why.replace(chr(10), ' ')[:160]}\n")
    with open(EXPECTED_FAILURES, "w") as f:
        f.writelines(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mode", default="graph", choices=["graph", "pynative"])
    p.add_argument("--op", default=None, help="only cases whose model uses this op type")
    p.add_argument("--report", default=None, help="write the per-case report here")
    p.add_argument("--failures-only", action="store_true")
    p.add_argument("--write-expected", action="store_true", help="rewrite tests/framework/expected_failures.txt")
    args = p.parse_args(argv)
    if args.write_expected:
        write_expected()
        return
    results = run_all(args.mode, args.op, progress=True)
    lines = [f"{name}\t{'pass' if why is None else 'fail: ' + why}" for name, why in sorted(results.items())]
    out = "\n".join(line for line in lines if not (args.failures_only and line.endswith("\tpass")))
    if args.report:
        with open(args.report, "w") as f:
            f.write(out + "\n")
    else:
        print(out)
    passed = sum(why is None for why in results.values())
    print(f"{args.mode}: {passed}/{len(results)} passed ({100 * passed / max(len(results), 1):.1f}%)")


if __name__ == "__main__":
    main()
