"""Log-sum-exp over the last axis."""
import numpy as np


class Model:
    def __init__(self):
        pass

    def forward(self, x):
        m = x.max(axis=-1, keepdims=True)
        return (np.log(np.exp(x - m).sum(axis=-1, keepdims=True)) + m)[..., 0]


def get_inputs():
    return [np.random.randn(512, 1024).astype(np.float32)]


def get_init_inputs():
    return []
