"""Residual add followed by RMSNorm."""
import numpy as np


class Model:
    def __init__(self, weight):
        self.weight = weight

    def forward(self, x, residual):
        h = x + residual
        return h / np.sqrt((h * h).mean(axis=-1, keepdims=True) + 1e-6) * self.weight


def get_inputs():
    return [np.random.randn(512, 1024).astype(np.float32), np.random.randn(512, 1024).astype(np.float32)]


def get_init_inputs():
    return [np.random.rand(1024).astype(np.float32) + 0.5]
