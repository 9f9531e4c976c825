"""SwiGLU gate: silu(gate) * up."""
import numpy as np


class Model:
    def __init__(self):
        pass

    def forward(self, gate, up):
        return gate / (1.0 + np.exp(-gate)) * up


def get_inputs():
    return [np.random.randn(512, 1024).astype(np.float32), np.random.randn(512, 1024).astype(np.float32)]


def get_init_inputs():
    return []
