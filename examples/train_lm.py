"""Train the bundled transformer (tiny_gpt, loaded from ONNX) as a character-level language model on the
documentation text that ships with Python (pydoc_data.topics), then sample from it.

    python examples/train_lm.py [--mode graph|pynative] [--steps 300] [--seq 64]
"""

import argparse

import numpy as np
from threadpoolctl import threadpool_limits

import framework
import onnx_models
from framework import Tensor, nn
from _common import Progress, add_mode_args


def corpus() -> np.ndarray:
    from pydoc_data.topics import topics

    return np.frombuffer("".join(topics[k] for k in sorted(topics)).encode(), np.uint8).astype(np.int64)


def sample(net, prompt: str, n: int, seq: int) -> str:
    ids = list(prompt.encode())
    for _ in range(n):
        ctx = np.array([ids[-seq:]], np.int64)
        ids.append(int(net(Tensor(ctx)).asnumpy()[0, -1].argmax()))
    return bytes(ids).decode("utf-8", "replace")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_mode_args(p)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    args = p.parse_args()
    data = corpus()
    net = framework.load_onnx(onnx_models.build("tiny_gpt"))  # byte vocabulary (256), 128 positions
    loss_fn = nn.CrossEntropyLoss()
    opt = nn.Adam(net.trainable_params(), nn.WarmUpLR(args.lr, 20))
    grad_fn = framework.value_and_grad(lambda x, y: loss_fn(net(x), y), None, opt.parameters)

    def train_step(x, y):
        loss, grads = grad_fn(x, y)
        opt(grads)
        return loss

    if args.mode == "graph":
        train_step = framework.jit(train_step, jit_level=args.jit_level)
    rng = np.random.default_rng(0)
    with threadpool_limits(args.threads):
        bar = Progress(args.steps, f"lm {args.mode}")
        first = None
        for _ in range(args.steps):
            idx = rng.integers(0, len(data) - args.seq - 1, args.batch)
            x = np.stack([data[i : i + args.seq] for i in idx])
            y = np.stack([data[i + 1 : i + args.seq + 1] for i in idx])
            loss = float(train_step(Tensor(x), Tensor(y)).asnumpy())
            first = loss if first is None else first
            bar.update(loss=loss)
        print(f"loss {first:.3f} -> {loss:.3f}")
        print(repr(sample(net, "The ", 80, args.seq)))


if __name__ == "__main__":
    main()
