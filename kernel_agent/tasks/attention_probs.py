"""softmax(q @ k^T / sqrt(d)): scores on BLAS, the softmax generated."""
import numpy as np


class Model:
    def __init__(self):
        pass

    def forward(self, q, k):
        s = (q @ k.transpose(0, 2, 1)) * 0.125
        m = s.max(axis=-1, keepdims=True)
        e = np.exp(s - m)
        return e / e.sum(axis=-1, keepdims=True)


def get_inputs():
    return [np.random.randn(8, 256, 64).astype(np.float32), np.random.randn(8, 256, 64).astype(np.float32)]


def get_init_inputs():
    return []
