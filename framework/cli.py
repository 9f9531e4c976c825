"""The `msgx` command: run, info, models export, bench."""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time

import numpy as np

from .dtypes import random_tensor
from .errors import MsgxError


def _parse_pairs(items, what):
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"msgx: --{what} expects NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x")) if text else ()
    except ValueError:
        raise SystemExit(f"msgx: --shape expects dims like 1x3x224x224, got {text!r}") from None
    if any(d < 0 for d in dims):
        raise SystemExit(f"msgx: negative dim in --shape {text!r}")
    return dims


def _random_feed(sess, inputs: dict, shapes: dict, seed: int = 0) -> dict:
    """Feed from --input files, else random data of --shape or the declared shape (symbolic dims -> 1)."""
    rng = np.random.default_rng(seed)
    feed = {}
    for arg in sess.get_inputs():
        if arg.name in inputs:
            try:
                feed[arg.name] = np.load(inputs[arg.name], allow_pickle=False)
            except (OSError, ValueError) as e:
                raise SystemExit(f"msgx: cannot load --input {arg.name}={inputs[arg.name]}: {e}") from None
            continue
        if arg.name in shapes:
            shape = _parse_shape(shapes[arg.name])
        else:
            symbolic = [d for d in (arg.shape or []) if not isinstance(d, int)]
            if symbolic:
                print(f"note: input {arg.name!r} has dynamic dims {symbolic}; using 1 "
                      f"(set them with --shape {arg.name}=...)", file=sys.stderr)
            shape = tuple(d if isinstance(d, int) else 1 for d in (arg.shape or []))
        feed[arg.name] = random_tensor(rng, shape, _NP_OF_TYPE.get(arg.type, "float32"))
    return feed


_NP_OF_TYPE = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def _summary(name: str, a) -> str:
    if not isinstance(a, np.ndarray):
        return f"  {name}: {type(a).__name__}"
    head = f"  {name}: {a.dtype}{list(a.shape)}"
    if a.size and a.dtype.kind in "fiub":
        f = a.astype(np.float64)
        head += f"  mean={f.mean():.6g} std={f.std():.6g} min={f.min():.6g} max={f.max():.6g}"
        head += f"  first={np.array2string(a.reshape(-1)[:4], precision=5)}"
    return head


def cmd_run(args) -> int:
    import onnx_models
    from .session import InferenceSession

    if args.model_path and args.model:
        raise SystemExit("msgx run: give a MODEL.onnx path or --model NAME, not both")
    shapes = _parse_pairs(args.shape, "shape")
    inputs = _parse_pairs(args.input, "input")
    name = args.model or (None if args.model_path else onnx_models.DEFAULT_MODEL)
    t0 = time.perf_counter()
    if name:
        model = onnx_models.build(name)
        label = f"bundled model {name!r}"
    else:
        model, label = args.model_path, args.model_path
    sess = InferenceSession(model, mode=args.mode, jit_level=args.jit_level,
                            graph_kernel_flags=args.graph_kernel_flags)
    compile_s = time.perf_counter() - t0
    if name and not inputs:
        dims = {k: _parse_shape(v) for k, v in shapes.items()}
        feed = onnx_models.example_inputs(name, _dims_from_shapes(sess, dims) or None)
    else:
        feed = _random_feed(sess, inputs, shapes)
    print(f"msgx run: {label} | mode={sess.stats['mode']} jit_level={sess.jit_level} | "
          f"{sess.stats['nodes']} kernels ({sess.stats['nodes_in_model']} nodes in the model) | "
          f"compiled in {compile_s * 1e3:.1f} ms")
    for k, v in feed.items():
        print(f"  input {k}: {v.dtype}{list(v.shape)}")
    times = []
    for _ in range(max(args.repeat, 1)):
        t = time.perf_counter()
        outputs = sess.run(None, feed)
        times.append(time.perf_counter() - t)
    for arg, out in zip(sess.get_outputs(), outputs):
        print(_summary(arg.name, out))
    print(f"latency over {len(times)} run(s): median {statistics.median(times) * 1e3:.3f} ms, "
          f"min {min(times) * 1e3:.3f} ms (first run {times[0] * 1e3:.3f} ms)")
    st = sess.stats
    fusion = st["fusion"] + (f", {st['clusters']} clusters holding {st['fused_ops']} ops" if st["clusters"] else "")
    print(f"backends: {st['backends']}; fusion: {fusion}")
    if st["fallbacks"]:
        print(f"fallbacks: {len(st['fallbacks'])} fused kernel(s) ran on the numpy reference "
              f"({next(iter(st['fallbacks'].values()))})")
    return 0


def _dims_from_shapes(sess, shapes: dict) -> dict:
    """Map --shape name=AxB for a bundled model onto its symbolic dim names (batch, seq, ...)."""
    dims = {}
    for arg in sess.get_inputs():
        if arg.name in shapes:
            given = shapes[arg.name]
            if len(given) != len(arg.shape or []):
                raise SystemExit(f"msgx: --shape {arg.name} has rank {len(given)}, the input has {arg.shape}")
            dims.update({d: g for d, g in zip(arg.shape, given) if isinstance(d, str)})
    return dims


def cmd_info(args) -> int:
    from .onnx_frontend import load_model

    proto, _ = load_model(args.model_path)
    from .session import InferenceSession
    sess = InferenceSession(proto)
    print(f"model: {args.model_path}  (ir_version {proto.ir_version}, producer {proto.producer_name or '-'})")
    print("opsets: " + ", ".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in proto.opset_import))
    print("inputs:")
    for a in sess.get_inputs():
        print(f"  {a.name}: {a.type} {a.shape}")
    print("outputs:")
    for a in sess.get_outputs():
        print(f"  {a.name}: {a.type} {a.shape}")
    counts = collections.Counter(n.op_type for n in proto.graph.node)
    print(f"ops ({sum(counts.values())} nodes, {len(counts)} types):")
    for op, n in counts.most_common():
        print(f"  {op:<28} {n}")
    print(f"after the O0 pipeline: {sess.stats['nodes']} kernels")
    return 0


def cmd_models_export(args) -> int:
    import onnx_models

    for path in onnx_models.export(args.directory):
        print(path)
    return 0


def cmd_bench(args) -> int:
    import importlib

    try:
        suite = importlib.import_module(f"benchmarks.{args.suite}")
    except ModuleNotFoundError:
        raise SystemExit(f"msgx bench: no suite {args.suite!r}") from None
    return suite.main(args.rest)


def cmd_conformance(args) -> int:
    from . import conformance
    return conformance.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="msgx", description="MindSpore-style graph execution for ONNX models")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a model (default: the bundled tiny_gpt) and print outputs and latency")
    r.add_argument("model_path", nargs="?", help="MODEL.onnx")
    r.add_argument("--model", help="a bundled model: tiny_gpt, mobilenet, mlp")
    r.add_argument("--mode", default="graph", choices=["graph", "pynative"])
    r.add_argument("--jit-level", default="O0", choices=["O0", "O1"])
    r.add_argument("--graph-kernel-flags", default="")
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy")
    r.add_argument("--shape", action="append", metavar="NAME=1x3x224x224")
    r.add_argument("--repeat", type=int, default=10)
    r.set_defaults(fn=cmd_run)
    i = sub.add_parser("info", help="print a model's inputs, outputs, opsets and op counts")
    i.add_argument("model_path")
    i.set_defaults(fn=cmd_info)
    m = sub.add_parser("models", help="bundled models")
    msub = m.add_subparsers(dest="models_command", required=True)
    e = msub.add_parser("export", help="write the bundled models as .onnx files")
    e.add_argument("directory")
    e.set_defaults(fn=cmd_models_export)
    b = sub.add_parser("bench", help="benchmark suites (ours vs peers, interleaved)")
    b.add_argument("suite", help="models")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(fn=cmd_bench)
    c = sub.add_parser("conformance", help="ONNX conformance cases through our API: per-case report and pass rate",
                       add_help=False)
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(fn=cmd_conformance)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["conformance"]:  # argparse's REMAINDER would reject a leading option (--suite ...)
        args = argparse.Namespace(fn=cmd_conformance, rest=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except MsgxError as e:
        print(f"msgx: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # e.g. an unknown bundled model name
        print(f"msgx: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
