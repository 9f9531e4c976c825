"""The polyhedral suite. (1) PolyBench: per kernel and thread count, the original loop order, isl's schedule,
each preset and Polly (clang -O3 -mllvm -polly on the original-order C), all correctness-gated against numpy.
(2) Fused DL loop nests: O1 sessions with the polyhedral backend vs the DVM. (3) A static-shape model at O1
(poly) vs O0, with its compile time and a second session's compiler runs.

Ours is the `cpu-contiguity` preset; ratios are ours / peer median (< 1: ours is faster).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from . import harness

SUITE = "poly"
OURS = "cpu-contiguity"
SCHEDULES = ("cpu-contiguity", "original", "isl", "feautrier", "pluto-like")
DEFAULTS = {"rounds": 5, "warmup": 1, "min_round_s": 0.05, "max_case_s": 20.0}
QUICK = {"rounds": 3, "warmup": 1, "min_round_s": 0.01, "max_case_s": 5.0}
# LARGE kernels run for 0.3 ms to 20 s a call (seidel-2d's original order ~20 s): the correctness call warms
# the code, so no extra warm-up, and a case's budget cuts rounds down to one, which keeps a full run of both
# sizes near 15 minutes on 2 cores. A round still repeats a call for 50 ms: one call of a 0.3-2 ms kernel
# timed the caches the runner before it left (jacobi-1d LARGE, identical loops: 0.41 against the original's
# 0.33 ms timed once per round, 0.297 against 0.297 over 50 ms rounds). `--rounds` etc. still override.
LARGE = {"rounds": 3, "warmup": 0, "min_round_s": 0.05, "max_case_s": 30.0, "min_rounds": 1}
# the peers every size runs; the other presets only at MEDIUM unless --peers names them (at LARGE
# feautrier/pluto-like double the run time and are not part of issue #6's must-shows)
LARGE_SCHEDULES = ("cpu-contiguity", "original", "isl")
CHECK_REL_ERR = 1e-6  # a kernel's output against numpy's (max abs error / max abs value), float64 arrays
POLLY_FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math",
               "-fno-signed-zeros", "-fassociative-math", "-mllvm", "-polly", "-mllvm", "-polly-parallel")


def ensure_polly() -> str | None:
    """clang with Polly; installs Debian's clang + libpolly-<ver>-dev when absent. None (with a message
    on stderr) when it cannot: the Polly column is then an error, the rest of the suite still runs."""
    def works():
        cc = shutil.which("clang")
        if not cc:
            return None
        probe = subprocess.run([cc, "-O3", "-mllvm", "-polly", "-x", "c", "-c", "-", "-o", "/dev/null"],
                               input="int f(int*a){for(int i=0;i<9;i++)a[i]=i;return 0;}", text=True,
                               capture_output=True)
        return cc if probe.returncode == 0 else None
    cc = works()
    if cc:
        return cc
    harness.progress("Polly not found: installing clang and libpolly with apt-get ...")
    try:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=600)
        ver = subprocess.run(["apt-cache", "policy", "clang"], capture_output=True, text=True).stdout
        major = next((ln.split(":")[-1].split(".")[0].strip() for ln in ver.splitlines()
                      if "Candidate" in ln), "")
        subprocess.run(["apt-get", "install", "-y", "clang", f"libpolly-{major}-dev", f"libomp-{major}-dev"],
                       check=True, capture_output=True, timeout=1200)
    except (OSError, subprocess.SubprocessError, StopIteration) as e:
        print(f"benchmarks poly: cannot install Polly ({e}); run `apt-get install clang libpolly-<ver>-dev` "
              "as root", file=sys.stderr)
        return None
    cc = works()
    if not cc:
        print("benchmarks poly: clang -mllvm -polly still fails after installing; Polly rows are errors",
              file=sys.stderr)
    return cc


def build_flags():
    from polyhedral import build
    return build.FLAGS


_REFERENCES: dict = {}  # (kernel, size) -> (inputs, numpy result): LARGE references take seconds each


def _reference(name, size):
    from polyhedral import polybench

    if (name, size) not in _REFERENCES:
        scop = polybench.SCOPS[name]
        x = polybench.inputs(scop, scop.sizes[size], seed=1)
        _REFERENCES[(name, size)] = (x, polybench.reference(name, x, scop.sizes[size]))
    return _REFERENCES[(name, size)]


def _polybench_case(name, size, threads, polly_cc, flags_note, schedules=SCHEDULES):
    from polyhedral import build, codegen, config, polybench, scheduler

    scop = polybench.SCOPS[name]
    b = scop.sizes[size]
    t0 = time.perf_counter()
    items, sched_s = [], {}
    for preset in schedules:
        t1 = time.perf_counter()
        res = scheduler.schedule(scop, b, config.preset(preset))
        items.append((scop, b, res, f"k_{preset.replace('-', '_')}"))
        sched_s[preset] = time.perf_counter() - t1
    kernels = dict(zip(schedules, build.compile_scops(items)))
    setter = kernels[OURS]
    if polly_cc:
        src = codegen.translation_unit([codegen.function(scop, b, items[schedules.index("original")][2],
                                                         "k_polly")])
        lib = build.load(build.shared_library(src, POLLY_FLAGS, cc=polly_cc, libs=("-lgomp", "-lm")))
        kernels["polly"] = build.Kernel(lib, "k_polly", scop, b)
    x, ref = _reference(name, size)
    written = [a.name for a in scop.arrays if a.role != "in"]
    runners, checks = {}, {}
    # one set of arrays for every variant: with a copy each, where the copies happened to lie decided the time
    # (jacobi-1d LARGE, the same loops in three variants: 0.188 / 0.211 / 0.210 ms apart, 0.196 for all three
    # on shared arrays, 0.234 for all three on another allocation)
    arrays = {a.name: x[a.name].copy() for a in scop.arrays}
    for label, k in kernels.items():
        for a in written:
            np.copyto(arrays[a], x[a])
        setter.set_threads(threads)
        k(arrays, x)
        err = max(float(np.max(np.abs(arrays[a] - v))) / max(1e-300, float(np.max(np.abs(v))))
                  for a, v in ref.items())
        checks[label] = err
        if not err < CHECK_REL_ERR:  # NaN fails too
            continue

        def run(k=k):
            for a in written:  # restore what the kernel updates in place, so every call does the same work
                np.copyto(arrays[a], x[a])
            setter.set_threads(threads)
            k(arrays, x)
        runners[label] = run
    if OURS not in runners:
        raise RuntimeError(f"{OURS} output differs from numpy (relative error {checks[OURS]:.2e})")
    if polly_cc is None:
        checks["polly"] = "clang with Polly is not available"
    meta = {"kernel": name, "size": size, "params": b, "check_rel_err": checks, "schedule_s": sched_s,
            "build_s": time.perf_counter() - t0, "flags": flags_note}
    return harness.Case(f"{name} {size} t{threads}", runners, meta)


def _polybench_rows(rows):
    return [r for r in rows if r["meta"].get("kernel") and not r["error"]]


def _dl_models():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    n = helper.make_node

    def model(nodes, ins, inits=(), opset=17):
        inputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in ins]
        g = helper.make_graph(nodes, "g", inputs,
                              [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])

    def r(*s):
        return rng.standard_normal(s).astype(np.float32)
    R, C = 256, 1024
    return {
        "matmul_bias_relu 128x256x256": (model(
            [n("MatMul", ["x", "W"], ["t"]), n("Add", ["t", "B"], ["u"]), n("Relu", ["u"], ["y"])],
            [("x", [128, 256])], [("W", r(256, 256)), ("B", r(256))]), {"x": r(128, 256)}),
        f"softmax {R}x{C}": (model([n("Softmax", ["x"], ["y"], axis=-1)], [("x", [R, C])]), {"x": r(R, C)}),
        f"layer_norm {R}x{C}": (model([n("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)],
                                      [("x", [R, C]), ("g", [C]), ("b", [C])]),
                                {"x": r(R, C), "g": r(C), "b": r(C)}),
        f"bias_gelu {R}x{C}": (model([n("Add", ["x", "b"], ["t"]), n("Gelu", ["t"], ["y"])],
                                     [("x", [R, C]), ("b", [C])], opset=20), {"x": r(R, C), "b": r(C)}),
        f"transpose_reduce {C}x{R}": (model([n("Transpose", ["x"], ["t"], perm=[1, 0]),
                                             n("ReduceSum", ["t", "ax"], ["y"], keepdims=0)], [("x", [C, R])],
                                            [("ax", np.array([1], np.int64))]), {"x": r(C, R)}),
    }


def _session_case(label, model, feed, runners_spec, ours):
    import framework

    sessions = {k: framework.InferenceSession(model, jit_level=jl, graph_kernel_flags=fl)
                for k, (jl, fl) in runners_spec.items()}
    outs = {k: s.run(None, feed)[0] for k, s in sessions.items()}
    ref = outs[ours]
    for k, o in outs.items():
        scale = max(1.0, float(np.max(np.abs(ref))))
        if not np.allclose(o, ref, rtol=1e-4, atol=1e-4 * scale):
            raise RuntimeError(f"{k} disagrees with {ours}: max |diff| {float(np.max(np.abs(o - ref))):.3g}")
    meta = {k: {"backends": s.stats["backends"], "fallbacks": s.stats["fallbacks"],
                "compile_ms": s.stats["compile_ms"]} for k, s in sessions.items()}
    return harness.Case(label, {k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}, meta)


def _static(model_name):
    import onnx_models

    m = onnx_models.build(model_name)
    feed = onnx_models.example_inputs(model_name, {"batch": 8, "seq": 64})
    for inp in m.graph.input:
        if inp.name in feed:
            for d, size in zip(inp.type.tensor_type.shape.dim, feed[inp.name].shape):
                d.ClearField("dim_param")
                d.dim_value = size
    return m, feed


def _model_case(model_name):
    import framework
    from polyhedral import build

    m, feed = _static(model_name)
    before = build.COMPILES["count"]
    spec = {"O1 poly": ("O1", "--kernel_generator=poly"), "O0": ("O0", "")}
    case = _session_case(f"model {model_name} (static)", m, feed, spec, "O1 poly")
    first_compiles = build.COMPILES["count"] - before
    t0 = time.perf_counter()
    second = framework.InferenceSession(m, jit_level="O1", graph_kernel_flags="--kernel_generator=poly")
    case.meta["second_session"] = {"compiler_runs": build.COMPILES["count"] - before - first_compiles,
                                   "session_s": time.perf_counter() - t0,
                                   "compile_ms": second.stats["compile_ms"]}
    case.meta["first_session_compiler_runs"] = first_compiles
    return case


def geomean(xs):
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def summary(rows) -> str:
    """Geomean speedups of ours over each peer (speedup = peer / ours) per thread count, over every
    (kernel, size) row and per size."""
    lines = ["", "| threads | size | peer | geomean speedup of cpu-contiguity | kernels | "
             "worst kernel (speedup) |",
             "|---|---|---|---|---|---|"]
    sel_all = _polybench_rows(rows)
    sizes = sorted({r["meta"]["size"] for r in sel_all}, key=("mini", "medium", "large").index)
    for t in sorted({r["threads"] for r in sel_all}):
        for size in (["all"] if len(sizes) > 1 else []) + sizes:
            sel = [r for r in sel_all if r["threads"] == t and size in ("all", r["meta"]["size"])]
            for peer in ("original", "isl", "feautrier", "pluto-like", "polly"):
                sp = {r["case"]: 1 / r["ratios"][peer] for r in sel if r["ratios"].get(peer)}
                if sp:
                    worst = min(sp, key=sp.get)
                    lines.append(f"| {t} | {size} | {peer} | {geomean(sp.values()):.2f} | {len(sp)} | "
                                 f"{worst} ({sp[worst]:.2f}) |")
    failed = [f"{label} at {r['case']} ({err:.2g})" for r in sel_all
              for label, err in r["meta"].get("check_rel_err", {}).items()
              if isinstance(err, float) and not err < CHECK_REL_ERR]
    if failed:  # a runner whose output differs from numpy is not timed: say which and by how much
        lines.append(f"\n- left out by the numpy check (relative error >= {CHECK_REL_ERR:g}): " + ", ".join(failed))
    return "\n".join(lines) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks poly", description=__doc__)
    harness.add_output_args(p)
    harness.add_timing_args(p, DEFAULTS)
    p.add_argument("--size", default="medium", help="comma-separated PolyBench sizes: mini, medium, large "
                   "(default medium; e.g. medium,large)")
    p.add_argument("--peers", help="comma-separated schedules besides ours (default: original, isl, "
                   f"feautrier, pluto-like at MEDIUM/MINI, {', '.join(LARGE_SCHEDULES[1:])} at LARGE)")
    p.add_argument("--kernels", help="comma-separated PolyBench kernels (default: all 16)")
    p.add_argument("--threads", default="1,2", help="thread counts for PolyBench (default 1,2)")
    p.add_argument("--parts", default="polybench,dl,model", help="which parts to run")
    p.add_argument("--no-polly", action="store_true", help="skip Polly (no clang install)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # Polly's parallel loops run on libgomp, whose workers spin for milliseconds by default: on a shared
    # 2-vCPU machine that made its 2-thread runs 10-200x slower than 1 thread. Idle workers sleep instead
    # (set before the first kernel library loads libgomp; a user's setting wins). Ours use their own pool.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    from polyhedral import polybench

    given = {"rounds": args.rounds, "warmup": args.warmup, "min_round_s": args.min_round_s,
             "max_case_s": args.max_case_s}
    given = {k: v for k, v in given.items() if v is not None}
    kw = {**(QUICK if args.quick else DEFAULTS), **given}
    names = args.kernels.split(",") if args.kernels else list(polybench.KERNELS)
    sizes = args.size.split(",")
    bad = [x for x in sizes if x not in ("mini", "medium", "large")] + [
        n for n in names if n not in polybench.KERNELS]
    if bad:
        raise SystemExit(f"benchmarks poly: unknown size(s)/kernel(s) {bad}; sizes: mini, medium, large; "
                         f"kernels: {', '.join(polybench.KERNELS)}")
    flags_note = "gcc " + " ".join(build_flags()) + "; polly: clang " + " ".join(POLLY_FLAGS)
    parts = set(args.parts.split(","))
    items = []
    if "polybench" in parts:
        polly = None if args.no_polly else ensure_polly()
        for size in sizes:
            default = LARGE_SCHEDULES if size == "large" else SCHEDULES
            scheds = (OURS, *args.peers.split(",")) if args.peers else default
            if "original" not in scheds:
                scheds = (*scheds, "original")  # Polly compiles the original order
            size_kw = {**kw, **LARGE, **given} if size == "large" else kw
            for name in names:
                for t in [int(x) for x in args.threads.split(",")]:
                    items.append((f"{name} {size} t{t}", t, size_kw, lambda n=name, t=t, s=size, sc=scheds:
                                  _polybench_case(n, s, t, polly, flags_note, sc)))
    if "dl" in parts:
        for label, (m, feed) in _dl_models().items():
            items.append((label, None, kw, lambda label=label, m=m, feed=feed: _session_case(
                label, m, feed, {"poly": ("O1", "--kernel_generator=poly"),
                                 "dvm": ("O1", "--kernel_generator=dvm")}, "poly")))
    if "model" in parts:
        items.append(("model tiny_gpt", None, kw, lambda: _model_case("tiny_gpt")))
    rows = []
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(args.out, "w")) if args.out else sys.stdout
        for i, (label, threads, case_kw, thunk) in enumerate(items, 1):
            harness.progress(f"[{i}/{len(items)}] {label}")
            case = harness._build(label, thunk, {"threads": threads, "suite": SUITE})
            if isinstance(case, harness.Case):
                case = harness.measure(case, threads=threads, suite=SUITE, **case_kw)
            row = case
            harness.emit(row, stream)
            rows.append(row)
    table = harness.markdown_table(rows) + summary(rows)
    return harness.finish(rows, table, args)


if __name__ == "__main__":
    sys.exit(main())
