"""Euclidean norm of each row."""
import numpy as np


class Model:
    def __init__(self):
        pass

    def forward(self, x):
        return np.sqrt((x * x).sum(axis=-1))


def get_inputs():
    return [np.random.randn(512, 1024).astype(np.float32)]


def get_init_inputs():
    return []
