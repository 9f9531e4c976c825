"""The GPU suite: msgx device='gpu' (clusters on the CUDA DVM) vs PyTorch eager and torch.compile on one GPU.

Part 1, operators: the ops suite's fused chains on device-resident inputs (CuPy for ours, CUDA tensors for
torch); every runner synchronizes the device before returning, outputs are checked against numpy first, and
each row carries GB/s and the fraction of the GPU's device-to-device copy bandwidth, measured in the same
run: at the start (best of N) and as a copy of the case's bytes timed in the same rounds (reference runner).
Part 2, dynamic shapes: the dynamic suite's tiny_gpt served over distinct lengths on the GPU by msgx,
torch eager and torch.compile (dynamic=False on the first --static-lengths lengths, and dynamic=True).
The CUDA interpreter is built (or loaded from the cache) once before anything is timed; its build time is
reported, like the C VM's build at install. Rows are JSON lines; --md writes the Markdown tables.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time

import numpy as np

from . import dynamic, harness, models, ops, peers

SUITE = "gpu"
OURS = "msgx"
# large: 256 MiB per tensor; the partitioner keeps elementwise ops out of reductions above 2**26 elements
SIZES = {"small": (1024, 1024), "medium": (8192, 1024), "large": (8192, 8192)}
DEFAULTS = {"rounds": 7, "warmup": 3, "min_round_s": 0.05, "max_case_s": 8.0}
QUICK = {"rounds": 3, "warmup": 1, "min_round_s": 0.01, "max_case_s": 2.0}
STATIC_LENGTHS = 6


def copy_bandwidth(nbytes: int = 1 << 30, repeats: int = 10) -> dict:
    """Best-of-N device-to-device copy (CuPy), GB/s counting bytes read plus bytes written."""
    import cupy

    src = cupy.random.default_rng(0).standard_normal(nbytes // 4, dtype=cupy.float32)
    dst = cupy.empty_like(src)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    best = math.inf
    for _ in range(repeats):
        start.record()
        cupy.copyto(dst, src)
        end.record()
        end.synchronize()
        best = min(best, cupy.cuda.get_elapsed_time(start, end) / 1e3)
    del src, dst
    cupy.get_default_memory_pool().free_all_blocks()
    return {"nbytes": nbytes, "gbps": 2 * nbytes / best / 1e9, "best_s": best}


def gpu_env() -> dict:
    import cupy

    from dvm_runtime.gpu import vm as gvm
    props = cupy.cuda.runtime.getDeviceProperties(0)
    vm = gvm.get_vm()
    env = {"gpu": props["name"].decode(), "sms": vm.n_sm, "cupy": cupy.__version__,
           "vm_build_s": vm.compile_s, "vm_from_cache": vm.from_cache}
    torch = peers.torch_module()
    if torch is not None:
        env["torch"] = torch.__version__
    return env


# --- part 1: operators ----------------------------------------------------------------------------------

def _sync_cupy():
    import cupy
    cupy.cuda.Device().synchronize()


def op_case(chain: ops.Chain, size: str, shape: tuple[int, int], bw: dict, seed: int) -> harness.Case:
    """Ours, torch eager and torch.compile(dynamic=False) for one chain; every output checked vs numpy."""
    import cupy

    import framework
    from dvm_runtime.gpu.backend import to_host
    feed = chain.inputs(*shape, np.random.default_rng(seed))
    model = ops.build_model(chain, feed)
    meta: dict = {"chain": chain.name, "size": size, "shape": list(shape), "dtype": "float32",
                  "bytes": ops.moved_bytes(feed, chain.n_out, shape), "copy_bandwidth": bw, "compile_s": {},
                  "check": {}}
    want = [np.asarray(a) for a in ops._as_list(chain.numpy(*feed.values()))]
    t0 = time.perf_counter()
    sess = framework.InferenceSession(model, mode="graph", jit_level="O1", device="gpu")
    meta["compile_s"][OURS] = time.perf_counter() - t0
    meta["msgx_backends"] = dict(sess.stats["backends"])
    meta["ran_on_gpu"] = meta["msgx_backends"].get("gpu", 0) > 0
    dfeed = {k: cupy.asarray(v) for k, v in feed.items()}

    def ours():
        out = sess.run(None, dfeed)
        _sync_cupy()
        return out
    runners = {OURS: _checked(OURS, ours, lambda o: [to_host(a) for a in o], want, meta["check"])}
    torch = peers.torch_module()
    if torch is not None:
        fn = ops._torch_fns(torch)[chain.torch]
        targs = [torch.from_numpy(np.ascontiguousarray(a)).cuda() for a in feed.values()]

        def call(f):
            def run():
                with torch.inference_mode():
                    out = f(*targs)
                torch.cuda.synchronize()
                return out
            return run
        runners["torch"] = _checked("torch", call(fn), peers.torch_outputs, want, meta["check"])
        torch._dynamo.reset()
        compiled = call(torch.compile(fn, dynamic=False))
        t0 = time.perf_counter()
        try:
            compiled()
            meta["compile_s"]["torch.compile"] = time.perf_counter() - t0
            runners["torch.compile"] = _checked("torch.compile", compiled, peers.torch_outputs, want,
                                                meta["check"])
        except Exception as e:  # noqa: BLE001 - a compile failure is the peer's error
            runners["torch.compile"] = ops._mismatch(f"compile failed: {harness.describe_error(e)}")
    src = cupy.ones(max(meta["bytes"] // 8, 1), cupy.float32)  # the same bytes moved: half read, half written
    dst = cupy.empty_like(src)

    def copy():
        cupy.copyto(dst, src)
        _sync_cupy()
    runners[ops.COPY] = copy
    return harness.Case(f"{chain.name} {shape[0]}x{shape[1]}", runners, meta, references=(ops.COPY,))


def _checked(name, run, convert, want, check):
    res = models.compare(convert(run()), want, ops.RTOL, ops.ATOL)
    check[name] = {k: v for k, v in res.items() if k != "why"}
    return run if res["ok"] else ops._mismatch(f"output differs from numpy: {res['why']}")


def op_summary(rows: list[dict], bw: dict) -> str:
    lines = [f"- device-to-device copy bandwidth ({bw['nbytes'] >> 20} MiB, CuPy): {bw['gbps']:.0f} GB/s"]
    for p in ("torch", "torch.compile"):
        rs = [r["ratios"][p] for r in rows if p in r["ratios"]]
        if rs:
            gm = math.exp(sum(map(math.log, rs)) / len(rs))
            lines.append(f"- msgx/{p}: geomean {gm:.3f} (msgx {1 / gm:.2f}x faster), faster on "
                         f"{sum(x < 1 for x in rs)}/{len(rs)} cases, range {min(rs):.2f}-{max(rs):.2f}")
    return "\n".join(lines + ops.fraction_lines(rows)) + "\n"


# --- part 2: dynamic shapes -----------------------------------------------------------------------------

def _msgx_gpu(model):
    import framework
    sess = framework.InferenceSession(model, mode="graph", jit_level="O1", device="gpu")
    info = {"backends": dict(sess.stats["backends"]), "clusters": sess.stats.get("clusters"),
            "fallbacks": sess.stats.get("fallbacks")}
    return (lambda ids: sess.run(None, {"ids": ids})), info


def _torch_gpu(torch, w, compile_kw):
    module = dynamic.torch_model(torch, w).cuda()
    fn = module
    if compile_kw is not None:
        entry = dynamic._dynamic_entry(module) if compile_kw.get("dynamic") else dynamic._static_entry(module)
        fn = torch.compile(entry, **compile_kw)

    def run(ids):
        with torch.inference_mode():
            return peers.torch_outputs(fn(torch.from_numpy(ids).cuda()))
    return run, {"torch": torch.__version__, **({"compile": compile_kw} if compile_kw is not None else {})}


def dynamic_part(args, kw, stream) -> tuple[dict, list[dict]]:
    lengths = list(dynamic.LENGTHS)
    order = list(lengths)
    np.random.default_rng(args.seed).shuffle(order)
    static_order = order[:args.static_lengths]
    model = dynamic.build_model(args.seed)
    ids = dynamic.feeds(lengths, args.batch, args.seed)
    thunks = {OURS: lambda: _msgx_gpu(model)}
    errors: dict[str, str] = {}
    torch = peers.torch_module()
    if torch is None:
        errors.update({k: "skipped: torch not installed" for k in (dynamic.TORCH, dynamic.TC_STATIC,
                                                                     dynamic.TC_DYNAMIC)})
    else:
        w = dynamic.weights(model)
        cfg = torch._dynamo.config
        for knob in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                     "accumulated_cache_size_limit"):
            if hasattr(cfg, knob):  # dynamo falls back to eager after 8 recompiles by default
                setattr(cfg, knob, max(getattr(cfg, knob), 256))
        torch._dynamo.reset()
        thunks[dynamic.TORCH] = lambda: _torch_gpu(torch, w, None)
        thunks[dynamic.TC_STATIC] = lambda: _torch_gpu(torch, w, {"dynamic": False})
        thunks[dynamic.TC_DYNAMIC] = lambda: _torch_gpu(torch, w, {"dynamic": True})
    runs, served, ref = {}, {}, None
    for name, thunk in thunks.items():
        harness.progress(f"serving {len(order)} lengths with {name} on the GPU")
        try:
            lengths_served = static_order if name == dynamic.TC_STATIC else order
            run, s, outs = dynamic.serve(name, thunk, lengths_served, ids, ref)
        except Exception as e:  # noqa: BLE001 - a failing system is reported, the others go on
            errors[name] = harness.describe_error(e)
            harness.progress(f"  {name}: ERROR {errors[name]}")
            if name == OURS:
                break
            continue
        ref = outs if name == OURS else ref
        runs[name], served[name] = run, s
    rows = []
    for n in lengths if OURS in runs else []:
        present = [s for s in runs if n in served[s]["first_call_s"]]
        case = harness.Case(f"seq {n}", {s: (lambda r=runs[s], x=ids[n]: r(x)) for s in present},
                            {"seq": n, "batch": args.batch,
                             "first_call_s": {s: served[s]["first_call_s"][n] for s in present}})
        row = harness.measure(case, suite=SUITE, baseline=dynamic.TORCH, **kw)
        harness.emit(row, stream)
        rows.append(row)
    meta = {"model": "tiny_gpt", "n_ctx": dynamic.N_CTX, "batch": args.batch, "threads": None, "order": order,
            "static_lengths": static_order, "device": "gpu", "msgx_info": served.get(OURS, {}).get("info")}
    summ = dynamic.summarize(served, rows, errors, meta)
    summ["suite"] = SUITE
    harness.emit(summ, stream)
    return summ, rows


def dynamic_claims(summ: dict) -> str:
    """The issue's two dynamic-shape checks, as numbers."""
    s = summ["meta"]["systems"]
    ours, lines = s.get(OURS, {}), []
    st = s.get(dynamic.TC_STATIC, {})
    if ours.get("max_new_shape_overhead_s") and st.get("max_new_shape_overhead_s"):
        lines.append(f"- max new-shape overhead: msgx {ours['max_new_shape_overhead_s'] * 1e3:.2f} ms, "
                     f"{dynamic.TC_STATIC} {st['max_new_shape_overhead_s']:.2f} s: "
                     f"{st['max_new_shape_overhead_s'] / ours['max_new_shape_overhead_s']:.0f}x")
    for peer in (dynamic.TC_STATIC, dynamic.TC_DYNAMIC, dynamic.TORCH):
        p = s.get(peer, {})
        if ours.get("total_s") and p.get("total_s"):
            lines.append(f"- total (setup + first calls): msgx {ours['total_s']:.3f} s vs {peer} "
                         f"{p['total_s']:.3f} s ({p.get('lengths')} lengths)")
    return "\n".join(lines) + "\n"


# --- command line ---------------------------------------------------------------------------------------

def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks gpu", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="small,medium,large", help="small, medium, large or RxC")
    p.add_argument("--chains", help=f"comma-separated subset of {', '.join(ops.CHAINS)}")
    p.add_argument("--parts", default="ops,dynamic", help="ops, dynamic or both")
    p.add_argument("--static-lengths", type=int, default=STATIC_LENGTHS,
                   help=f"lengths served by {dynamic.TC_STATIC} (each one recompiles)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--bandwidth-mib", type=int, default=1024)
    harness.add_timing_args(p, DEFAULTS)
    p.add_argument("--torch-cache", default="fresh", choices=["fresh", "warm"])
    harness.add_output_args(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from dvm_runtime import gpu
    if not gpu.available():  # a machine without a GPU skips the suite (it is not an error of the suite)
        note = f"skipped: {gpu.why_unavailable()}\n"
        if args.md:
            with open(args.md, "w") as f:
                f.write(note)
        print(f"python -m benchmarks gpu: {note}", file=sys.stderr, end="")
        return 0
    kw = {**(QUICK if args.quick else DEFAULTS)}
    given = {"rounds": args.rounds, "warmup": args.warmup, "min_round_s": args.min_round_s,
             "max_case_s": args.max_case_s}
    kw.update({k: v for k, v in given.items() if v is not None})
    parts = {x.strip() for x in args.parts.split(",")}
    env = gpu_env()  # builds (or loads) the CUDA interpreter before any clock starts
    harness.progress(f"GPU: {env}")
    text, rows = f"GPU: {env['gpu']} ({env['sms']} SMs); CUDA VM build {env['vm_build_s']:.2f} s " \
                 f"(from cache: {env['vm_from_cache']})\n\n", []
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(args.out, "w")) if args.out else sys.stdout
        stack.enter_context(peers.torch_inductor_cache(args.torch_cache))
        if "ops" in parts:
            bw = copy_bandwidth(args.bandwidth_mib << 20)
            harness.progress(f"copy bandwidth: {bw['gbps']:.0f} GB/s")
            names = [c.strip() for c in args.chains.split(",")] if args.chains else list(ops.CHAINS)
            sizes = [(s, SIZES[s]) if s in SIZES else (s, tuple(int(x) for x in s.split("x")))
                     for s in args.sizes.split(",")]
            op_rows = []
            for label, shape in sizes:
                for n in names:
                    name = f"{n} {shape[0]}x{shape[1]}"
                    harness.progress(name)
                    case = harness._build(name, lambda c=ops.CHAINS[n], label=label, shape=shape:
                                          op_case(c, label, shape, bw, args.seed), {"suite": SUITE})
                    row = harness.measure(case, suite=SUITE, baseline="torch", **kw) \
                        if isinstance(case, harness.Case) else case
                    del case
                    row["meta"]["env_gpu"] = env
                    harness.emit(ops.add_bandwidth(row), stream)
                    op_rows.append(row)
                    harness.progress(f"  {row['error'] or row['ratios']}")
                    import cupy
                    cupy.get_default_memory_pool().free_all_blocks()
            extra = {"msgx GB/s (% copy: same rounds / start)": ops._gbps_cell,
                     "compile s (msgx / torch.compile)": lambda r: " / ".join(
                         f"{r['meta']['compile_s'][k]:.2f}" if k in r["meta"].get("compile_s", {}) else "-"
                         for k in (OURS, "torch.compile"))}
            text += "## Operators (device-resident inputs)\n\n" + harness.markdown_table(op_rows, extra) + \
                "\n" + op_summary(op_rows, bw) + "\n"
            rows += op_rows
        if "dynamic" in parts:
            summ, dyn_rows = dynamic_part(args, kw, stream)
            text += "## Dynamic shapes (tiny_gpt, 20 lengths)\n\n" + dynamic.summary_table(summ) + "\n" + \
                dynamic_claims(summ) + "\n### Steady state per length\n\n" + \
                harness.markdown_table(dyn_rows, dynamic.MD_EXTRA)
            rows += dyn_rows + [summ]
    return harness.finish(rows, text, args)


if __name__ == "__main__":
    sys.exit(main())
