"""The `msgx` command: run, profile, show, info, models export, bench, conformance.

Exit codes: 0 success, 1 failure (internal error, or a strict benchmark with errors), 2 bad usage or bad
input (a typed MsgxError), 130 interrupted.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import importlib
import os
import statistics
import sys
import time
import traceback

import numpy as np

from .dtypes import random_tensor
from .errors import InputNameError, InputShapeError, MsgxError


_QUIET = False  # --quiet: no notes on stderr (stdout is silenced by main)


def _usage(message: str):
    """Bad usage: one line on stderr, exit code 2 (as argparse does)."""
    print(f"msgx: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _note(message: str) -> None:
    if not _QUIET:
        print(message, file=sys.stderr)


def _parse_pairs(items, what):
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            _usage(f"--{what} expects NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def _positive_int(text: str) -> int:
    """argparse type for --repeat: 0 or a negative count would silently run once, so it is bad usage."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _check_input_names(sess, inputs: dict, shapes: dict) -> None:
    """--input/--shape naming no model input would otherwise be ignored and the run fed random data."""
    known = [a.name for a in sess.get_inputs()]
    for what, given in (("--input", inputs), ("--shape", shapes)):
        unknown = [n for n in given if n not in known]
        if unknown:
            raise InputNameError(f"{what}: no model input named {', '.join(map(repr, unknown))}; "
                                 f"the model's inputs are {known}")


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x")) if text else ()
    except ValueError:
        _usage(f"--shape expects dims like 1x3x224x224, got {text!r}")
    if any(d < 0 for d in dims):
        _usage(f"negative dim in --shape {text!r}")
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
                _usage(f"cannot load --input {arg.name}={inputs[arg.name]}: {e}")
            continue
        if arg.name in shapes:
            shape = _parse_shape(shapes[arg.name])
        else:
            symbolic = [d for d in (arg.shape or []) if not isinstance(d, int)]
            if symbolic:
                _note(f"note: input {arg.name!r} has dynamic dims {symbolic}; using 1 "
                      f"(set them with --shape {arg.name}=...)")
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


def _flags(args) -> str:
    """--graph-kernel-flags plus --dump-ir DIR (the pipeline's --dump_as_text mechanism)."""
    flags = args.graph_kernel_flags or ""
    if getattr(args, "dump_ir", None):
        if any(c.isspace() for c in args.dump_ir):
            _usage(f"--dump-ir {args.dump_ir!r}: the directory name may not contain spaces")
        if args.mode == "pynative":
            _usage("--dump-ir needs --mode graph (PyNative runs the model as imported, with no passes)")
        flags += f" --dump_as_text={args.dump_ir}"
    return flags.strip()


def _session(args, profile=False):
    """The session, a label, the feed and the compile seconds for run/profile/show."""
    import onnx_models
    from .session import InferenceSession

    if args.model_path and args.model:
        _usage(f"msgx {args.command}: give a MODEL.onnx path or --model NAME, not both")
    shapes = _parse_pairs(args.shape, "shape")
    inputs = _parse_pairs(args.input, "input")
    name = args.model or (None if args.model_path else onnx_models.DEFAULT_MODEL)
    if args.model_path and not os.path.exists(args.model_path):
        _usage(f"no such model file: {args.model_path}")
    t0 = time.perf_counter()
    if name:
        model = onnx_models.build(name)
        label = f"bundled model {name!r}"
    else:
        model, label = args.model_path, args.model_path
    sess = InferenceSession(model, mode=args.mode, jit_level=args.jit_level, graph_kernel_flags=_flags(args),
                            profile=profile)
    compile_s = time.perf_counter() - t0
    _check_input_names(sess, inputs, shapes)
    if name and not inputs:
        dims = {k: _parse_shape(v) for k, v in shapes.items()}
        feed = onnx_models.example_inputs(name, _dims_from_shapes(sess, dims) or None)
    else:
        feed = _random_feed(sess, inputs, shapes)
    return sess, label, feed, compile_s


def cmd_run(args) -> int:
    sess, label, feed, compile_s = _session(args, profile=args.profile or False)
    print(f"msgx run: {label} | mode={sess.stats['mode']} jit_level={sess.jit_level} | "
          f"{sess.stats['nodes']} kernels ({sess.stats['nodes_in_model']} nodes in the model) | "
          f"compiled in {compile_s * 1e3:.1f} ms")
    for k, v in feed.items():
        print(f"  input {k}: {v.dtype}{list(v.shape)}")
    times = []
    for _ in range(args.repeat):  # >= 1: _positive_int
        t = time.perf_counter()
        outputs = sess.run(None, feed)
        times.append(time.perf_counter() - t)
    for arg, out in zip(sess.get_outputs(), outputs):
        print(_summary(arg.name, out))
    print(f"latency over {len(times)} run(s): median {statistics.median(times) * 1e3:.3f} ms, "
          f"min {min(times) * 1e3:.3f} ms (first run {times[0] * 1e3:.3f} ms)")
    st = sess.stats
    fusion = st["fusion"] + (f", {st['clusters']} clusters holding {st['fused_ops']} ops"
                             if st["clusters"] else "")
    print(f"backends: {st['backends']}; fusion: {fusion}")
    if st["fallbacks"]:
        print(f"fallbacks: {len(st['fallbacks'])} fused kernel(s) ran on the numpy reference "
              f"({next(iter(st['fallbacks'].values()))})")
    if args.profile:
        print(f"trace written to {sess.end_profiling()} "
              "(open it in https://ui.perfetto.dev or chrome://tracing)")
    if args.dump_ir:
        print(f"IR after every pass written to {args.dump_ir}/")
    return 0


def cmd_profile(args) -> int:
    from . import profiler

    sess, label, feed, _ = _session(args, profile=args.output or True)
    sess.run(None, feed)  # first run: DVM encodes, caches fill; its kernels are left out of the table
    for _ in range(args.repeat):  # >= 1: _positive_int
        sess.run(None, feed)
    prof = sess._profiler
    events = prof.kernel_events(frozenset(sess.stats["fallbacks"]), first_run=1)
    summary = profiler.summarize(events)
    covered = sorted(prof.coverage(first_run=1))
    print(f"msgx profile: {label} | mode={sess.stats['mode']} jit_level={sess.jit_level} | "
          f"{args.repeat} run(s) after a warm-up run | inputs "
          + ", ".join(f"{k}{list(v.shape)}" for k, v in feed.items()))
    print(profiler.format_summary(summary, top=args.top))
    if covered:
        print(f"kernels cover {covered[len(covered) // 2]:.1%} of the run time (median of {len(covered)} runs; "
              "the rest is the executor between kernels)")
    if args.output:
        print(f"trace written to {sess.end_profiling()}")
    return 0


def cmd_show(args) -> int:
    from . import show

    if not args.output.endswith((".html", ".svg")):
        _usage(f"-o {args.output!r}: the picture is written as .html (with click-through) or .svg")
    sess, label, feed, _ = _session(args)
    if not args.no_run:
        sess.run(None, feed)  # DVM kernels then hold bytecode for these shapes, shown in the HTML
    path = show.write(sess, args.output, title=f"{label} at {sess.jit_level}")
    print(f"wrote {path}: {sess.stats['nodes']} kernels, {sess.stats['clusters']} fused clusters")
    return 0


def _dims_from_shapes(sess, shapes: dict) -> dict:
    """Map --shape name=AxB for a bundled model onto its symbolic dim names (batch, seq, ...)."""
    dims = {}
    for arg in sess.get_inputs():
        if arg.name in shapes:
            given = shapes[arg.name]
            if len(given) != len(arg.shape or []):
                # a typed error, so main reports it as bad input (exit 2), not as SystemExit's exit 1
                raise InputShapeError(f"--shape {arg.name} has rank {len(given)}, the input has {arg.shape}")
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


def _suites() -> tuple[str, ...]:
    from benchmarks.__main__ import SUITES
    return tuple(SUITES) + ("report",)


def cmd_bench(args) -> int:
    if args.suite not in _suites():
        _usage(f"msgx bench: no suite {args.suite!r}; choose from {', '.join(_suites())}")
    if args.suite == "report":  # runs every suite in a child process of its own
        return importlib.import_module("benchmarks.report").main(args.rest)
    # a suite in a fresh interpreter: benchmarks/__init__.py sets OpenBLAS's thread timeout, which OpenBLAS reads
    # when it loads, and it loaded here with numpy
    import subprocess
    return subprocess.call([sys.executable, "-m", "benchmarks", args.suite, *args.rest])


def cmd_conformance(args) -> int:
    from . import conformance
    return conformance.main(args.rest)


EXAMPLES = """examples:
  msgx run                                     run the bundled tiny_gpt (O0, graph mode)
  msgx run model.onnx --jit-level O1 --shape ids=4x64 --profile trace.json
  msgx profile model.onnx --jit-level O1       top kernels by time, fused vs reference share
  msgx show --model tiny_gpt --jit-level O1 -o graph.html
  msgx run --jit-level O1 --dump-ir ir/        printed IR after every pass (ir/00_input.txt, 01_...)
  msgx bench report                            every benchmark suite -> BENCHMARKS.md
exit codes: 0 ok, 1 failure, 2 bad usage or bad input, 130 interrupted"""

# Packages that add subcommands: each names a module with register(subparsers, common) (e.g.
# "kernel_agent.cli"); `common` is the parent parser of -q/--debug, which every (sub-)command takes.
EXTENSIONS: tuple[str, ...] = ("kernel_agent.cli",)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("msgx")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _model_args(p, jit_default: str = "O0") -> None:
    """The options of commands that compile and run a model."""
    p.add_argument("model_path", nargs="?", metavar="MODEL.onnx", help="a model file (default: --model)")
    p.add_argument("--model", help="a bundled model: tiny_gpt (the default), mobilenet, mlp")
    p.add_argument("--mode", default="graph", choices=["graph", "pynative"])
    p.add_argument("--jit-level", default=jit_default, choices=["O0", "O1"],
                   help="O1 adds graph-kernel fusion")
    p.add_argument("--graph-kernel-flags", default="",
                   help="MindSpore-style, e.g. '--disable_expand_ops=Gelu'")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy")
    p.add_argument("--shape", action="append", metavar="NAME=1x3x224x224")
    p.add_argument("--dump-ir", metavar="DIR",
                   help="write the printed IR after every pass into DIR, numbered")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _common_args(common)
    p = argparse.ArgumentParser(prog="msgx", description="MindSpore-style graph execution for ONNX models",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                                parents=[common])
    p.add_argument("--version", action="version", version=f"msgx {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("run", parents=[common], help="run a model and print outputs and latency")
    _model_args(r)
    r.add_argument("--repeat", type=_positive_int, default=10, help="timed runs (at least 1)")
    r.add_argument("--profile", metavar="TRACE.json", help="write a Chrome/Perfetto trace of the runs")
    r.set_defaults(fn=cmd_run)
    pr = sub.add_parser("profile", parents=[common], help="top kernels by time; fused vs reference share")
    _model_args(pr)
    pr.add_argument("--repeat", type=_positive_int, default=10, help="profiled runs after one warm-up run")
    pr.add_argument("--top", type=int, default=15, help="kernels listed")
    pr.add_argument("-o", "--output", metavar="TRACE.json", help="also write the trace")
    pr.set_defaults(fn=cmd_profile)
    sh = sub.add_parser("show", parents=[common], help="draw the graph after the pipeline (.html or .svg)")
    _model_args(sh)
    sh.add_argument("-o", "--output", required=True, metavar="graph.html|graph.svg")
    sh.add_argument("--no-run", action="store_true", help="do not run the model once (DVM listings then come "
                    "from a trial encode with symbols bound to small numbers)")
    sh.set_defaults(fn=cmd_show)
    i = sub.add_parser("info", parents=[common], help="print a model's inputs, outputs, opsets and op counts")
    i.add_argument("model_path", metavar="MODEL.onnx")
    i.set_defaults(fn=cmd_info)
    m = sub.add_parser("models", parents=[common], help="bundled models")
    msub = m.add_subparsers(dest="models_command", required=True)
    e = msub.add_parser("export", parents=[common], help="write the bundled models as .onnx files")
    e.add_argument("directory")
    e.set_defaults(fn=cmd_models_export)
    b = sub.add_parser("bench", parents=[common], help="benchmark suites (ours vs peers, interleaved)")
    b.add_argument("suite", help=f"one of {', '.join(_suites())} (report: all suites -> BENCHMARKS.md)")
    b.add_argument("rest", nargs=argparse.REMAINDER, help="the suite's options (msgx bench SUITE --help)")
    b.set_defaults(fn=cmd_bench)
    c = sub.add_parser("conformance", parents=[common],
                       help="ONNX conformance cases through our API: per-case report and pass rate",
                       add_help=False)
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(fn=cmd_conformance)
    # ---- subcommands registered by other packages (see EXTENSIONS) ----
    for module in EXTENSIONS:
        try:
            importlib.import_module(module).register(sub, common)
        except ModuleNotFoundError:  # the package is not installed: its commands are simply absent
            pass
    return p


def _common_args(p) -> None:
    """-q/--quiet and --debug, which every command and sub-command takes (README). SUPPRESS as default, so
    a sub-command's parser does not reset a flag given before the sub-command's name."""
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="print nothing but errors")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback of an error")


def _pop_common_flags(rest: list, flags: dict) -> list:
    """Take -q/--quiet/--debug out of a pass-through command's arguments (bench SUITE ..., conformance ...):
    argparse.REMAINDER hands them to the suite's own parser, which rejects them."""
    out = []
    for arg in rest:
        if arg in ("-q", "--quiet", "--debug"):
            flags["debug" if arg == "--debug" else "quiet"] = True
        else:
            out.append(arg)
    return out


def main(argv=None) -> int:
    global _QUIET
    argv = sys.argv[1:] if argv is None else list(argv)
    flags = {"quiet": False, "debug": False}
    while argv and argv[0] in ("-q", "--quiet", "--debug"):  # global options before the command
        flags["debug" if argv.pop(0) == "--debug" else "quiet"] = True
    if argv[:1] == ["conformance"]:  # argparse's REMAINDER would reject a leading option (--suite ...)
        args = argparse.Namespace(fn=cmd_conformance, rest=argv[1:], command="conformance")
    else:
        args = build_parser().parse_args(argv)
    if args.command in ("bench", "conformance"):
        args.rest = _pop_common_flags(args.rest, flags)
    quiet = flags["quiet"] or getattr(args, "quiet", False)
    debug = flags["debug"] or getattr(args, "debug", False)
    _QUIET = quiet
    try:
        with contextlib.ExitStack() as stack:
            if quiet:
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            return args.fn(args)
    except KeyboardInterrupt:
        print("msgx: interrupted", file=sys.stderr)
        return 130
    except (MsgxError, ValueError, OSError) as e:  # bad input: a model, a file, a bundled model name
        if debug:
            traceback.print_exc()
        kind = f"{type(e).__name__}: " if isinstance(e, MsgxError) else ""
        print(f"msgx: error: {kind}{_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"msgx: internal error: {type(e).__name__}: {_one_line(e)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        _QUIET = False


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 400 else text[:397] + "..."


if __name__ == "__main__":
    sys.exit(main())
