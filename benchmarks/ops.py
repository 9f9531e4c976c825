"""The operator suite: fused chains (graph O1, run by the DVM) vs numpy op by op, onnxruntime and PyTorch.

Each chain is an ONNX model built with onnx.helper and run by framework.InferenceSession(jit_level="O1"):
graph-kernel fusion turns it into one cluster that the DVM backend runs (the row records the backends).
Peers: numpy op by op, onnxruntime on the same model (same threads, spinning off), torch eager and
torch.compile (default mode; its compile time is reported, not timed) when torch is installed. Every
peer's output is checked against ours (rtol 1e-4 after scaling by max|ours|) before timing; a peer that
disagrees is an error, not a time. The machine's copy bandwidth is measured in the same run, with the
same thread count, twice: once at the start (best of N, a peak) and per case as the reference runner
`copy`, a copy of the case's bytes timed in the same interleaved rounds (bandwidth.copier: this machine's
bandwidth drifts between rounds). Each row carries the GB/s every runner reaches (minimal bytes read +
written / median time) and its fraction of both (`copy_fraction`: same rounds; `peak_fraction`: start).

Row meta keys: META_KEYS.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import bandwidth, harness, models, peers

SUITE = "ops"
OURS = "msgx"
COPY = "copy"  # the reference runner: a copy of the case's moved bytes (bandwidth.copier), same rounds
RTOL, ATOL = 1e-4, 1e-5  # after scaling by max|ours| (models.compare)
SIZES = {"small": (64, 256), "medium": (1024, 1024), "large": (8192, 1024)}
DEFAULTS = {"rounds": 7, "warmup": 2, "min_round_s": 0.05, "max_case_s": 10.0}
QUICK = {"rounds": 3, "warmup": 1, "min_round_s": 0.01, "max_case_s": 3.0}
META_KEYS = ("chain", "size", "shape", "dtype", "bytes", "msgx_backends", "ran_on_dvm", "msgx_stats",
             "msgx_threads", "compile_s", "ort_ops", "ort_fuses", "check", "copy_bandwidth", "gbps",
             "copy_fraction", "peak_fraction")
F32 = np.float32


# --- the chains: an ONNX graph, numpy op by op and torch, all with the same inputs -----------------------

@dataclass
class Chain:
    name: str
    doc: str
    inputs: Callable[[int, int, np.random.Generator], dict[str, np.ndarray]]
    nodes: Callable[[], tuple[list, list]]  # -> (onnx nodes, initializers); outputs are y0, y1, ...
    n_out: int
    numpy: Callable[..., object]
    torch: str  # name of the function in _torch_fns


def _c(name: str, value: float):
    return name, np.asarray(value, F32)


def _node(op: str, ins: list[str], out: str, **attrs):
    from onnx import helper

    return helper.make_node(op, ins, [out], name=out, **attrs)


def _bias_gelu_graph():
    # The erf GELU as exporters write it (onnxruntime fuses it with the bias into BiasGelu).
    return ([_node("Add", ["x", "b"], "t0"), _node("Div", ["t0", "sqrt2"], "t1"), _node("Erf", ["t1"], "t2"),
             _node("Add", ["t2", "one"], "t3"), _node("Mul", ["t0", "t3"], "t4"),
             _node("Mul", ["t4", "half"], "y0")],
            [_c("sqrt2", math.sqrt(2.0)), _c("one", 1.0), _c("half", 0.5)])


def _layer_norm_graph():
    return [_node("LayerNormalization", ["x", "g", "b"], "y0", axis=-1, epsilon=1e-5)], []


def _softmax_graph():
    return [_node("Softmax", ["x"], "y0", axis=-1)], []


def _silu_mul_graph():
    return [_node("Sigmoid", ["a"], "t0"), _node("Mul", ["a", "t0"], "t1"),
            _node("Mul", ["t1", "b"], "y0")], []


def _adam_graph():
    # m' = b1 m + (1-b1) g; v' = b2 v + (1-b2) g^2; p' = p - lr (m'/bc1) / (sqrt(v'/bc2) + eps).
    # The hyper-parameters are 0-d graph inputs (an optimizer changes lr and the bias corrections bc1 =
    # 1 - b1^t, bc2 = 1 - b2^t every step), so nothing about them can be folded at compile time.
    n = _node
    return ([n("Sub", ["one", "beta1"], "omb1"), n("Sub", ["one", "beta2"], "omb2"),
             n("Mul", ["m", "beta1"], "m_a"), n("Mul", ["g", "omb1"], "m_b"), n("Add", ["m_a", "m_b"], "y1"),
             n("Mul", ["g", "g"], "g2"), n("Mul", ["v", "beta2"], "v_a"), n("Mul", ["g2", "omb2"], "v_b"),
             n("Add", ["v_a", "v_b"], "y2"),
             n("Div", ["y1", "bc1"], "mhat"), n("Div", ["y2", "bc2"], "vhat"), n("Sqrt", ["vhat"], "vs"),
             n("Add", ["vs", "eps"], "den"), n("Div", ["mhat", "den"], "upd"),
             n("Mul", ["upd", "lr"], "step"),
             n("Sub", ["p", "step"], "y0")],
            [_c("one", 1.0)])


def _chain6_graph():
    # relu(tanh((x + y) * 0.5 - z) * x): six elementwise ops that onnxruntime leaves unfused.
    return ([_node("Add", ["x", "y"], "t0"), _node("Mul", ["t0", "half"], "t1"),
             _node("Sub", ["t1", "z"], "t2"),
             _node("Tanh", ["t2"], "t3"), _node("Mul", ["t3", "x"], "t4"), _node("Relu", ["t4"], "y0")],
            [_c("half", 0.5)])


def _randn(rng, *shape):
    return rng.standard_normal(shape, dtype=F32)


def _np_bias_gelu(x, b):
    t = x + b
    return peers.NUMPY_CHAINS["gelu"](t)


def _np_silu_mul(a, b):
    s = 1.0 / (1.0 + np.exp(-a))
    return a * s * b


def _np_adam(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2):
    m1 = m * beta1 + g * (1 - beta1)
    v1 = v * beta2 + (g * g) * (1 - beta2)
    p1 = p - m1 / bc1 / (np.sqrt(v1 / bc2) + eps) * lr
    return p1, m1, v1


def _np_chain6(x, y, z):
    return np.maximum(np.tanh((x + y) * 0.5 - z) * x, 0)


def _adam_inputs(r, c, rng):
    beta1, beta2, t = 0.9, 0.999, 10
    return {"p": _randn(rng, r, c), "g": _randn(rng, r, c) * F32(0.1), "m": _randn(rng, r, c) * F32(0.01),
            "v": np.abs(_randn(rng, r, c)) * F32(1e-3), "lr": np.asarray(1e-3, F32),
            "beta1": np.asarray(beta1, F32), "beta2": np.asarray(beta2, F32), "eps": np.asarray(1e-8, F32),
            "bc1": np.asarray(1 - beta1 ** t, F32), "bc2": np.asarray(1 - beta2 ** t, F32)}


CHAINS: dict[str, Chain] = {c.name: c for c in [
    Chain("bias_gelu", "gelu(x + b), erf form",
          lambda r, c, rng: {"x": _randn(rng, r, c), "b": _randn(rng, c)},
          _bias_gelu_graph, 1, _np_bias_gelu, "bias_gelu"),
    Chain("layer_norm", "LayerNormalization over the last axis",
          lambda r, c, rng: {"x": _randn(rng, r, c), "g": 1 + 0.1 * _randn(rng, c),
                             "b": 0.1 * _randn(rng, c)},
          _layer_norm_graph, 1, peers.NUMPY_CHAINS["layer_norm"], "layer_norm"),
    Chain("softmax", "Softmax over the last axis", lambda r, c, rng: {"x": _randn(rng, r, c)},
          _softmax_graph, 1, peers.NUMPY_CHAINS["softmax"], "softmax"),
    Chain("silu_mul", "silu(a) * b (SiLU-gated MLP activation)",
          lambda r, c, rng: {"a": _randn(rng, r, c), "b": _randn(rng, r, c)}, _silu_mul_graph, 1,
          _np_silu_mul,
          "silu_mul"),
    Chain("adam", "Adam update: p', m', v' from p, g, m, v and 0-d hyper-parameters", _adam_inputs,
          _adam_graph,
          3, _np_adam, "adam"),
    Chain("chain6", "relu(tanh((x + y) * 0.5 - z) * x)",
          lambda r, c, rng: {"x": _randn(rng, r, c), "y": _randn(rng, r, c), "z": _randn(rng, r, c)},
          _chain6_graph, 1, _np_chain6, "chain6"),
]}


def _torch_fns(torch) -> dict[str, Callable]:
    F = torch.nn.functional

    def bias_gelu(x, b):
        return F.gelu(x + b)

    def layer_norm(x, g, b):
        return F.layer_norm(x, (x.shape[-1],), g, b, 1e-5)

    def softmax(x):
        return torch.softmax(x, -1)

    def silu_mul(a, b):
        return F.silu(a) * b

    def adam(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2):
        m1 = m * beta1 + g * (1 - beta1)
        v1 = v * beta2 + g * g * (1 - beta2)
        return p - m1 / bc1 / (torch.sqrt(v1 / bc2) + eps) * lr, m1, v1

    def chain6(x, y, z):
        return torch.relu(torch.tanh((x + y) * 0.5 - z) * x)

    return {"bias_gelu": bias_gelu, "layer_norm": layer_norm, "softmax": softmax, "silu_mul": silu_mul,
            "adam": adam, "chain6": chain6}


def build_model(chain: Chain, feed: dict[str, np.ndarray]):
    """The chain as an opset-17 ONNX model whose inputs are `feed`'s arrays (fixed shapes)."""
    import onnx
    from onnx import helper, numpy_helper

    nodes, consts = chain.nodes()
    inits = [numpy_helper.from_array(v, k) for k, v in consts]
    ins = [helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, list(v.shape)) for k, v in feed.items()]
    shape = list(next(v for v in feed.values() if v.ndim == 2).shape)
    outs = [helper.make_tensor_value_info(f"y{i}", onnx.TensorProto.FLOAT, shape) for i in range(chain.n_out)]
    model = helper.make_model(helper.make_graph(nodes, chain.name, ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def moved_bytes(feed: dict[str, np.ndarray], n_out: int, shape: tuple[int, int]) -> int:
    """The least memory traffic of the chain: every input read once, every output written once."""
    return sum(v.nbytes for v in feed.values()) + n_out * int(np.prod(shape)) * 4


def ort_ops(model) -> list[str]:
    """Op types left in onnxruntime's optimized graph (fewer than the model's: onnxruntime fused some)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.optimized_model_filepath = os.path.join(d, "opt.onnx")
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
        return [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]


# --- one case -------------------------------------------------------------------------------------------

class MismatchError(AssertionError):
    """A peer's output disagrees with ours: the peer is not timed."""


def _mismatch(msg: str) -> Callable[[], object]:
    def run():
        raise MismatchError(msg)
    return run


def _as_list(out) -> list[np.ndarray]:
    return [np.asarray(a) for a in (out if isinstance(out, (tuple, list)) else [out])]


def _checked(name: str, run: Callable[[], object], first, ours: list, check: dict,
             convert: Callable = _as_list) -> Callable[[], object]:
    """`run` if its first output matches ours, else a runner that raises (the harness records the error)."""
    got = convert(first)
    res = models.compare(got, ours, RTOL, ATOL)
    check[name] = {k: v for k, v in res.items() if k != "why"}
    if not res["ok"]:
        check[name]["why"] = res["why"]
        return _mismatch(f"output differs from msgx: {res['why']}")
    return run


def build_case(chain: Chain, size: str, shape: tuple[int, int], threads: int, bw: dict, *,
               torch_eager: bool = True, torch_compile: bool = True, seed: int = 0,
               torch_cache: str = "fresh") -> harness.Case | dict:
    """Models, sessions and peers for one chain at one size, every peer checked; the Case to time."""
    import framework
    from dvm_runtime import cvm

    name = f"{chain.name} {shape[0]}x{shape[1]}"
    feed = chain.inputs(*shape, np.random.default_rng(seed))
    model = build_model(chain, feed)
    meta: dict = {"chain": chain.name, "doc": chain.doc, "size": size, "shape": list(shape),
                  "dtype": "float32",
                  "bytes": moved_bytes(feed, chain.n_out, shape), "compile_s": {}, "check": {},
                  "copy_bandwidth": bw, "msgx_threads": cvm.cpu_count(), "threads": threads,
                  "loadavg_1m": os.getloadavg()[0], "torch_cache": torch_cache}
    t0 = time.perf_counter()
    try:
        sess = framework.InferenceSession(model, mode="graph", jit_level="O1")
    except Exception as e:  # noqa: BLE001 - ours failing is the row's error
        return harness.error_row(name, f"msgx session: {harness.describe_error(e)}", ours=OURS,
                                 baseline="onnxruntime", meta=meta, threads=threads, suite=SUITE)
    meta["compile_s"][OURS] = time.perf_counter() - t0
    st = sess.stats
    meta["msgx_backends"] = dict(st.get("backends", {}))
    meta["ran_on_dvm"] = "dvm" in meta["msgx_backends"]
    meta["msgx_stats"] = {k: st[k] for k in ("nodes", "clusters", "fused_ops", "fallbacks", "jit_level")
                          if k in st}
    ours = [np.asarray(a) for a in sess.run(None, feed)]
    runners: dict[str, Callable[[], object]] = {OURS: lambda: sess.run(None, feed)}

    arrays = list(feed.values())
    runners["numpy"] = _checked("numpy", lambda: chain.numpy(*arrays), chain.numpy(*arrays), ours,
                                meta["check"])

    t0 = time.perf_counter()
    ort = peers.ort_session(model, threads)
    meta["compile_s"]["onnxruntime"] = time.perf_counter() - t0
    meta["ort_ops"] = ort_ops(model)
    # None: the chain is one ONNX op (onnxruntime runs its own kernel for it, nothing to fuse)
    meta["ort_fuses"] = None if len(model.graph.node) == 1 else len(meta["ort_ops"]) < len(model.graph.node)
    runners["onnxruntime"] = _checked("onnxruntime", lambda: ort.run(None, feed), ort.run(None, feed), ours,
                                      meta["check"])

    torch = peers.torch_module()
    if torch is None:
        meta["torch"] = "not installed: torch peers skipped"
    else:
        meta["torch"] = torch.__version__
        fn = _torch_fns(torch)[chain.torch]
        if torch_eager:
            run = peers.torch_runner(fn, arrays, threads)
            runners["torch"] = _checked("torch", run, run(), ours, meta["check"], peers.torch_outputs)
        if torch_compile:
            try:
                run, compile_s, first = peers.torch_compiled_runner(fn, arrays, threads)
                meta["compile_s"]["torch.compile"] = compile_s
                runners["torch.compile"] = _checked("torch.compile", run, first, ours, meta["check"],
                                                    peers.torch_outputs)
            except Exception as e:  # noqa: BLE001 - a compile failure is the peer's error
                runners["torch.compile"] = _mismatch(f"compile failed: {harness.describe_error(e)}")
    runners[COPY] = bandwidth.copier(threads, meta["bytes"])
    return harness.Case(name, runners, meta, references=(COPY,))


def add_bandwidth(row: dict) -> dict:
    """GB/s (bytes moved / median) per runner, and its fraction of the copy bandwidth: `copy_fraction` of
    the copy of the same bytes timed in the same rounds (COPY), `peak_fraction` of the suite's start-of-run
    best-of-N (meta copy_bandwidth)."""
    meta = row["meta"]
    nbytes, peak = meta.get("bytes"), (meta.get("copy_bandwidth") or {}).get("gbps")
    meta["gbps"], meta["copy_fraction"], meta["peak_fraction"] = {}, {}, {}
    for name, r in row["runners"].items():
        if nbytes and "median_s" in r and r["median_s"] > 0:
            meta["gbps"][name] = nbytes / r["median_s"] / 1e9
    copy = meta["gbps"].get(COPY)
    for name, g in meta["gbps"].items():
        if name != COPY:
            if copy:
                meta["copy_fraction"][name] = g / copy
            if peak:
                meta["peak_fraction"][name] = g / peak
    return row


# --- report ---------------------------------------------------------------------------------------------

def _gbps_cell(row: dict) -> str:
    meta = row["meta"]
    g = meta.get("gbps", {}).get(OURS)
    if g is None:
        return "-"
    parts = [f"{100 * f:.0f}%" if (f := meta.get(k, {}).get(OURS)) is not None else "-"
             for k in ("copy_fraction", "peak_fraction")]
    return f"{g:.1f} ({' / '.join(parts)})"


def _compile_cell(row: dict) -> str:
    c = row["meta"].get("compile_s", {})
    return " / ".join(f"{c[k]:.2f}" if k in c else "-" for k in (OURS, "onnxruntime", "torch.compile"))


def _ort_cell(row: dict) -> str:
    ops = row["meta"].get("ort_ops")
    if ops is None:
        return "-"
    fuses = row["meta"].get("ort_fuses")
    return {None: "own kernel: ", True: "fused: ", False: "unfused: "}[fuses] + "+".join(ops)


def _backend_cell(row: dict) -> str:
    b = row["meta"].get("msgx_backends")
    return "-" if b is None else ",".join(f"{k}:{v}" for k, v in b.items())


MD_EXTRA = {"msgx GB/s (% copy: same rounds / start)": _gbps_cell, "msgx backends": _backend_cell,
            "compile s (msgx / ort / torch.compile)": _compile_cell, "onnxruntime graph": _ort_cell}


def _geomean(xs: list[float]) -> float | None:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def fraction_lines(rows: list[dict]) -> list[str]:
    """Per size, the range of our fractions of the copy bandwidth (both bases, see add_bandwidth)."""
    lines = []
    for size in dict.fromkeys(r["meta"].get("size") for r in rows):
        metas = [r["meta"] for r in rows if r["meta"].get("size") == size]
        same, peak = ([m[k][OURS] for m in metas if OURS in m.get(k, {})]
                      for k in ("copy_fraction", "peak_fraction"))
        if same or peak:
            bases = ((same, "a copy of the same bytes timed in the same rounds"),
                     (peak, "the start-of-run best"))
            text = [f"{100 * min(f):.0f}-{100 * max(f):.0f}% of {what}" for f, what in bases if f]
            lines.append(f"- {size}: msgx reaches " + "; ".join(text))
    return lines


def summary(rows: list[dict], bw: dict) -> str:
    """A few lines under the table: the bandwidth, and per peer the geomean ratio and the cases we win."""
    lines = [f"- copy bandwidth (np.copyto, {bw['nbytes'] >> 20} MiB): {bw['gbps_1t']:.1f} GB/s on 1 thread, "
             f"{bw['gbps_nt']:.1f} GB/s on {bw['threads']} threads; the limit used: {bw['gbps']:.1f} GB/s"]
    peer_names = list(dict.fromkeys(p for r in rows for p in r["ratios"]))
    for p in peer_names:
        rs = [r["ratios"][p] for r in rows if p in r["ratios"]]
        wins = sum(x < 1 for x in rs)
        gm = _geomean(rs)
        speed = f"msgx {1 / gm:.2f}x faster" if gm < 1 else f"msgx {gm:.2f}x slower"
        lines.append(f"- msgx/{p}: geomean {gm:.3f} ({speed}), "
                     f"msgx faster on {wins}/{len(rs)} cases, ratio range {min(rs):.2f}-{max(rs):.2f}")
    lines += fraction_lines(rows)
    loads = [r["meta"]["loadavg_1m"] for r in rows if "loadavg_1m" in r["meta"]]
    if loads:
        lines.append(f"- 1-minute load average when the cases were built: {min(loads):.2f}-{max(loads):.2f} "
                     f"(on {os.cpu_count()} CPUs; other processes share the machine)")
    dvm = [r for r in rows if r["meta"].get("ran_on_dvm") is False]
    on_dvm = sum(1 for r in rows if r["meta"].get("ran_on_dvm"))
    lines.append(f"- clusters on the DVM backend: {on_dvm}/{len(rows)} "
                 f"cases" + (f" (not: {', '.join(r['case'] for r in dvm)})" if dvm else ""))
    return "\n".join(lines) + "\n"


# --- command line ---------------------------------------------------------------------------------------

def parse_sizes(text: str) -> list[tuple[str, tuple[int, int]]]:
    """'small,medium' or explicit 'RxC' items."""
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        if item in SIZES:
            out.append((item, SIZES[item]))
        elif "x" in item:
            r, c = item.lower().split("x")
            out.append((item, (int(r), int(c))))
        else:
            raise ValueError(f"unknown size {item!r}: use {', '.join(SIZES)} or RxC")
    return out


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks ops", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="small,medium,large",
                   help="small, medium, large or RxC (comma-separated)")
    p.add_argument("--chains", help=f"comma-separated subset of {', '.join(CHAINS)}")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="onnxruntime and torch intra-op threads, and the copy-bandwidth threads")
    harness.add_timing_args(p, DEFAULTS)
    peers.add_torch_args(p)
    p.add_argument("--bandwidth-mib", type=int, default=256, help="size of the copy-bandwidth buffer")
    harness.add_output_args(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as e:
        print(f"python -m benchmarks ops: {e}", file=sys.stderr)
        return 2
    names = [c.strip() for c in args.chains.split(",")] if args.chains else list(CHAINS)
    unknown = [n for n in names if n not in CHAINS]
    if unknown:
        print(f"python -m benchmarks ops: unknown chain(s) {unknown}; known: {', '.join(CHAINS)}",
              file=sys.stderr)
        return 2
    kw = {**(QUICK if args.quick else DEFAULTS)}
    given = {"rounds": args.rounds, "warmup": args.warmup, "min_round_s": args.min_round_s,
             "max_case_s": args.max_case_s}
    kw.update({k: v for k, v in given.items() if v is not None})
    import framework  # noqa: F401 - imported before any clock starts
    import onnxruntime  # noqa: F401

    harness.progress(f"copy bandwidth with {args.threads} thread(s) ...")
    bw = bandwidth.measure(args.threads, args.bandwidth_mib << 20, repeats=3 if args.quick else 5)
    harness.progress(f"copy bandwidth: {bw['gbps']:.1f} GB/s")
    items = [(f"{CHAINS[n].name} {s[0]}x{s[1]}",
              lambda c=CHAINS[n], label=label, s=s: build_case(
                  c, label, s, args.threads, bw, torch_eager=not args.no_torch,
                  torch_compile=not (args.no_torch or args.no_compile), seed=args.seed,
                  torch_cache=args.torch_cache))
             for label, s in sizes for n in names]
    rows = []
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(args.out, "w")) if args.out else sys.stdout
        stack.enter_context(harness.thread_limits(args.threads))
        stack.enter_context(peers.torch_inductor_cache(args.torch_cache))
        for i, (label, thunk) in enumerate(items, 1):
            harness.progress(f"[{i}/{len(items)}] {label}")
            case = harness._build(label, thunk, {"threads": args.threads, "suite": SUITE})
            row = harness.measure(case, threads=args.threads, suite=SUITE, baseline="onnxruntime", **kw) \
                if isinstance(case, harness.Case) else case
            del case
            harness.emit(add_bandwidth(row), stream)
            rows.append(row)
            harness.progress(f"[{i}/{len(items)}] {label}: " + (f"ERROR {row['error']}" if row["error"] else
                             " ".join(f"msgx/{p} {r:.2f}" for p, r in row["ratios"].items())))
    table = harness.markdown_table(rows, MD_EXTRA) + "\n" + summary(rows, bw)
    return harness.finish(rows, table, args)


if __name__ == "__main__":
    sys.exit(main())
