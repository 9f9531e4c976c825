"""Data-parallel training over MPI: every rank trains on its share of each global batch, gradients are
averaged by an all-reduce, so n ranks follow the same trajectory as one process with the whole batch.

    mpirun -n 2 python examples/train_dp.py --model cnn          # the digits CNN
    mpirun -n 2 python examples/train_dp.py --model lm           # the bundled transformer, char-level LM
    mpirun -n 4 --host hostA:2,hostB:2 python examples/train_dp.py   # several hosts (see README)

Rank 0 broadcasts the initial parameters, prints progress and writes checkpoints (`--save`); `--resume`
loads one on any number of ranks.
"""

import argparse
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import framework
from framework import Tensor, communication as comm, nn
from framework.checkpoint import load_checkpoint, load_param_into_net, save_checkpoint

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Progress, digits  # noqa: E402


def cnn_task(args):
    """The digits CNN without BatchNorm/Dropout: batch statistics and dropout masks would differ per rank,
    so the data-parallel run would no longer equal the single-process one."""
    xtr, ytr, _, _ = digits(images=True)
    net = nn.SequentialCell(
        nn.Conv2d(1, 16, 3, has_bias=True),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, has_bias=True),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Dense(32 * 2 * 2, 10),
    )
    opt = lambda params: nn.Momentum(params, args.lr or 0.05, momentum=0.9)  # noqa: E731
    return net, opt, xtr, ytr


def lm_task(args):
    """The bundled tiny_gpt as a character model on Python's own docs: non-overlapping windows are samples."""
    import onnx_models
    from pydoc_data.topics import topics

    text = np.frombuffer("".join(topics[k] for k in sorted(topics)).encode(), np.uint8).astype(np.int64)
    n = (len(text) - 1) // args.seq
    starts = np.arange(n) * args.seq
    x = np.stack([text[s : s + args.seq] for s in starts])
    y = np.stack([text[s + 1 : s + args.seq + 1] for s in starts])
    net = framework.load_onnx(onnx_models.build("tiny_gpt"))
    opt = lambda params: nn.Adam(params, args.lr or 3e-3)  # noqa: E731
    return net, opt, x, y


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--model", default="cnn", choices=["cnn", "lm"])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--global-batch", type=int, default=64, help="samples per step over all ranks")
    p.add_argument("--seq", type=int, default=32, help="lm: characters per sample")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--mode", default="graph", choices=["graph", "pynative"])
    p.add_argument("--jit-level", default="O1", choices=["O0", "O1"])
    p.add_argument("--threads", type=int, default=1, help="compute threads per rank")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", help="rank 0 writes the final parameters here (.npz)")
    p.add_argument("--resume", help="start from this checkpoint (any number of ranks)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("MSGX_NUM_THREADS", str(args.threads))  # the DVM VM's threads

    comm.init()
    rank, size = comm.get_rank(), comm.get_group_size()
    nn.manual_seed(args.seed)
    net, make_opt, x_all, y_all = (cnn_task if args.model == "cnn" else lm_task)(args)
    if args.resume:
        load_param_into_net(net, load_checkpoint(args.resume))
    dtype = np.dtype(args.dtype)
    for param in net.trainable_params():  # every rank starts from rank 0's parameters
        if param.dtype.kind == "f":
            param.set_dtype(dtype)
        param.set_data(comm.broadcast(param.asnumpy()))
    if x_all.dtype.kind == "f":
        x_all = x_all.astype(dtype)
    loss_fn = nn.CrossEntropyLoss()
    opt = make_opt(net.trainable_params())
    grad_fn = framework.value_and_grad(lambda x, y: loss_fn(net(x), y), None, opt.parameters)
    apply_fn = lambda *grads: opt(grads)  # noqa: E731
    if args.mode == "graph":
        grad_fn = framework.jit(grad_fn, jit_level=args.jit_level)
        apply_fn = framework.jit(apply_fn, jit_level=args.jit_level)
    reducer = comm.DistributedGradReducer()
    sampler = comm.DistributedSampler(len(x_all), args.global_batch, seed=args.seed)

    net.set_train()
    bar = Progress(args.steps, f"{args.model} x{size}") if rank == 0 and not args.quiet else None
    step, t_start, losses = 0, None, []
    with threadpool_limits(args.threads):
        while step < args.steps:
            sampler.set_epoch(step // len(sampler))
            for idx in sampler:
                loss, grads = grad_fn(Tensor(x_all[idx]), Tensor(y_all[idx]))
                grads = reducer(g.asnumpy() for g in grads)
                apply_fn(*(Tensor(g) for g in grads))
                losses.append(float(loss.asnumpy()))
                step += 1
                if step == 1:
                    t_start = time.perf_counter()  # the first step compiles; time the rest
                if bar:
                    bar.update(loss=losses[-1])
                if step == args.steps:
                    break
    seconds = time.perf_counter() - t_start
    mean_loss = comm.all_reduce(np.array([np.mean(losses[:10]), np.mean(losses[-10:])])) / size
    if rank == 0:
        samples = (args.steps - 1) * args.global_batch
        print(
            f"ranks {size} loss {mean_loss[0]:.4f} -> {mean_loss[1]:.4f} "
            f"samples/s {samples / seconds:.1f}",
            flush=True,
        )
        if args.save:
            save_checkpoint(net, args.save)
    comm.barrier()  # the checkpoint is complete before any rank moves on


if __name__ == "__main__":
    main()
