"""The PyNative suite: the bundled transformer run op by op, with runtime (lazy) fusion into DVM kernels
(PyNative O1, ours) against PyNative without it (O0, the baseline) and graph mode O0, at several sizes.

    python -m benchmarks pynative [--dims 1x16,2x16,1x64,4x64] [--threads N] [--quick]

Every runner gets the same feed; the first calls (which decide the fused groups and encode them) are
warm-up, so the rows compare steady-state runs of one input signature.
"""
from __future__ import annotations

import argparse

import numpy as np

from . import harness

SUITE = "pynative"
DEFAULTS = {"rounds": 7, "warmup": 3, "min_round_s": 0.05, "max_case_s": 10.0}
QUICK = {"rounds": 3, "warmup": 2, "min_round_s": 0.01, "max_case_s": 3.0}
SYSTEMS = (("msgx pynative O1", "pynative", "O1"), ("msgx pynative O0", "pynative", "O0"),
           ("msgx graph O0", "graph", "O0"))


def case(model, batch: int, seq: int, seed: int) -> harness.Case:
    import framework
    import onnx_models

    feed = onnx_models.example_inputs("tiny_gpt", {"batch": batch, "seq": seq}, seed=seed)
    runners, outs = {}, []
    for name, mode, level in SYSTEMS:
        s = framework.InferenceSession(model, mode=mode, jit_level=level)
        outs.append(s.run(None, feed))
        runners[name] = lambda s=s: s.run(None, feed)
    for got in outs[1:]:  # all three must agree before their times mean anything
        for a, b in zip(outs[0], got):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    return harness.Case(f"tiny_gpt b{batch} s{seq}", runners, {"batch": batch, "seq": seq})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks pynative", description=__doc__.splitlines()[0])
    p.add_argument("--dims", default="1x16,2x16,1x64,4x64", help="comma-separated BATCHxSEQ")
    p.add_argument("--threads", type=int, help="threads for our pools (default: the machine's)")
    harness.add_timing_args(p, DEFAULTS)
    harness.add_output_args(p)
    args = p.parse_args(argv)
    timing = {k: (getattr(args, k) if getattr(args, k) is not None else v)
              for k, v in (QUICK if args.quick else DEFAULTS).items()}
    import onnx_models

    model = onnx_models.build("tiny_gpt", seed=args.seed)
    dims = [tuple(int(x) for x in d.split("x")) for d in args.dims.split(",")]
    stream = open(args.out, "w") if args.out else None
    try:
        with harness.thread_limits(args.threads):
            rows = harness.run_cases([(f"tiny_gpt b{b} s{s}", lambda b=b, s=s: case(model, b, s, args.seed))
                                      for b, s in dims], stream=stream, suite=SUITE, threads=args.threads,
                                     baseline="msgx pynative O0", **timing)
    finally:
        if stream:
            stream.close()
    return harness.finish(rows, harness.markdown_table(rows), args)


if __name__ == "__main__":
    raise SystemExit(main())
