"""Log-softmax over the last axis."""
import numpy as np


class Model:
    def __init__(self):
        pass

    def forward(self, x):
        m = x.max(axis=-1, keepdims=True)
        s = x - m
        return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def get_inputs():
    return [np.random.randn(512, 1024).astype(np.float32)]


def get_init_inputs():
    return []
