"""Softmax over the last axis of a 3-D tensor with an odd row length."""
import numpy as np


class Model:
    def __init__(self):
        pass

    def forward(self, x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def get_inputs():
    return [np.random.randn(16, 64, 1023).astype(np.float32)]


def get_init_inputs():
    return []
