"""Suite `train`: training steps/s (forward + backward + Adam) for an MLP, a small CNN and the bundled
transformer (tiny_gpt via load_onnx): msgx graph O1 against PyTorch eager on the same weights, threads and
batch; and graph O1 against PyNative O0 on the transformer. Also holds the torch twins the tests use."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys

import numpy as np

from . import harness

SUITE = "train"
DEFAULTS = {"rounds": 7, "warmup": 3, "min_round_s": 0.2, "max_case_s": 60.0}
QUICK = {"rounds": 3, "warmup": 2, "min_round_s": 0.05, "max_case_s": 15.0}


# ---------------------------------------------------------------- our models


def mlp(nn):
    return nn.SequentialCell(nn.Dense(64, 128), nn.ReLU(), nn.Dense(128, 64), nn.ReLU(), nn.Dense(64, 10))


def cnn(nn):
    return nn.SequentialCell(
        nn.Conv2d(1, 16, 3, has_bias=True),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, has_bias=True),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dense(128, 10),
    )


def gpt():
    import framework
    import onnx_models

    return framework.load_onnx(onnx_models.build("tiny_gpt"))


def train_step(net, opt_params_lr=1e-3, mode="graph", jit_level="O1", flags=""):
    """A whole step: loss, grads, Adam update; jitted in graph mode."""
    import framework
    from framework import nn

    loss_fn = nn.CrossEntropyLoss()
    opt = nn.Adam(net.trainable_params(), opt_params_lr)
    grad_fn = framework.value_and_grad(lambda x, y: loss_fn(net(x), y), None, opt.parameters)

    def step(x, y):
        loss, grads = grad_fn(x, y)
        opt(grads)
        return loss

    return framework.jit(step, jit_level=jit_level, graph_kernel_flags=flags) if mode == "graph" else step


# ---------------------------------------------------------------- torch twins (same weights)


def torch_seq(net):
    """A torch nn.Sequential copy of an mlp()/cnn() SequentialCell (weights copied)."""
    import torch

    layers = []
    for cell in net:
        kind = type(cell).__name__
        if kind == "Dense":
            m = torch.nn.Linear(cell.in_channels, cell.out_channels)
        elif kind == "Conv2d":
            m = torch.nn.Conv2d(
                cell.in_channels,
                cell.out_channels,
                cell.kernel_size,
                padding="same",
                bias=cell.bias is not None,
            )
        else:
            m = {"ReLU": torch.nn.ReLU, "Flatten": torch.nn.Flatten}.get(kind)
            m = m() if m else torch.nn.MaxPool2d(cell.kernel_size, cell.stride)
        for name in ("weight", "bias"):
            p = getattr(cell, name, None)
            if p is not None:
                getattr(m, name).data = torch.from_numpy(p.asnumpy().copy())
        layers.append(m)
    return torch.nn.Sequential(*layers)


def torch_gpt_params(cell) -> dict:
    """tiny_gpt's parameters (from a load_onnx Cell) as torch leaf tensors, keyed by the ONNX names."""
    import torch

    return {n: torch.tensor(p.asnumpy(), requires_grad=True) for n, p in cell.parameters_and_names()}


def torch_gpt(P: dict, ids, n_layers=2, n_heads=4):
    """tiny_gpt's forward written in torch (onnx_models/tiny_gpt.py's graph): logits [B, T, vocab]."""
    import torch
    import torch.nn.functional as F

    b, t = ids.shape
    d = P["wte"].shape[1]
    hd = d // n_heads
    x = P["wte"][ids] + P["wpe"][:t]
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)

    def ln(v, name):
        return F.layer_norm(v, (d,), P[f"{name}.weight"], P[f"{name}.bias"], 1e-5)

    def lin(v, name):
        return v @ P[f"{name}.weight"] + P[f"{name}.bias"]

    for i in range(n_layers):
        p = f"h.{i}"
        h = ln(x, f"{p}.ln_1")
        q = lin(h, f"{p}.attn.q_proj").view(b, t, n_heads, hd).transpose(1, 2)
        k = lin(h, f"{p}.attn.k_proj").view(b, t, n_heads, hd).permute(0, 2, 3, 1)
        v = lin(h, f"{p}.attn.v_proj").view(b, t, n_heads, hd).transpose(1, 2)
        s = (q @ k) * (1.0 / math.sqrt(hd))
        s = s.masked_fill(mask, -1e9)
        a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + lin(a, f"{p}.attn.o_proj")
        h = lin(ln(x, f"{p}.ln_2"), f"{p}.mlp.fc")
        h = h * 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))
        x = x + lin(h, f"{p}.mlp.proj")
    return ln(x, "ln_f") @ P["lm_head.weight"]


def torch_step(forward, params, lr=1e-3):
    import torch
    import torch.nn.functional as F

    opt = torch.optim.Adam(params, lr)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        logits = forward(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    return step


# ---------------------------------------------------------------- cases


def _batch(kind, batch, seq, rng):
    if kind == "mlp":
        return rng.standard_normal((batch, 64)).astype(np.float32), rng.integers(0, 10, batch)
    if kind == "cnn":
        return rng.standard_normal((batch, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, batch)
    return rng.integers(0, 256, (batch, seq)), rng.integers(0, 256, (batch, seq))


def build_case(kind: str, batch: int, seq: int, threads: int, seed: int, peer: str,
               flags: str = "") -> harness.Case:
    import torch

    from framework import Tensor, nn

    torch.set_num_threads(threads)
    nn.manual_seed(seed)
    x, y = _batch(kind, batch, seq, np.random.default_rng(seed))
    xt, yt = Tensor(x), Tensor(y.astype(np.int64))
    runners = {}
    net = gpt() if kind == "transformer" else (mlp(nn) if kind == "mlp" else cnn(nn))
    ours = train_step(net, mode="graph", jit_level="O1", flags=flags)
    runners["msgx graph O1"] = lambda: ours(xt, yt)
    if peer == "torch":
        net0 = gpt() if kind == "transformer" else (mlp(nn) if kind == "mlp" else cnn(nn))
        plain = train_step(net0, mode="graph", jit_level="O0")
        runners["msgx graph O0"] = lambda: plain(xt, yt)
        if kind == "transformer":
            P = torch_gpt_params(net)
            tstep = torch_step(lambda ids: torch_gpt(P, ids), list(P.values()))
        else:
            tnet = torch_seq(net)
            tstep = torch_step(tnet, list(tnet.parameters()))
        tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
        runners["torch eager"] = lambda: tstep(tx, ty)
    else:
        net2 = gpt() if kind == "transformer" else (mlp(nn) if kind == "mlp" else cnn(nn))
        slow = train_step(net2, mode="pynative", jit_level="O0")
        runners["msgx pynative O0"] = lambda: slow(xt, yt)
    ours(xt, yt)  # compile outside the timed rounds (reported in meta)
    from dvm_runtime import cvm

    meta = {
        "dvm_c_vm": cvm.available() or cvm.why_unavailable(),
        "graph_kernel_flags": flags,
        "batch": batch,
        "seq": seq if kind == "transformer" else None,
        "optimizer": "Adam",
        "compile_s": round(ours.compiled[0].compile_seconds, 3),
        "fused_kernels": sum(n.op == "Fused" for n in ours.compiled[0].graph.nodes),
    }
    return harness.Case(
        f"{kind} b{batch}"
        + (f" s{seq}" if kind == "transformer" else "")
        + ("" if peer == "torch" else " vs pynative"),
        runners,
        meta,
    )


# ratio columns compare ours (graph O1) with every runner; "speedup" uses the peer named here
BASELINES = {"torch": "torch eager", "pynative": "msgx pynative O0"}


def _steps_per_s(row, name):
    r = row["runners"].get(name)
    return "-" if not r else f"{1.0 / r['median_s']:.1f}"


MD_EXTRA = {
    "ours steps/s": lambda r: _steps_per_s(r, r.get("ours") or ""),
    "peer steps/s": lambda r: _steps_per_s(r, r.get("baseline") or ""),
    "speedup (peer/ours)": lambda r: "-" if not r.get("ratio") else f"{1 / r['ratio']:.2f}x",
}


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msgx bench train", description=__doc__.splitlines()[0])
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads and numpy BLAS threads (same for both)"
    )
    p.add_argument("--batch", type=int, default=64, help="MLP and CNN batch")
    p.add_argument("--lm-batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--cases", default="mlp,cnn,transformer,transformer-pynative")
    p.add_argument("--graph-kernel-flags", default="", help="O1 flags, e.g. --kernel_generator=dvm")
    harness.add_timing_args(p, DEFAULTS)
    harness.add_output_args(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    kw = {**(QUICK if args.quick else DEFAULTS)}
    given = {
        "rounds": args.rounds,
        "warmup": args.warmup,
        "min_round_s": args.min_round_s,
        "max_case_s": args.max_case_s,
    }
    kw.update({k: v for k, v in given.items() if v is not None})
    plan = {
        "mlp": ("mlp", args.batch, "torch"),
        "cnn": ("cnn", args.batch, "torch"),
        "transformer": ("transformer", args.lm_batch, "torch"),
        "transformer-pynative": ("transformer", args.lm_batch, "pynative"),
    }
    items = [
        (name, lambda k=plan[name]: build_case(k[0], k[1], args.seq, args.threads, args.seed, k[2],
                                           args.graph_kernel_flags))
        for name in args.cases.split(",")
        if name in plan
    ]
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(args.out, "w")) if args.out else sys.stdout
        stack.enter_context(harness.thread_limits(args.threads))
        rows = []
        for name, thunk in items:
            peer = plan[name][2]
            rows += harness.run_cases(
                [(name, thunk)],
                stream=stream,
                threads=args.threads,
                suite=SUITE,
                baseline=BASELINES[peer],
                **kw,
            )
    return harness.finish(rows, harness.markdown_table(rows, MD_EXTRA), args)


if __name__ == "__main__":
    sys.exit(main())
