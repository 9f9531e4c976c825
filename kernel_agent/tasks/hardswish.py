"""Hard-swish."""
import numpy as np


class Model:
    def __init__(self):
        pass

    def forward(self, x):
        return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def get_inputs():
    return [np.random.randn(512, 1024).astype(np.float32)]


def get_init_inputs():
    return []
