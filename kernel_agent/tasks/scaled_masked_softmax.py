"""Attention-score softmax: scale, additive causal mask, softmax."""
import numpy as np


class Model:
    def __init__(self, mask):
        self.mask = mask

    def forward(self, scores):
        s = scores * 0.125 + self.mask
        m = s.max(axis=-1, keepdims=True)
        e = np.exp(s - m)
        return e / e.sum(axis=-1, keepdims=True)


def get_inputs():
    return [np.random.randn(4, 8, 128, 128).astype(np.float32)]


def get_init_inputs():
    return [np.triu(np.full((128, 128), -1e4, np.float32), 1)]
