"""The dynamic-shape suite: the bundled transformer served over distinct sequence lengths.

Each system gets the same sequence of (by default) 20 distinct lengths between 1 and 256, in a shuffled
order, as a server would see them. Phase 1 (serving): the system is set up (session creation / the
torch.compile wrapper), then called once per new length; every first call is timed (it includes any
per-shape compilation) and its output checked against ours. Phase 2 (steady state): for each length the
harness times all systems side by side (interleaved rounds), after a second of untimed calls of every
system (harness.settle). One JSON line per length (the harness row
plus `meta.first_call_s`), then one summary line (case "summary", `meta.systems`: per system setup_s,
total_s = setup + all first calls, max_first_call_s, max_new_shape_overhead_s = max(first call - steady
median), steady_sum_s; and `meta.ratios_*`, ours / peer).

Systems: msgx graph O1 (ours: graph-kernel fusion, clusters on the DVM), msgx graph O0 (reference),
onnxruntime (same threads, spinning off), and with torch installed: torch eager and torch.compile with
dynamic=False (recompiles per length; by default it serves only the first 10 lengths of the order, to
keep the run within a few minutes, and the output says so) and dynamic=True, on a torch module holding
the ONNX model's weights.

tiny_gpt's position table has 128 rows; to serve lengths up to 256 it is extended to 256 rows (the
first 128 are the bundled model's, the rest drawn from the same normal(0, 0.1)).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from . import harness, models, peers

SUITE = "dynamic"
OURS = "msgx"
O0 = "msgx O0"
ORT = "onnxruntime"
TORCH = "torch"
TC_STATIC = "torch.compile(dynamic=False)"
TC_DYNAMIC = "torch.compile(dynamic=True)"
SYSTEMS = (OURS, O0, ORT, TORCH, TC_STATIC, TC_DYNAMIC)
LENGTHS = (1, 2, 3, 5, 8, 12, 16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256)
N_CTX = 256
SETTLE_S = 1.0  # untimed calls of every system before the steady-state phase (harness.settle says why)
STATIC_LENGTHS = 10  # torch.compile(dynamic=False) recompiles per length (~7 s each on 2 cores, cold)
RTOL, ATOL = models.RTOL, models.ATOL
DEFAULTS = {"rounds": 5, "warmup": 1, "min_round_s": 0.02, "max_case_s": 3.0}
QUICK = {"rounds": 3, "warmup": 1, "min_round_s": 0.005, "max_case_s": 1.0}
SUMMARY_KEYS = ("setup_s", "first_call_s", "total_s", "max_first_call_s", "max_first_call_seq",
                "max_new_shape_overhead_s", "steady_median_s", "steady_sum_s", "lengths", "checked_lengths",
                "max_scaled_err", "error")


# --- the model, ours and torch's ------------------------------------------------------------------------

def build_model(seed: int = 0, n_ctx: int = N_CTX):
    """The bundled tiny_gpt with its position table extended to `n_ctx` rows."""
    from onnx import numpy_helper

    import onnx_models

    model = onnx_models.build("tiny_gpt", seed=seed)
    for i, t in enumerate(model.graph.initializer):
        if t.name == "wpe":
            wpe = numpy_helper.to_array(t)
            if wpe.shape[0] < n_ctx:
                extra = np.random.default_rng(seed + 1).normal(0.0, 0.1, (n_ctx - wpe.shape[0], wpe.shape[1]))
                wpe = np.concatenate([wpe, extra.astype(wpe.dtype)])
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(wpe, "wpe"))
    return model


def weights(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def torch_model(torch, w: dict[str, np.ndarray]):
    """onnx_models/tiny_gpt.py's transformer as a torch module holding the ONNX initializers."""
    from onnx_models import tiny_gpt as spec

    F = torch.nn.functional
    n_layers, n_heads, d = spec.N_LAYERS, spec.N_HEADS, spec.D_MODEL
    hd = d // n_heads

    class TinyGPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k, v in w.items():
                if v.dtype == np.float32 and v.ndim > 0:
                    self.register_buffer(k.replace(".", "_"), torch.from_numpy(v.copy()))
            self.scalars = {k: float(v) for k, v in w.items() if v.dtype == np.float32 and v.ndim == 0}

        def p(self, name):
            return getattr(self, name.replace(".", "_"))

        def linear(self, x, name):
            return x @ self.p(f"{name}.weight") + self.p(f"{name}.bias")

        def ln(self, x, name):
            return F.layer_norm(x, (d,), self.p(f"{name}.weight"), self.p(f"{name}.bias"), 1e-5)

        def forward(self, ids):
            b, s = ids.shape
            pos = torch.arange(s, device=ids.device)  # the GPU suite runs this module on CUDA
            x = self.p("wte")[ids] + self.p("wpe")[pos]
            mask = pos[None, :] > pos[:, None]  # key position j > query position i
            for i in range(n_layers):
                pre = f"h.{i}"
                h = self.ln(x, f"{pre}.ln_1")
                q = self.linear(h, f"{pre}.attn.q_proj").reshape(b, s, n_heads, hd).permute(0, 2, 1, 3)
                k = self.linear(h, f"{pre}.attn.k_proj").reshape(b, s, n_heads, hd).permute(0, 2, 3, 1)
                v = self.linear(h, f"{pre}.attn.v_proj").reshape(b, s, n_heads, hd).permute(0, 2, 1, 3)
                scores = (q @ k) * self.scalars[f"{pre}.attn.scale"]
                scores = torch.where(mask, torch.full_like(scores, self.scalars[f"{pre}.attn.mask_value"]),
                                     scores)
                ctx = (torch.softmax(scores, -1) @ v).permute(0, 2, 1, 3).reshape(b, s, d)
                x = x + self.linear(ctx, f"{pre}.attn.o_proj")
                h = self.linear(self.ln(x, f"{pre}.ln_2"), f"{pre}.mlp.fc")
                g = f"{pre}.mlp.gelu"
                t = torch.erf(h / self.scalars[f"{g}.sqrt2"]) + self.scalars[f"{g}.one"]
                x = x + self.linear(h * t * self.scalars[f"{g}.half"], f"{pre}.mlp.proj")
            return self.ln(x, "ln_f") @ self.p("lm_head.weight")

    return TinyGPT().eval()


# Two separate defs (two code objects), so dynamo keeps the static and the dynamic compilation apart.
def _static_entry(model):
    def forward_static(ids):
        return model(ids)
    return forward_static


def _dynamic_entry(model):
    def forward_dynamic(ids):
        return model(ids)
    return forward_dynamic


# --- the systems ----------------------------------------------------------------------------------------

def _msgx(model, jit_level: str):
    import framework

    sess = framework.InferenceSession(model, mode="graph", jit_level=jit_level)
    info = {"backends": dict(sess.stats.get("backends", {})), "clusters": sess.stats.get("clusters"),
            "fallbacks": sess.stats.get("fallbacks"), "encode_times": sess.encode_times}
    return (lambda ids: sess.run(None, {"ids": ids})), info


def encode_summary(times: list[float]) -> dict | None:
    """Count, median, 90th percentile and maximum (µs) of the DVM encodes of a serving phase."""
    if not times:
        return None
    us = np.asarray(times) * 1e6
    return {"n": len(us), "median_us": float(np.median(us)), "p90_us": float(np.percentile(us, 90)),
            "max_us": float(us.max())}


def _ort(model, threads: int):
    sess = peers.ort_session(model, threads)
    return (lambda ids: sess.run(None, {"ids": ids})), {}


def _torch(torch, model_w, threads: int, compile_kw: dict | None):
    torch.set_num_threads(threads)
    module = torch_model(torch, model_w)
    fn = module
    if compile_kw is not None:
        entry = _static_entry(module) if not compile_kw.get("dynamic") else _dynamic_entry(module)
        fn = torch.compile(entry, **compile_kw)

    def run(ids):
        with torch.inference_mode():
            return peers.torch_outputs(fn(torch.from_numpy(ids)))
    return run, {"torch": torch.__version__, **({"compile": compile_kw} if compile_kw is not None else {})}


def setups(model, threads: int, *, use_torch: bool = True, use_compile: bool = True) -> tuple[dict, dict]:
    """{system: thunk returning (run(ids) -> outputs, info)} in serving order, and {system: why skipped}."""
    out: dict[str, Callable] = {OURS: lambda: _msgx(model, "O1"), O0: lambda: _msgx(model, "O0"),
                                ORT: lambda: _ort(model, threads)}
    skipped: dict[str, str] = {}
    torch = peers.torch_module() if use_torch else None
    if torch is None:
        why = "torch not installed" if use_torch else "--no-torch"
        skipped.update({TORCH: why, TC_STATIC: why, TC_DYNAMIC: why})
        return out, skipped
    w = weights(model)
    out[TORCH] = lambda: _torch(torch, w, threads, None)
    if not use_compile:
        skipped.update({TC_STATIC: "--no-compile", TC_DYNAMIC: "--no-compile"})
        return out, skipped
    cfg = torch._dynamo.config
    for knob in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                 "accumulated_cache_size_limit"):
        if hasattr(cfg, knob):  # dynamo falls back to eager after 8 recompiles by default
            setattr(cfg, knob, max(getattr(cfg, knob), 256))
    torch._dynamo.reset()
    out[TC_STATIC] = lambda: _torch(torch, w, threads, {"dynamic": False})
    out[TC_DYNAMIC] = lambda: _torch(torch, w, threads, {"dynamic": True})
    return out, skipped


def feeds(lengths, batch: int, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.integers(0, 256, size=(batch, n), dtype=np.int64) for n in lengths}


def serve(name: str, thunk: Callable, order: list[int], ids: dict[int, np.ndarray],
          ref: dict[int, list] | None):
    """Phase 1 for one system: setup, one first call per length (timed, checked against `ref`)."""
    t0 = time.perf_counter()
    run, info = thunk()
    setup_s = time.perf_counter() - t0
    first, outs, check = {}, {}, {}
    for n in order:
        t0 = time.perf_counter()
        out = run(ids[n])
        first[n] = time.perf_counter() - t0
        outs[n] = [np.asarray(a) for a in out]
        if ref is not None:
            res = models.compare(outs[n], ref[n], RTOL, ATOL)
            check[n] = res.get("max_scaled_err")
            if not res["ok"]:
                raise AssertionError(f"seq {n}: output differs from msgx: {res['why']}")
        harness.progress(f"  {name} seq {n}: first call {first[n] * 1e3:.1f} ms")
    if callable(info.get("encode_times")):  # msgx: what encoding the new shapes cost, per kernel instance
        info["encode_us"] = encode_summary(info.pop("encode_times")())
    return run, {"setup_s": setup_s, "first_call_s": first, "info": info, "max_scaled_err": check}, outs


# --- report ---------------------------------------------------------------------------------------------

def summarize(served: dict, rows: list[dict], errors: dict[str, str], meta: dict) -> dict:
    """The summary row: per system totals and maxima, and ours / peer ratios."""
    systems: dict[str, dict] = {}
    for name, s in served.items():
        first = s["first_call_s"]
        steady = {r["meta"]["seq"]: r["runners"][name]["median_s"] for r in rows
                  if "median_s" in r["runners"].get(name, {})}
        over = {n: first[n] - steady[n] for n in first if n in steady}
        worst = max(first, key=first.get)
        systems[name] = {
            "setup_s": s["setup_s"], "first_call_s": {str(k): v for k, v in first.items()},
            "total_s": s["setup_s"] + sum(first.values()), "max_first_call_s": first[worst],
            "max_first_call_seq": worst, "max_new_shape_overhead_s": max(over.values()) if over else None,
            "steady_median_s": {str(k): v for k, v in steady.items()},
            "steady_sum_s": sum(steady.values()) if steady else None, "lengths": len(first), "error": None,
            "checked_lengths": len(s["max_scaled_err"]),
            "max_scaled_err": max(s["max_scaled_err"].values()) if s["max_scaled_err"] else None,
            "info": s["info"]}
    for name, why in errors.items():
        systems.setdefault(name, {k: None for k in SUMMARY_KEYS})["error"] = why

    def ratio(key):
        mine = systems.get(OURS, {}).get(key)
        return {p: mine / v[key] for p, v in systems.items() if p != OURS and mine and v.get(key)}

    steady_geo = {}
    for p in systems:
        rs = [r["ratios"][p] for r in rows if p in r["ratios"]]
        if p != OURS and rs:
            steady_geo[p] = math.exp(sum(map(math.log, rs)) / len(rs))
    meta = {**meta, "systems": systems, "ratios_total": ratio("total_s"),
            "ratios_max_first_call": ratio("max_first_call_s"), "ratios_steady_geomean": steady_geo,
            "ratios_steady_max": {p: max(r["ratios"][p] for r in rows if p in r["ratios"])
                                  for p in steady_geo}}
    error = "; ".join(f"{k}: {v}" for k, v in errors.items()) or None
    return {"suite": SUITE, "case": "summary", "ours": OURS, "baseline": ORT, "runners": {}, "ratios": {},
            "ratio": None, "error": error, "errors": dict(errors), "threads": meta.get("threads"),
            "warmup": None, "rounds": None, "min_round_s": None, "meta": meta,
            "env": harness.environment(meta.get("threads"))}


def _ms(x) -> str:
    return "-" if x is None else f"{x * 1e3:.3g}"


def summary_table(row: dict) -> str:
    m = row["meta"]
    head = ["system", "shapes", "setup s", "total s (setup + first calls)", "max new-shape ms (first call)",
            "max overhead ms (first - steady)", "steady sum ms", "msgx/system steady (geomean, max)",
            "msgx/system total", "error"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for name, s in m["systems"].items():
        geo, mx = m["ratios_steady_geomean"].get(name), m["ratios_steady_max"].get(name)
        tot = m["ratios_total"].get(name)
        cells = [name, s.get("lengths") or "-", "-" if s.get("setup_s") is None else f"{s['setup_s']:.3f}",
                 "-" if s.get("total_s") is None else f"{s['total_s']:.3f}", _ms(s.get("max_first_call_s")) +
                 (f" (seq {s['max_first_call_seq']})" if s.get("max_first_call_seq") else ""),
                 _ms(s.get("max_new_shape_overhead_s")), _ms(s.get("steady_sum_s")),
                 "-" if geo is None else f"{geo:.2f}, {mx:.2f}", "-" if tot is None else f"{tot:.3g}",
                 harness._cell(s.get("error") or "")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    notes = [f"- lengths in serving order: {m['order']} (batch {m['batch']}, {m['threads']} threads)"]
    if m.get("static_lengths") is not None and len(m["static_lengths"]) < len(m["order"]):
        notes.append(f"- {TC_STATIC} served only {len(m['static_lengths'])} of the lengths "
                     f"({m['static_lengths']}) to bound its recompilation time; its totals cover those only")
    s_ours, s_tc = m["systems"].get(OURS, {}), m["systems"].get(TC_STATIC, {})
    if s_ours.get("max_first_call_s") and s_tc.get("max_first_call_s"):
        notes.append(f"- max time to serve a new length: {TC_STATIC} / msgx = "
                     f"{s_tc['max_first_call_s'] / s_ours['max_first_call_s']:.0f}x")
    enc = (m.get("msgx_info") or {}).get("encode_us")
    if enc:
        notes.append(f"- msgx DVM encodes while serving: {enc['n']} kernel instances, median {enc['median_us']:.0f} "
                     f"µs, p90 {enc['p90_us']:.0f} µs, max {enc['max_us']:.0f} µs")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _first_cell(row: dict) -> str:
    f = row["meta"].get("first_call_s", {})
    return " / ".join(_ms(f.get(k)) for k in (OURS, ORT, TC_STATIC))


MD_EXTRA = {"first call ms (msgx / ort / tc static)": _first_cell}


# --- command line ---------------------------------------------------------------------------------------

def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks dynamic", description=__doc__.splitlines()[0])
    p.add_argument("--lengths", help=f"comma-separated sequence lengths (default: the 20 of {LENGTHS})")
    p.add_argument("--static-lengths", type=int, default=STATIC_LENGTHS,
                   help=f"serve only the first N lengths (serving order) with {TC_STATIC}: each costs a "
                        f"recompile of several seconds (default {STATIC_LENGTHS}; 0: all)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    harness.add_timing_args(p, DEFAULTS)
    peers.add_torch_args(p)
    p.add_argument("--no-shuffle", action="store_true", help="serve the lengths in ascending order")
    harness.add_output_args(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    lengths = sorted({int(x) for x in args.lengths.split(",")}) if args.lengths else list(LENGTHS)
    if not lengths or min(lengths) < 1 or max(lengths) > N_CTX:
        print(f"python -m benchmarks dynamic: lengths must be in 1..{N_CTX}", file=sys.stderr)
        return 2
    order = list(lengths)
    if not args.no_shuffle:
        np.random.default_rng(args.seed).shuffle(order)
    static_order = order[:args.static_lengths] if args.static_lengths else order
    kw = {**(QUICK if args.quick else DEFAULTS)}
    given = {"rounds": args.rounds, "warmup": args.warmup, "min_round_s": args.min_round_s,
             "max_case_s": args.max_case_s}
    kw.update({k: v for k, v in given.items() if v is not None})
    import framework  # noqa: F401 - imported before any clock starts
    import onnxruntime  # noqa: F401

    with contextlib.ExitStack() as stack:
        stack.enter_context(peers.torch_inductor_cache(args.torch_cache))  # the serving phase too
        return _run(args, lengths, order, static_order, kw, stack)


def _run(args, lengths, order, static_order, kw, stack: contextlib.ExitStack) -> int:
    model = build_model(args.seed)
    ids = feeds(lengths, args.batch, args.seed)
    thunks, errors = setups(model, args.threads, use_torch=not args.no_torch, use_compile=not args.no_compile)
    errors = {k: f"skipped: {v}" for k, v in errors.items()}
    runs: dict[str, Callable] = {}
    served: dict[str, dict] = {}
    ref = None
    t_start = time.perf_counter()
    for name, thunk in thunks.items():
        harness.progress(f"serving {len(order)} lengths with {name}")
        try:
            run, s, outs = serve(name, thunk, static_order if name == TC_STATIC else order, ids, ref)
        except Exception as e:  # noqa: BLE001 - a failing system is reported, the others go on
            errors[name] = harness.describe_error(e)
            harness.progress(f"  {name}: ERROR {errors[name]}")
            if name == OURS:
                break
            continue
        if name == OURS:
            ref = outs
        runs[name], served[name] = run, s
    meta = {"model": "tiny_gpt", "n_ctx": N_CTX, "batch": args.batch, "threads": args.threads, "order": order,
            "static_lengths": static_order if TC_STATIC in thunks else None, "serve_phase_s": None,
            "msgx_info": served.get(OURS, {}).get("info"), "torch_cache": args.torch_cache}
    meta["serve_phase_s"] = time.perf_counter() - t_start
    rows = []
    stream = stack.enter_context(open(args.out, "w")) if args.out else sys.stdout
    stack.enter_context(harness.thread_limits(args.threads))
    if OURS in runs:
        first = lengths[0]
        harness.settle([lambda r=runs[s]: r(ids[first]) for s in runs if first in served[s]["first_call_s"]],
                       SETTLE_S)
        for n in lengths:
            present = [s for s in runs if n in served[s]["first_call_s"]]
            case = harness.Case(f"seq {n}", {s: (lambda r=runs[s], x=ids[n]: r(x)) for s in present},
                                {"seq": n, "batch": args.batch,
                                 "first_call_s": {s: served[s]["first_call_s"][n] for s in present}})
            harness.progress(f"steady state seq {n}")
            row = harness.measure(case, threads=args.threads, suite=SUITE, baseline=ORT, **kw)
            harness.emit(row, stream)
            rows.append(row)
    summ = summarize(served, rows, errors, meta)
    harness.emit(summ, stream)
    text = "## Per system\n\n" + summary_table(summ) + "\n## Steady state per length\n\n" + \
        harness.markdown_table(rows, MD_EXTRA)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text)
    print(text, file=sys.stdout if args.out else sys.stderr, end="")
    bad = summ["error"] and any(not v.startswith("skipped") for v in errors.values())
    return 1 if args.strict and (bad or any(r["error"] for r in rows)) else 0


if __name__ == "__main__":
    sys.exit(main())
