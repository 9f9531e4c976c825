"""Run an ONNX model with msgx in graph and PyNative mode and compare the two.

    python examples/infer.py                 # the bundled tiny_gpt
    python examples/infer.py model.onnx      # your model, random inputs (dynamic dims set to 1)
"""
import sys
import time

import numpy as np

import framework
import onnx_models


def random_feed(sess, seed=0):
    rng = np.random.default_rng(seed)
    feed = {}
    for arg in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in arg.shape or []]
        if arg.type == "tensor(float)":
            feed[arg.name] = rng.standard_normal(shape).astype(np.float32)
        else:
            feed[arg.name] = rng.integers(0, 2, shape).astype(np.int64)
    return feed


def main():
    if len(sys.argv) > 1:
        model, feed = sys.argv[1], None
    else:
        model = onnx_models.build("tiny_gpt")
        feed = onnx_models.example_inputs("tiny_gpt", {"batch": 2, "seq": 32})
    graph = framework.InferenceSession(model, mode="graph", jit_level="O0")
    eager = framework.InferenceSession(model, mode="pynative")
    feed = feed or random_feed(graph)
    t = time.perf_counter()
    outs = graph.run(None, feed)
    print(f"graph mode: {(time.perf_counter() - t) * 1e3:.2f} ms, stats: {graph.stats['backends']}")
    for arg, a, b in zip(graph.get_outputs(), outs, eager.run(None, feed)):
        print(f"{arg.name}: shape {a.shape}, max |graph - pynative| = {np.abs(a - b).max():.3g}")


if __name__ == "__main__":
    main()
