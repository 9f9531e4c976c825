"""tanh(x) * a + b with per-column a and b."""
import numpy as np


class Model:
    def __init__(self, a, b):
        self.a, self.b = a, b

    def forward(self, x):
        return np.tanh(x) * self.a + self.b


def get_inputs():
    return [np.random.randn(512, 1024).astype(np.float32)]


def get_init_inputs():
    return [np.random.randn(1024).astype(np.float32), np.random.randn(1024).astype(np.float32)]
