"""Train a small CNN (Conv-BatchNorm-ReLU-Pool x2, Dense) on scikit-learn's 8x8 digits with msgx.

python examples/train_cnn.py [--mode graph|pynative] [--epochs 5]
"""

import argparse

import numpy as np
from threadpoolctl import threadpool_limits

import framework
from framework import Tensor, nn
from _common import Progress, add_mode_args, digits


def make_net():
    return nn.SequentialCell(
        nn.Conv2d(1, 16, 3, has_bias=True),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Dense(32 * 2 * 2, 10),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_mode_args(p)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=50)
    args = p.parse_args()
    xtr, ytr, xte, yte = digits(images=True)
    nn.manual_seed(0)
    net, loss_fn = make_net(), nn.CrossEntropyLoss()
    steps = args.epochs * (len(xtr) // args.batch)
    opt = nn.Momentum(
        net.trainable_params(), nn.CosineDecayLR(1e-3, 0.05, steps), momentum=0.9, weight_decay=1e-4
    )
    grad_fn = framework.value_and_grad(lambda x, y: loss_fn(net(x), y), None, opt.parameters)

    def train_step(x, y):
        loss, grads = grad_fn(x, y)
        opt(grads)
        return loss

    if args.mode == "graph":
        # None dims: one compiled graph serves every batch size (the last, smaller batch included)
        train_step = framework.jit(
            train_step,
            jit_level=args.jit_level,
            input_signature=(
                Tensor(shape=(None, 1, 8, 8), dtype=np.float32),
                Tensor(shape=(None,), dtype=np.int64),
            ),
        )
    with threadpool_limits(args.threads):
        bar = Progress(steps, f"cnn {args.mode}")
        net.set_train()
        for _ in range(args.epochs):
            for i in range(0, len(xtr) - args.batch + 1, args.batch):
                loss = train_step(Tensor(xtr[i : i + args.batch]), Tensor(ytr[i : i + args.batch]))
                bar.update(loss=float(loss.asnumpy()))
        net.set_train(False)
        acc = (net(Tensor(xte)).asnumpy().argmax(-1) == yte).mean()
    print(f"test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
