"""ONNX conformance: the test cases shipped with the onnx package, fed through msgx's Python API.

Suites: `node` (one op per case, ~1,900 cases), `simple`, `pytorch-converted`, `pytorch-operator`.
`msgx conformance [--suite S] [--mode M] [--jit-level L] [--json]` prints one line per case (pass / fail:
reason) and the pass rate; tests compare the failures against tests/framework/expected_failures.txt.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import os
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import onnx

from .errors import MsgxError
from .session import InferenceSession

SUITES = ("node", "simple", "pytorch-converted", "pytorch-operator")


@dataclass(frozen=True)
class Case:
    name: str
    model: onnx.ModelProto
    data_sets: tuple  # ((inputs, outputs), ...)
    rtol: float = 1e-3
    atol: float = 1e-7


@lru_cache(maxsize=None)
def cases(suite: str = "node") -> tuple[Case, ...]:
    if suite == "node":
        from onnx.backend.test.case.node import collect_testcases
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return tuple(Case(c.name, c.model, tuple(c.data_sets), c.rtol, c.atol) for c in collect_testcases(None))
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", suite)
    out = []
    for d in sorted(glob.glob(os.path.join(root, "*"))):
        model = onnx.load(os.path.join(d, "model.onnx"))
        sets = []
        for ds in sorted(glob.glob(os.path.join(d, "test_data_set_*"))):
            load = [_read_pb(p) for p in sorted(glob.glob(os.path.join(ds, "*.pb")))]
            names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ds, "*.pb")))
            sets.append(([v for n, v in zip(names, load) if n.startswith("input")],
                         [v for n, v in zip(names, load) if n.startswith("output")]))
        out.append(Case(os.path.basename(d), model, tuple(sets)))
    return tuple(out)


def _read_pb(path: str):
    """A test data file: a TensorProto, or a SequenceProto / OptionalProto."""
    from onnx import numpy_helper
    data = open(path, "rb").read()
    for proto_type in (onnx.TensorProto, onnx.SequenceProto, onnx.OptionalProto):
        proto = proto_type()
        try:
            proto.ParseFromString(data)
        except Exception:
            continue
        if proto_type is onnx.TensorProto and (proto.dims or proto.raw_data or proto.data_type):
            return proto
        if proto_type is onnx.SequenceProto:
            return numpy_helper.to_list(proto)
        if proto_type is onnx.OptionalProto:
            return numpy_helper.to_optional(proto)
    raise ValueError(f"cannot read test data {path}")


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


def run_case(case: Case, mode: str = "graph", jit_level: str = "O0") -> str | None:
    """None when the case passes, else a one-line reason."""
    try:
        sess = InferenceSession(case.model, mode=mode, jit_level=jit_level)
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
            if why and _random_ops(case.model):
                return (f"{why}; the model has random ops ({', '.join(_random_ops(case.model))}) whose draws "
                        "depend on the generator, so values cannot match (distributions are tested separately)")
            if why:
                return why
    return None


def _random_ops(model: onnx.ModelProto) -> list[str]:
    from . import ops
    opsets = {o.domain: o.version for o in model.opset_import}
    found = {n.op_type for n in model.graph.node
             if (d := ops.lookup(n.op_type, n.domain, opsets.get(n.domain))) is not None and not d.deterministic}
    return sorted(found)


def run_all(mode: str = "graph", op: str | None = None, progress: bool = False, suite: str = "node",
            jit_level: str = "O0") -> dict[str, str | None]:
    selected = [c for c in cases(suite) if op is None or any(n.op_type == op for n in c.model.graph.node)]
    results = {}
    live = sys.stderr.isatty()  # a bar redrawn in place on a terminal; a line per tenth in a log
    for i, c in enumerate(selected, 1):
        results[c.name] = run_case(c, mode, jit_level)
        tenth = 10 * i // len(selected) > 10 * (i - 1) // len(selected)
        if progress and (live or tenth):
            done = int(30 * i / len(selected))
            print(f"\r{suite} {mode} {jit_level} [{'#' * done}{'.' * (30 - done)}] {i}/{len(selected)}"
                  if live else f"{suite} {mode} {jit_level}: {i}/{len(selected)} cases",
                  end="" if live and i < len(selected) else "\n", file=sys.stderr, flush=True)
    return results


def expected_failures_path() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "framework",
                        "expected_failures.txt")


def expected_failures(mode: str, suite: str = "node") -> dict[str, str]:
    """Cases listed as failing, with their reasons: lines of `MODE SUITE/CASE  # reason`."""
    try:
        with open(expected_failures_path()) as f:
            rows = [(line.split("#")[0].split(), line.partition("#")[2].strip())
                    for line in f if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return {}
    return {r[1].split("/", 1)[1]: why for r, why in rows
            if len(r) >= 2 and r[0] == mode and r[1].startswith(suite + "/")}


def write_expected() -> None:
    lines = ["# ONNX conformance cases msgx fails today, per executor, with the reason; this list may only shrink.\n"]
    for mode in ("graph", "pynative"):
        for suite in SUITES:
            for name, why in sorted(run_all(mode, suite=suite, progress=True).items()):
                if why is not None:
                    lines.append(f"{mode} {suite}/{name}  # {why.replace(chr(10), ' ')[:160]}\n")
    with open(expected_failures_path(), "w") as f:
        f.writelines(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="msgx conformance", description=__doc__)
    p.add_argument("--suite", default="node", choices=SUITES + ("all",))
    p.add_argument("--mode", default="graph", choices=["graph", "pynative"])
    p.add_argument("--jit-level", default="O0", choices=["O0", "O1"])
    p.add_argument("--op", default=None, help="only cases whose model uses this op type")
    p.add_argument("--json", action="store_true", help="one JSON object per case on stdout")
    p.add_argument("--failures-only", action="store_true")
    p.add_argument("--write-expected", action="store_true", help="rewrite tests/framework/expected_failures.txt")
    args = p.parse_args(argv)
    if args.write_expected:
        write_expected()
        return 0
    total = passed = 0
    for suite in SUITES if args.suite == "all" else (args.suite,):
        results = run_all(args.mode, args.op, progress=True, suite=suite, jit_level=args.jit_level)
        for name, why in sorted(results.items()):
            if args.failures_only and why is None:
                continue
            if args.json:
                print(json.dumps({"suite": suite, "case": name, "mode": args.mode, "jit_level": args.jit_level,
                                  "passed": why is None, "reason": why}))
            else:
                print(f"{suite}/{name}\t{'pass' if why is None else 'fail: ' + why}")
        total += len(results)
        passed += sum(why is None for why in results.values())
    summary = f"{args.mode} {args.jit_level}: {passed}/{total} passed ({100 * passed / max(total, 1):.1f}%)"
    print(summary, file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
