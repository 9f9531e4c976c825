"""Train an MLP on scikit-learn's digits with msgx, MindSpore style.

python examples/train_mlp.py                 # graph mode: the whole step is one compiled graph
python examples/train_mlp.py --mode pynative # op by op
"""

import argparse

import numpy as np
from threadpoolctl import threadpool_limits

import framework
from framework import Tensor, nn
from _common import Progress, add_mode_args, digits


class MLP(nn.Cell):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Dense(64, 128, activation="relu")
        self.fc2 = nn.Dense(128, 64, activation="relu")
        self.fc3 = nn.Dense(64, 10)

    def construct(self, x):
        return self.fc3(self.fc2(self.fc1(x)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_mode_args(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    xtr, ytr, xte, yte = digits(images=False)
    nn.manual_seed(0)
    net, loss_fn = MLP(), nn.CrossEntropyLoss()
    steps = args.epochs * (len(xtr) // args.batch)
    opt = nn.Adam(net.trainable_params(), nn.CosineDecayLR(1e-4, 3e-3, steps))
    grad_fn = framework.value_and_grad(lambda x, y: loss_fn(net(x), y), None, opt.parameters)

    def train_step(x, y):
        loss, grads = grad_fn(x, y)
        opt(grads)
        return loss

    if args.mode == "graph":
        train_step = framework.jit(train_step, jit_level=args.jit_level)
    with threadpool_limits(args.threads):
        bar = Progress(steps, f"mlp {args.mode}")
        net.set_train()
        for _ in range(args.epochs):
            perm = np.random.default_rng(_).permutation(len(xtr))
            for i in range(0, len(xtr) - args.batch + 1, args.batch):
                idx = perm[i : i + args.batch]
                loss = train_step(Tensor(xtr[idx]), Tensor(ytr[idx]))
                bar.update(loss=float(loss.asnumpy()))
        net.set_train(False)
        acc = (net(Tensor(xte)).asnumpy().argmax(-1) == yte).mean()
    print(f"test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
