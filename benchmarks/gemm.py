"""Our float32 GEMM (framework._ckernels.matmul, framework/csrc/gemm.c on its thread pool) vs numpy's matmul (OpenBLAS) vs
onnxruntime's MatMul (MLAS), on the bundled transformer's (tiny_gpt: d_model 64, 4 heads of 16, MLP 256)
matmul shapes at sequence lengths 1 to 256.

Each system gets the same thread count (1, then 2 by default): ours its `nthreads`, numpy's BLAS through
threadpoolctl, onnxruntime `intra_op_num_threads` with spinning off. All three write into a preallocated
output: numpy through `out=`, onnxruntime through an IO binding (`run_with_iobinding`, its cheapest call:
about half the per-call cost of `run`). onnxruntime's model is one MatMul node whose b is an initializer
where the model's b is a weight (2-D b: MLAS packs it once at session creation, as in the real model) and a
graph input otherwise (attention's batched products). Every output is checked against a float64 product
before timing. Rows: the harness's, with meta {shape, flops, gflops per runner}; ratios are ours / peer.
"""
from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

from . import harness, peers

SUITE = "gemm"
OURS, NUMPY, ORT = "msgx", "numpy", "onnxruntime"
DEFAULTS = {"rounds": 7, "warmup": 3, "min_round_s": 0.02, "max_case_s": 4.0}
QUICK = {"rounds": 3, "warmup": 1, "min_round_s": 0.005, "max_case_s": 1.0}
D_MODEL, HEADS, HEAD, MLP = 64, 4, 16, 256


def shapes(seqs: list[int]) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """(label, a shape, b shape) of tiny_gpt's matmuls: projections at every sequence length, attention's
    batched Q @ K^T and P @ V at the lengths above 1 (at 1 they are 16-element dot products)."""
    out = []
    for s in seqs:
        out += [(f"proj {s}x64@64x64", (s, D_MODEL), (D_MODEL, D_MODEL)),
                (f"fc {s}x64@64x256", (s, D_MODEL), (D_MODEL, MLP)),
                (f"proj2 {s}x256@256x64", (s, MLP), (MLP, D_MODEL))]
    for s in seqs:
        if s > 1:
            out += [(f"qk 4x{s}x16@16x{s}", (HEADS, s, HEAD), (HEADS, HEAD, s)),
                    (f"pv 4x{s}x{s}@{s}x16", (HEADS, s, s), (HEADS, s, HEAD))]
    return out


def ort_model(a_shape, b: np.ndarray):
    """One MatMul; b an initializer when 2-D (a weight), else a graph input."""
    from onnx import TensorProto, helper, numpy_helper

    const_b = b.ndim == 2
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(a_shape))]
    if not const_b:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, list(b.shape)))
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "matmul", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(b, "b")] if const_b else [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def build_case(label: str, a_shape, b_shape, threads: int, seed: int) -> harness.Case:
    from framework.ops.nn_ckernels import _C

    if _C is None:
        raise RuntimeError("framework._ckernels (our GEMM) is not built")
    matmul = _C.matmul
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(a_shape, dtype=np.float32)
    b = rng.standard_normal(b_shape, dtype=np.float32)
    out_shape = a_shape[:-1] + b_shape[-1:]
    outs = {name: np.empty(out_shape, np.float32) for name in (OURS, NUMPY, ORT)}
    sess = peers.ort_session(ort_model(a_shape, b), threads)
    io = sess.io_binding()
    io.bind_cpu_input("a", a)
    if b.ndim > 2:
        io.bind_cpu_input("b", b)
    io.bind_output("y", "cpu", 0, np.float32, list(out_shape), outs[ORT].ctypes.data)
    runners = {OURS: lambda: matmul(a, b, outs[OURS], threads),
               NUMPY: lambda: np.matmul(a, b, out=outs[NUMPY]),
               ORT: lambda: sess.run_with_iobinding(io)}
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-6 * np.sqrt(a_shape[-1]) * max(1.0, float(np.abs(want).max()))
    for name, fn in runners.items():
        outs[name].fill(np.nan)
        fn()
        err = float(np.abs(outs[name] - want).max())
        if not err <= tol:
            raise AssertionError(f"{name} differs from the float64 product by {err:.3g} "
                                 f"(tolerance {tol:.3g})")
    flops = 2 * int(np.prod(a_shape)) * b_shape[-1]
    return harness.Case(f"{label} t{threads}", runners, {"shape": [list(a_shape), list(b_shape)],
                                                         "flops": flops, "threads": threads})


def add_gflops(row: dict) -> dict:
    flops = row["meta"].get("flops")
    if flops:
        row["meta"]["gflops"] = {n: flops / r["median_s"] / 1e9 for n, r in row["runners"].items()
                                 if "median_s" in r}
    return row


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gemm", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--seqs", default="1,16,64,256", help="sequence lengths (default 1,16,64,256)")
    harness.add_output_args(p)
    harness.add_timing_args(p, DEFAULTS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    seqs = [int(s) for s in args.seqs.split(",")]
    kw = {**(QUICK if args.quick else DEFAULTS)}
    given = {"rounds": args.rounds, "warmup": args.warmup, "min_round_s": args.min_round_s,
             "max_case_s": args.max_case_s}
    kw.update({k: v for k, v in given.items() if v is not None})
    rows = []
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(args.out, "w")) if args.out else sys.stdout
        for t in threads:
            with harness.thread_limits(t):
                for label, a_shape, b_shape in shapes(seqs):
                    harness.progress(f"{label} t{t}")
                    case = harness._build(label, lambda: build_case(label, a_shape, b_shape, t, args.seed),
                                          {"threads": t, "suite": SUITE})
                    row = harness.measure(case, threads=t, suite=SUITE, baseline=ORT, **kw) \
                        if isinstance(case, harness.Case) else case
                    rows.append(add_gflops(row))
                    harness.emit(row, stream)
    gf = {"GFLOP/s ours": lambda r: f"{r['meta'].get('gflops', {}).get(OURS, 0):.0f}"}
    return harness.finish(rows, harness.markdown_table(rows, gf), args)


if __name__ == "__main__":
    sys.exit(main())
