"""The models suite: bundled models and the onnx model-zoo architectures, msgx vs onnxruntime.

Each model is first checked (outputs match onnxruntime), then timed by the harness; compile (session
creation) times of both go into the row. A model that fails or mismatches is an error row.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import harness, peers, zoo

SUITE = "models"
RTOL, ATOL = 1e-3, 1e-4
BUNDLED_DIMS: dict[str, list[dict[str, int]]] = {
    "tiny_gpt": [{"batch": 1, "seq": 16}, {"batch": 4, "seq": 64}, {"batch": 8, "seq": 128}],
    "mobilenet": [{"batch": 1, "height": h, "width": h} for h in (32, 64, 128)],
    "mlp": [{"batch": 1}, {"batch": 64}],
}
DEFAULTS = {"rounds": 7, "warmup": 2, "min_round_s": 0.05, "max_case_s": 12.0}
QUICK = {"rounds": 3, "warmup": 1, "min_round_s": 0.01, "max_case_s": 4.0}


@dataclass
class Spec:
    """One model at one input size; `load` returns (ModelProto, feed)."""

    name: str
    model: str
    source: str
    dims: dict = field(default_factory=dict)
    load: Callable[[], tuple] = lambda: (None, None)


def _bundled_name(model: str, dims: dict) -> str:
    if "height" in dims:
        return f"{model} b{dims['batch']} {dims['height']}x{dims['width']}"
    return f"{model} " + " ".join(f"{k[0]}{v}" for k, v in dims.items())


def specs(seed: int = 0) -> list[Spec]:
    """Every case of the suite, bundled models first; loading is deferred to `Spec.load`."""
    import onnx

    import onnx_models

    out = []
    for model, variants in BUNDLED_DIMS.items():
        for dims in variants:
            out.append(Spec(_bundled_name(model, dims), model, "bundled", dims,
                            lambda m=model, d=dims: (onnx_models.build(m, seed=seed),
                                                     onnx_models.example_inputs(m, d, seed=seed))))
    for model, path in zoo.zoo_models().items():
        def load(p=path):
            m = zoo.randomize_weights(onnx.load(p), seed)
            return m, zoo.random_feed(m, seed)
        out.append(Spec(model, model, "onnx-zoo", {}, load))
    return out


def msgx_session(model, mode: str = "graph", jit_level: str = "O0"):
    """Our session (a seam: tests replace it)."""
    import framework

    return framework.InferenceSession(model, mode=mode, jit_level=jit_level)


def compare(ours: list, ref: list, rtol: float = RTOL, atol: float = ATOL) -> dict:
    """Outputs match when |ours - ref| <= atol + rtol*|ref| after dividing both by max|ref| (per output)."""
    if len(ours) != len(ref):
        return {"ok": False, "why": f"{len(ours)} outputs, onnxruntime gives {len(ref)}"}
    max_abs = max_scaled = 0.0
    for i, (a, b) in enumerate(zip(ours, ref)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return {"ok": False, "why": f"output {i}: shape {list(a.shape)} vs onnxruntime {list(b.shape)}"}
        if b.dtype.kind not in "fc":
            if not np.array_equal(a, b):
                return {"ok": False, "why": f"output {i}: {b.dtype} values differ"}
            continue
        diff = np.abs(a.astype(np.float64) - b)
        scale = max(float(np.max(np.abs(b))), 1e-30) if b.size else 1.0
        max_abs = max(max_abs, float(np.max(diff)) if b.size else 0.0)
        max_scaled = max(max_scaled, float(np.max(diff)) / scale if b.size else 0.0)
        if not np.allclose(a / scale, b / scale, rtol=rtol, atol=atol, equal_nan=True):
            return {"ok": False, "why": f"output {i}: max |err| {max_abs:.3g} (scaled {max_scaled:.3g})",
                    "max_abs_err": max_abs, "max_scaled_err": max_scaled}
    return {"ok": True, "max_abs_err": max_abs, "max_scaled_err": max_scaled}


def _fail(spec: Spec, meta: dict, error: str, kind: str, threads: int) -> dict:
    meta["error_kind"] = kind
    return harness.error_row(spec.name, error, ours="msgx", baseline="onnxruntime", meta=meta,
                             threads=threads, suite=SUITE)


def _msgx_call(what: str, fn: Callable):
    """Run fn; return (result, None) or (None, (message, kind)); non-MsgxError exceptions are bugs."""
    from framework.errors import MsgxError

    try:
        return fn(), None
    except MsgxError as e:
        return None, (f"msgx {what}: {harness.describe_error(e)}", "MsgxError")
    except Exception as e:  # noqa: BLE001 - a bug in msgx must not stop the suite; the traceback says where
        traceback.print_exc()
        return None, (f"msgx {what} crashed: {harness.describe_error(e)}", "unexpected")


def build_case(spec: Spec, threads: int, mode: str = "graph", jit_level: str = "O0") -> harness.Case | dict:
    """Load, compile both, check outputs; the Case to time, or an error row."""
    meta: dict = {"model": spec.model, "source": spec.source, "dims": spec.dims, "mode": mode,
                  "jit_level": jit_level, "compile_s": {}}
    harness.progress(f"  loading {spec.name}")
    model, feed = spec.load()
    meta["inputs"] = {k: list(v.shape) for k, v in feed.items()}
    import onnxruntime  # noqa: F401

    import framework  # noqa: F401 - imported before the clocks start: import time is not compile time

    t0 = time.perf_counter()
    ort = peers.ort_session(model, threads)
    meta["compile_s"]["onnxruntime"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sess, err = _msgx_call("session", lambda: msgx_session(model, mode, jit_level))
    if err:
        return _fail(spec, meta, *err, threads)
    meta["compile_s"]["msgx"] = time.perf_counter() - t0
    stats = getattr(sess, "stats", {}) or {}
    meta["msgx_stats"] = {k: stats[k] for k in ("nodes", "backends", "fallbacks", "clusters") if k in stats}
    ref = ort.run(None, feed)
    ours, err = _msgx_call("run", lambda: sess.run(None, feed))
    if err:
        return _fail(spec, meta, *err, threads)
    check = compare(ours, ref)
    meta.update({k: v for k, v in check.items() if k != "ok"})
    if not check["ok"]:
        return _fail(spec, meta, f"mismatch vs onnxruntime: {check['why']}", "mismatch", threads)
    runners = {"msgx": lambda: sess.run(None, feed), "onnxruntime": lambda: ort.run(None, feed)}
    return harness.Case(spec.name, runners, meta)


def _compile_cell(row: dict) -> str:
    c = row["meta"].get("compile_s", {})
    return " / ".join(f"{c[k]:.2f}" if k in c else "-" for k in ("msgx", "onnxruntime"))


def _err_cell(row: dict) -> str:
    e = row["meta"].get("max_scaled_err")
    return "-" if e is None else f"{e:.1e}"


MD_EXTRA = {"compile s (msgx / ort)": _compile_cell, "max err (scaled)": _err_cell}


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msgx bench models", description=__doc__.splitlines()[0])
    p.add_argument("--models", help="comma-separated model names (default: all); --list shows them")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    harness.add_timing_args(p, DEFAULTS)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="onnxruntime intra-op threads (and numpy BLAS via threadpoolctl when installed)")
    p.add_argument("--mode", default="graph", choices=["graph", "pynative"])
    p.add_argument("--jit-level", default="O0", choices=["O0", "O1"])
    harness.add_output_args(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    all_specs = specs(args.seed)
    if args.list:
        print("\n".join(f"{s.model:14} {s.name}" for s in all_specs))
        return 0
    chosen = all_specs
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = sorted(set(wanted) - {s.model for s in all_specs})
        if unknown:
            print(f"msgx bench models: unknown model(s) {unknown}; known: "
                  f"{', '.join(dict.fromkeys(s.model for s in all_specs))}", file=sys.stderr)
            return 2
        chosen = [s for s in all_specs if s.model in wanted]
    kw = {**(QUICK if args.quick else DEFAULTS)}
    given = {"rounds": args.rounds, "warmup": args.warmup, "min_round_s": args.min_round_s,
             "max_case_s": args.max_case_s}
    kw.update({k: v for k, v in given.items() if v is not None})
    items = [(s.name, lambda s=s: build_case(s, args.threads, args.mode, args.jit_level)) for s in chosen]
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(args.out, "w")) if args.out else sys.stdout
        stack.enter_context(harness.thread_limits(args.threads))
        rows = harness.run_cases(items, stream=stream, threads=args.threads, suite=SUITE,
                                 baseline="onnxruntime", **kw)
    table = harness.markdown_table(rows, MD_EXTRA)
    return harness.finish(rows, table, args)


if __name__ == "__main__":
    sys.exit(main())
