"""Helpers shared by the training examples: a text progress bar and the digits data set."""

import sys
import time

import numpy as np


class Progress:
    """`[#######-------------] 35/100 loss 0.4123 12.3 steps/s` on one line (stderr)."""

    def __init__(self, total: int, label: str = ""):
        self.total, self.label, self.done, self.t0 = total, label, 0, time.perf_counter()

    def update(self, **fields):
        self.done += 1
        width = 24
        filled = width * self.done // max(self.total, 1)
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        extra = " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'-' * (width - filled)}] {self.done}/{self.total} "
            f"{extra} {rate:.1f} steps/s"
        )
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def digits(images: bool, seed: int = 0):
    """scikit-learn's bundled 8x8 digits (no download): train/test split of 1400/397, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:, None] if images else d.data).astype(np.float32) / 16.0
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm], d.target[perm].astype(np.int64)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def add_mode_args(p):
    p.add_argument(
        "--mode",
        default="graph",
        choices=["graph", "pynative"],
        help="graph: the whole step compiled by framework.jit (O1 fusion); pynative: op by op",
    )
    p.add_argument("--jit-level", default="O1", choices=["O0", "O1"])
    p.add_argument("--threads", type=int, default=1, help="numpy BLAS threads (threadpoolctl)")
