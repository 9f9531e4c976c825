"""Row-wise cosine similarity of two matrices."""
import numpy as np


class Model:
    def __init__(self):
        pass

    def forward(self, a, b):
        dot = (a * b).sum(axis=-1)
        na = np.sqrt((a * a).sum(axis=-1))
        nb = np.sqrt((b * b).sum(axis=-1))
        return dot / np.maximum(na * nb, 1e-8)


def get_inputs():
    return [np.random.randn(512, 1024).astype(np.float32), np.random.randn(512, 1024).astype(np.float32)]


def get_init_inputs():
    return []
