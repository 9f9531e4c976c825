"""How one ops-suite chain's DVM program runs with its outputs at different offsets into a 4 KiB page.

The program is encoded once through a graph session; then the C VM runs it directly (no session) on inputs
placed at --input-offset, --input-offset + 1024, ... bytes into a page and outputs at each offset in turn,
best of --rounds. Offsets change what cache lines and 4 KiB aliases the VM's stores meet, which
`dvm_runtime/recycle.py` chooses for every recycled output.

    python -m benchmarks.offsets softmax 8192x1024 [--threads 1] [--offsets 0,32,64,2112,2144]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import framework
from dvm_runtime import cvm, encoder

from . import ops


def placed(offset: int, shape, dtype) -> np.ndarray:
    """An uninitialized array starting `offset` bytes (mod 4096) into a page."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + 8192, np.uint8)
    start = (offset - raw.ctypes.data) % 4096
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def encoded_program(chain: ops.Chain, feed: dict):
    """The DVM program a graph session runs for the chain (the last it encoded: setup may encode trials)."""
    programs, real = [], encoder.encode
    encoder.encode = lambda *a, **k: programs.append(real(*a, **k)) or programs[-1]
    try:
        framework.InferenceSession(ops.build_model(chain, feed), mode="graph", jit_level="O1").run(None, feed)
    finally:
        encoder.encode = real
    if not programs or len(programs[-1].slots) == 0:
        raise SystemExit(f"{chain.name}: no DVM program was encoded")
    return programs[-1]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("chain", choices=sorted(ops.CHAINS))
    p.add_argument("size", help="RxC, e.g. 8192x1024")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--offsets", default="0,32,64,1056,2112,2144", help="output offsets into a page, bytes")
    p.add_argument("--input-offset", type=int, default=32)
    p.add_argument("--input-step", type=int, default=1024, help="bytes between big inputs' offsets")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    rows, cols = map(int, args.size.split("x"))
    chain = ops.CHAINS[args.chain]
    feed = chain.inputs(rows, cols, np.random.default_rng(0))
    prog = encoded_program(chain, feed)
    vm = cvm.extension().Program(np.asarray(prog.code, np.uint64), None, args.threads)
    bufs, outputs, n_big, rng = [], [], 0, np.random.default_rng(1)
    for k, (role, src, shape, dtype) in enumerate(prog.slots):
        if src is None:  # an output
            outputs.append(k)
            bufs.append(None)
            continue
        # positive values (a kernel input's order need not be the feed's): Adam's sqrt stays real
        value = (np.abs(np.asarray(rng.standard_normal(shape))) + 0.5).astype(dtype)
        if value.size == rows * cols:  # big inputs --input-step apart
            arr = placed(args.input_offset + args.input_step * n_big, shape, dtype)
            arr[...] = value
            value, n_big = arr, n_big + 1
        bufs.append(value)
    calls = max(3, int(2e7 / (rows * cols)))
    print(f"{args.chain} {args.size}, {args.threads} thread(s), big inputs at {args.input_offset} + "
          f"{args.input_step} k: "
          f"ms per call, best of {args.rounds} x {calls}")
    for offset in (int(o) for o in args.offsets.split(",")):
        run = list(bufs)
        for k in outputs:
            run[k] = placed(offset, prog.slots[k][2], prog.slots[k][3])
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(calls):
                vm(run)
            best = min(best, (time.perf_counter() - t0) / calls)
        print(f"  outputs at {offset:4d}: {best * 1e3:.3f}")


if __name__ == "__main__":
    main()
