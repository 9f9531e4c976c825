"""L2-normalize each row."""
import numpy as np


class Model:
    def __init__(self):
        pass

    def forward(self, x):
        return x / np.maximum(np.sqrt((x * x).sum(axis=-1, keepdims=True)), 1e-12)


def get_inputs():
    return [np.random.randn(512, 1024).astype(np.float32)]


def get_init_inputs():
    return []
