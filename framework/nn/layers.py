"""Layers: Dense, Conv2d, BatchNorm2d, LayerNorm, Dropout, Embedding, activations, pooling, Flatten and
multi-head attention. Weights are initialised from `nn.manual_seed`'s generator (PyTorch's default schemes).
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..errors import ArgumentError, ShapeError
from ..tensor import Parameter, Tensor
from .cell import Cell, rng


def _uniform(shape, bound):
    return rng().uniform(-bound, bound, shape).astype(np.float32)


def _check_last(layer: str, x: Tensor, want: int, what: str) -> None:
    if x.ndim == 0:
        raise ShapeError(f"{layer}: input is a scalar, expected a last dim of {what} {want}")
    got = x.shape[-1]
    if isinstance(got, int) and got != want:
        raise ShapeError(
            f"{layer}: input's last dim is {got}, expected {what} {want} (input shape " f"{tuple(x.shape)})"
        )


class Dense(Cell):
    """y = x @ weight.T + bias, weight [out_channels, in_channels]."""

    def __init__(self, in_channels: int, out_channels: int, has_bias: bool = True, activation=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        bound = 1.0 / math.sqrt(in_channels)
        self.weight = Parameter(_uniform((out_channels, in_channels), bound))
        self.bias = Parameter(_uniform((out_channels,), bound)) if has_bias else None
        if isinstance(activation, str) and activation not in _ACTIVATIONS:
            raise ArgumentError(
                f"Dense: unknown activation {activation!r}; valid names are {sorted(_ACTIVATIONS)}"
            )
        self.activation = _ACTIVATIONS[activation]() if isinstance(activation, str) else activation

    def construct(self, x):
        _check_last("Dense", x, self.in_channels, "in_channels")
        y = ops.dense(x, self.weight, self.bias)
        return self.activation(y) if self.activation is not None else y

    def extend_repr(self):
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


_PAD_MODES = ("same", "valid", "pad")


class Conv2d(Cell):
    """2-D convolution over NCHW; pad_mode "same" (default, as in MindSpore), "valid" or "pad"."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        pad_mode="same",
        padding=0,
        dilation=1,
        group=1,
        has_bias=False,
    ):
        super().__init__()
        # ops.conv2d treats any mode other than "same"/"valid" as explicit padding: a typo must not pass
        if pad_mode not in _PAD_MODES:
            raise ArgumentError(f"Conv2d: unknown pad_mode {pad_mode!r}; valid modes are {list(_PAD_MODES)}")
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.pad_mode, self.padding, self.dilation, self.group = (
            stride,
            pad_mode,
            padding,
            dilation,
            group,
        )
        fan_in = in_channels // group * k[0] * k[1]
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = Parameter(_uniform((out_channels, in_channels // group) + k, math.sqrt(3.0) * bound))
        self.bias = Parameter(_uniform((out_channels,), bound)) if has_bias else None

    def construct(self, x):
        if x.ndim != 4 or (isinstance(x.shape[1], int) and x.shape[1] != self.in_channels):
            raise ShapeError(f"Conv2d: expected input [N, {self.in_channels}, H, W], got {tuple(x.shape)}")
        return ops.conv2d(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.group,
            pad_mode=self.pad_mode,
        )

    def extend_repr(self):
        k, mode = self.kernel_size, self.pad_mode
        return f"{self.in_channels}, {self.out_channels}, kernel_size={k}, pad_mode={mode!r}"


class BatchNorm2d(Cell):
    """Batch statistics in training (running mean/variance updated with `momentum`), running ones in eval."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.gamma = Parameter(np.ones(num_features, np.float32))
        self.beta = Parameter(np.zeros(num_features, np.float32))
        self.moving_mean = Parameter(np.zeros(num_features, np.float32), requires_grad=False)
        self.moving_variance = Parameter(np.ones(num_features, np.float32), requires_grad=False)

    def construct(self, x):
        if x.ndim != 4 or (isinstance(x.shape[1], int) and x.shape[1] != self.num_features):
            raise ShapeError(
                f"BatchNorm2d: expected input [N, {self.num_features}, H, W], got {tuple(x.shape)}"
            )
        return ops.batch_norm(
            x,
            self.gamma,
            self.beta,
            self.moving_mean,
            self.moving_variance,
            self.training,
            self.momentum,
            self.eps,
        )


class LayerNorm(Cell):
    """Normalises over the trailing `normalized_shape` dims (gamma and beta have that shape), or from
    `begin_norm_axis` on where one is given (MindSpore's: LayerNorm((20,), begin_norm_axis=1) on [N, 10, 20]
    normalises over the last two dims and scales along the last)."""

    def __init__(self, normalized_shape, begin_norm_axis: int = -1, epsilon: float = 1e-5):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.axis, self.epsilon = shape, begin_norm_axis, epsilon
        self.gamma = Parameter(np.ones(shape, np.float32))
        self.beta = Parameter(np.zeros(shape, np.float32))

    def construct(self, x):
        tail = tuple(x.shape[-len(self.normalized_shape) :])
        if any(isinstance(a, int) and a != b for a, b in zip(tail, self.normalized_shape)):
            raise ShapeError(
                f"LayerNorm: input shape {tuple(x.shape)} does not end with {self.normalized_shape}"
            )
        axis = self.axis if self.axis != -1 else -len(self.normalized_shape)
        return ops.layer_norm(x, self.gamma, self.beta, axis, self.epsilon)


class Dropout(Cell):
    """Zeroes elements with probability p in training (scaling the rest by 1/(1-p)); identity in eval."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        # checked here, not at the first training call: p = 1 divides by 1 - p = 0 there, and p outside
        # [0, 1) silently flips or scales the output (MindSpore's Dropout takes p in [0, 1) too)
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0 <= p < 1:
            raise ArgumentError(f"Dropout: p (the drop probability) must be a number in [0, 1), got {p!r}")
        self.p = p

    def construct(self, x):
        return ops.dropout(x, self.p, self.training)


class Embedding(Cell):
    def __init__(self, vocab_size: int, embedding_size: int):
        super().__init__()
        self.vocab_size, self.embedding_size = vocab_size, embedding_size
        self.embedding_table = Parameter(rng().normal(0, 1, (vocab_size, embedding_size)).astype(np.float32))

    def construct(self, ids):
        if ids.dtype.kind not in "iu":
            raise ShapeError(f"Embedding: ids must be integers, got {ids.dtype}")
        return ops.gather(self.embedding_table, ids)


def _activation(name, fn):
    cls = type(name, (Cell,), {"construct": lambda self, x: fn(x), "__doc__": f"{name} activation."})
    return cls


ReLU = _activation("ReLU", ops.relu)
GELU = _activation("GELU", ops.gelu)
SiLU = _activation("SiLU", ops.silu)
Sigmoid = _activation("Sigmoid", ops.sigmoid)
Tanh = _activation("Tanh", ops.tanh)
_ACTIVATIONS = {"relu": ReLU, "gelu": GELU, "silu": SiLU, "sigmoid": Sigmoid, "tanh": Tanh}


class Softmax(Cell):
    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def construct(self, x):
        return ops.softmax(x, self.axis)


class _Pool(Cell):
    fn = None

    def __init__(self, kernel_size=1, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding

    def construct(self, x):
        if x.ndim != 4:
            raise ShapeError(f"{type(self).__name__}: expected an NCHW input, got shape {tuple(x.shape)}")
        return type(self).fn(x, self.kernel_size, self.stride, self.padding)


class MaxPool2d(_Pool):
    fn = staticmethod(ops.max_pool2d)


class AvgPool2d(_Pool):
    """Average pooling; the zero padding counts in each window's average unless count_include_pad=False."""

    def __init__(self, kernel_size=1, stride=None, padding=0, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = count_include_pad

    def construct(self, x):
        if x.ndim != 4:
            raise ShapeError(f"AvgPool2d: expected an NCHW input, got shape {tuple(x.shape)}")
        return ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)


class Flatten(Cell):
    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def construct(self, x):
        return ops.flatten(x, self.start_dim)


class MultiheadAttention(Cell):
    """Scaled dot-product attention over [batch, seq, embed_dim] with num_heads heads; an optional boolean
    attn_mask ([seq_q, seq_k], True = masked) or causal=True."""

    def __init__(self, embed_dim: int, num_heads: int, has_bias: bool = True, causal: bool = False):
        super().__init__()
        if embed_dim % num_heads:
            raise ShapeError(
                f"MultiheadAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}"
            )
        self.embed_dim, self.num_heads, self.causal = embed_dim, num_heads, causal
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            Dense(embed_dim, embed_dim, has_bias) for _ in range(4)
        )

    def construct(self, query, key=None, value=None, attn_mask=None):
        key = query if key is None else key
        value = key if value is None else value
        h, d = self.num_heads, self.embed_dim // self.num_heads

        def heads(t, perm):
            return ops.transpose(ops.reshape(t, (0, 0, h, d)), perm)

        q = heads(self.q_proj(query), (0, 2, 1, 3))
        k = heads(self.k_proj(key), (0, 2, 3, 1))
        v = heads(self.v_proj(value), (0, 2, 1, 3))
        scores = ops.matmul(q, k) * (1.0 / math.sqrt(d))
        if self.causal and attn_mask is None:
            sq, sk = query.shape[1], key.shape[1]
            if not (isinstance(sq, int) and isinstance(sk, int)):
                raise ShapeError(
                    "MultiheadAttention: causal=True needs static sequence lengths; pass attn_mask"
                )
            attn_mask = Tensor(np.triu(np.ones((sq, sk), bool), 1))
        if attn_mask is not None:
            scores = ops.where(attn_mask, Tensor(np.array(-1e9, scores.dtype)), scores)
        ctx = ops.matmul(ops.softmax(scores, -1), v)
        ctx = ops.reshape(ops.transpose(ctx, (0, 2, 1, 3)), (0, 0, self.embed_dim))
        return self.out_proj(ctx)
