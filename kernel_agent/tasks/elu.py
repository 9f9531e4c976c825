"""ELU with alpha 1."""
import numpy as np


class Model:
    def __init__(self):
        pass

    def forward(self, x):
        return np.where(x > 0, x, np.exp(x) - 1.0)


def get_inputs():
    return [np.random.randn(512, 1024).astype(np.float32)]


def get_init_inputs():
    return []
