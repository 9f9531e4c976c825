"""Host time per call of msgx's GPU sessions, where the host, not the GPU, bounds a call (small tensors):
each chain of the ops suite on device-resident inputs, launched through cuLaunchKernel with packed arguments
and through CuPy's kernel call (interleaved, best of rounds; outputs checked against numpy first), then a
cProfile of Adam's calls. On a CUDA machine: `python -m benchmarks.gpu_host [--sizes 1024x1024,64x256]`."""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time

import numpy as np

from . import ops


def per_call_us(sess, feed, calls: int, rounds: int = 5) -> float:
    """Best over rounds of the host time per call of `calls` back-to-back calls (the device drained first)."""
    import cupy

    best = float("inf")
    for _ in range(rounds):
        cupy.cuda.Device().synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            sess.run(None, feed)
        best = min(best, (time.perf_counter() - t0) / calls)
        cupy.cuda.Device().synchronize()
    return best * 1e6


def gpu_session(chain: ops.Chain, shape: tuple[int, int]):
    """A device='gpu' session of `chain` at `shape`, its device-resident feed and the numpy outputs."""
    import cupy

    import framework
    feed = chain.inputs(*shape, np.random.default_rng(0))
    sess = framework.InferenceSession(ops.build_model(chain, feed), jit_level="O1", device="gpu")
    want = [np.asarray(a) for a in ops._as_list(chain.numpy(*feed.values()))]
    return sess, {k: cupy.asarray(v) for k, v in feed.items()}, want


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_host", description=__doc__)
    p.add_argument("--sizes", default="1024x1024,64x256", help="RxC, comma-separated")
    p.add_argument("--calls", type=int, default=300)
    args = p.parse_args(argv)
    from dvm_runtime import gpu
    if not gpu.available():
        print("no CUDA device / CuPy: nothing to measure", file=sys.stderr)
        return 0
    import cupy

    from dvm_runtime.gpu import vm as gvm
    vm = gvm.get_vm()
    driver = vm.driver_launch
    print(f"cuLaunchKernel through CuPy's driver binding: {'yes' if driver else 'no (CuPy launches only)'}")
    for size in args.sizes.split(","):
        shape = tuple(int(x) for x in size.split("x"))
        for chain in ops.CHAINS.values():
            sess, dfeed, want = gpu_session(chain, shape)
            best = {}
            for name, launcher in [("packed", driver), ("cupy", None)] * 2:
                vm.driver_launch = launcher
                for got, w in zip(sess.run(None, dfeed), want, strict=True):
                    np.testing.assert_allclose(cupy.asnumpy(got), w, rtol=2e-4, atol=2e-5)
                best[name] = min(best.get(name, float("inf")), per_call_us(sess, dfeed, args.calls))
            vm.driver_launch = driver
            print(f"{chain.name} {size}: host us per call, packed arguments {best['packed']:.1f}, "
                  f"CuPy's call {best['cupy']:.1f}", flush=True)
    sess, dfeed, _ = gpu_session(ops.CHAINS["adam"], (1024, 1024))
    per_call_us(sess, dfeed, 50, rounds=1)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(2000):
        sess.run(None, dfeed)
    prof.disable()
    cupy.cuda.Device().synchronize()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(22)
    print("adam 1024x1024, 2000 calls, by own time:\n" + out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
