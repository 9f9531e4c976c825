"""Fine-tune an ONNX model with msgx: its initializers become trainable Parameters; export the result.

    python examples/finetune_onnx.py                      # the bundled mlp (32 features -> 10 probabilities)
    python examples/finetune_onnx.py --out tuned.onnx --mode pynative

The bundled mlp is fine-tuned on scikit-learn's digits, each 8x8 image averaged to 8x4 = 32 features.
"""

import argparse

import numpy as np
from threadpoolctl import threadpool_limits

import framework
import onnx_models
from framework import Tensor, nn, ops
from _common import Progress, add_mode_args, digits


def features(x):
    return x.reshape(len(x), 8, 4, 2).mean(-1).reshape(len(x), 32)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_mode_args(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", default="finetuned_mlp.onnx")
    args = p.parse_args()
    xtr, ytr, xte, yte = digits(images=False)
    xtr, xte = features(xtr), features(xte)
    net = framework.load_onnx(onnx_models.build("mlp"))
    print("trainable:", ", ".join(f"{n}{list(p.shape)}" for n, p in net.parameters_and_names()))

    def loss_fn(x, y):  # the model ends in Softmax: negative log-likelihood of its probabilities
        probs = net(x)
        return ops.neg(ops.reduce_mean(ops.reduce_sum(ops.log(probs + 1e-7) * ops.one_hot(y, 10), -1)))

    opt = nn.AdamWeightDecay(net.trainable_params(), 3e-3, weight_decay=1e-4)
    grad_fn = framework.value_and_grad(loss_fn, None, opt.parameters)

    def train_step(x, y):
        loss, grads = grad_fn(x, y)
        opt(grads)
        return loss

    if args.mode == "graph":
        train_step = framework.jit(train_step, jit_level=args.jit_level)
    with threadpool_limits(args.threads):
        before = (net(Tensor(xte)).asnumpy().argmax(-1) == yte).mean()
        bar = Progress(args.epochs * (len(xtr) // args.batch), f"finetune {args.mode}")
        for _ in range(args.epochs):
            for i in range(0, len(xtr) - args.batch + 1, args.batch):
                loss = train_step(Tensor(xtr[i : i + args.batch]), Tensor(ytr[i : i + args.batch]))
                bar.update(loss=float(loss.asnumpy()))
        after = (net(Tensor(xte)).asnumpy().argmax(-1) == yte).mean()
    print(f"test accuracy before {before:.4f}, after {after:.4f}")
    net.set_inputs(Tensor(shape=(None, 32), dtype=np.float32))
    framework.export(net, file_name=args.out)
    print(f"wrote {args.out} (dynamic batch); run it with framework.InferenceSession or onnxruntime")


if __name__ == "__main__":
    main()
