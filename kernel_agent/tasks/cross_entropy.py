"""Mean cross-entropy of logits against integer targets."""
import numpy as np
INDEX_INPUTS = {1}

class Model:
    def __init__(self):
        pass

    def forward(self, logits, target):
        m = logits.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)) + m
        picked = np.take_along_axis(logits, target[:, None], axis=-1)
        return (lse - picked).mean()


def get_inputs():
    return [np.random.randn(512, 1024).astype(np.float32), np.random.randint(0, 1024, size=512)]


def get_init_inputs():
    return []
