"""framework.nn: Cell traversal and state, layers against numpy formulas, losses, optimizers (one step against
the textbook update, PyNative and graph), learning-rate schedules, and errors that name the layer."""

import math

import numpy as np
import pytest

import framework
from framework import Parameter, Tensor, nn
from framework.errors import GradError, ShapeError

RNG = np.random.default_rng(1)


def arr(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


class Net(nn.Cell):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Dense(4, 8)
        self.bn = nn.BatchNorm2d(3)
        self.blocks = nn.CellList([nn.Dense(8, 8), nn.Dense(8, 2, has_bias=False)])
        self.drop = nn.Dropout(0.5)

    def construct(self, x):
        x = self.fc1(x)
        for b in self.blocks:
            x = b(x)
        return x


def test_parameter_traversal_and_train_state():
    net = Net()
    names = [n for n, _ in net.parameters_and_names()]
    assert names == [
        "fc1.weight",
        "fc1.bias",
        "bn.gamma",
        "bn.beta",
        "bn.moving_mean",
        "bn.moving_variance",
        "blocks.0.weight",
        "blocks.0.bias",
        "blocks.1.weight",
    ]
    assert [p.name for p in net.trainable_params()] == [n for n in names if "moving" not in n]
    assert [p.name for p in net.untrainable_params()] == ["bn.moving_mean", "bn.moving_variance"]
    net.set_train()
    assert net.training and net.drop.training and net.blocks[1].training
    net.set_train(False)
    assert not net.drop.training


def test_mismatched_shape_names_the_layer():
    net = Net()
    with pytest.raises(ShapeError, match=r"'fc1' \(Dense\).*last dim is 5, expected in_channels 4"):
        net(Tensor(arr(2, 5)))
    seq = nn.SequentialCell(nn.Dense(4, 3), nn.ReLU(), nn.Dense(4, 2))
    with pytest.raises(ShapeError, match=r"'2' \(Dense\)"):
        seq(Tensor(arr(2, 4)))
    with pytest.raises(ShapeError, match="Conv2d.*expected input \\[N, 3, H, W\\]"):
        nn.Conv2d(3, 4, 3)(Tensor(arr(1, 2, 5, 5)))
    with pytest.raises(ShapeError, match="CrossEntropyLoss.*do not match"):
        nn.CrossEntropyLoss()(Tensor(arr(4, 3)), Tensor(np.zeros(5, np.int64)))


def _conv_ref(x, w, stride, pad):
    """Direct convolution from the definition (loops over output positions)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[2]
    oh = (xp.shape[2] - k) // stride + 1
    ow = (xp.shape[3] - k) // stride + 1
    y = np.zeros((x.shape[0], w.shape[0], oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            y[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return y


def test_conv2d_takes_mindspore_style_four_side_padding():
    """padding=(top, bottom, left, right), as MindSpore's Conv2d takes it (it was doubled into 8 pads)."""
    img = arr(1, 2, 5, 5)
    c = nn.Conv2d(2, 3, 3, pad_mode="pad", padding=(1, 2, 0, 3), has_bias=False)
    padded = np.pad(img, ((0, 0), (0, 0), (1, 2), (0, 3)))
    np.testing.assert_allclose(c(Tensor(img)).asnumpy(), _conv_ref(padded, c.weight.asnumpy(), 1, 0),
                               rtol=1e-4, atol=1e-5)


def test_layer_norm_honours_begin_norm_axis():
    """MindSpore's begin_norm_axis: the statistics span every dim from it on (it was stored and ignored)."""
    x = arr(2, 10, 20)
    ln = nn.LayerNorm((20,), begin_norm_axis=1)
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(ln(Tensor(x)).asnumpy(), (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    last = nn.LayerNorm((20,))(Tensor(x)).asnumpy()
    mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    np.testing.assert_allclose(last, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)


def test_avg_pool_counts_the_padding_unless_told_not_to():
    """MindSpore's and PyTorch's AvgPool2d default: a padded window averages over all kernel elements."""
    x = np.ones((1, 1, 2, 2), np.float32)
    corner = nn.AvgPool2d(2, 2, 1)(Tensor(x)).asnumpy()[0, 0, 0, 0]   # one input element in a 2x2 window
    assert corner == 0.25
    assert nn.AvgPool2d(2, 2, 1, count_include_pad=False)(Tensor(x)).asnumpy()[0, 0, 0, 0] == 1.0


def test_layers_match_formulas():
    x = arr(2, 5)
    d = nn.Dense(5, 3)
    np.testing.assert_allclose(d(Tensor(x)).asnumpy(), x @ d.weight.asnumpy().T + d.bias.asnumpy(), rtol=1e-5)
    img = arr(2, 3, 6, 6)
    c = nn.Conv2d(3, 4, 3, stride=2, pad_mode="pad", padding=1)
    np.testing.assert_allclose(
        c(Tensor(img)).asnumpy(), _conv_ref(img, c.weight.asnumpy(), 2, 1), rtol=1e-4, atol=1e-5
    )
    same = nn.Conv2d(3, 4, 3)  # pad_mode="same"
    np.testing.assert_allclose(
        same(Tensor(img)).asnumpy(), _conv_ref(img, same.weight.asnumpy(), 1, 1), rtol=1e-4, atol=1e-5
    )
    ln = nn.LayerNorm(5)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(ln(Tensor(x)).asnumpy(), (x - mu) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        nn.MaxPool2d(2)(Tensor(img)).asnumpy(), img.reshape(2, 3, 3, 2, 3, 2).max((3, 5))
    )
    np.testing.assert_allclose(
        nn.AvgPool2d(2)(Tensor(img)).asnumpy(), img.reshape(2, 3, 3, 2, 3, 2).mean((3, 5)), rtol=1e-5
    )
    np.testing.assert_allclose(nn.Flatten()(Tensor(img)).asnumpy(), img.reshape(2, -1))
    emb = nn.Embedding(10, 4)
    ids = np.array([[1, 9], [0, 1]])
    np.testing.assert_allclose(emb(Tensor(ids)).asnumpy(), emb.embedding_table.asnumpy()[ids])
    g = nn.GELU()(Tensor(x)).asnumpy()
    np.testing.assert_allclose(
        g, x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2))), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(nn.SiLU()(Tensor(x)).asnumpy(), x / (1 + np.exp(-x)), rtol=1e-5)


def test_batchnorm_train_and_eval():
    bn = nn.BatchNorm2d(3, momentum=0.9)
    x = arr(4, 3, 2, 2) * 2 + 1
    bn.set_train()
    y = bn(Tensor(x)).asnumpy()
    mu, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
    np.testing.assert_allclose(
        y, (x - mu[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(bn.moving_mean.asnumpy(), 0.1 * mu, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.asnumpy(), 0.9 + 0.1 * var, rtol=1e-5)
    bn.set_train(False)
    ye = bn(Tensor(x)).asnumpy()
    mm, mv = bn.moving_mean.asnumpy(), bn.moving_variance.asnumpy()
    np.testing.assert_allclose(
        ye, (x - mm[:, None, None]) / np.sqrt(mv[:, None, None] + 1e-5), rtol=1e-4, atol=1e-5
    )


def test_dropout():
    d = nn.Dropout(0.25)
    x = np.ones((100, 100), np.float32)
    np.testing.assert_array_equal(d(Tensor(x)).asnumpy(), x)  # eval: identity
    d.set_train()
    y = d(Tensor(x)).asnumpy()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.2 < (y == 0).mean() < 0.3


def test_attention_matches_numpy():
    mha = nn.MultiheadAttention(8, 2, causal=True)
    x = arr(2, 5, 8)

    def lin(d, t):
        return t @ d.weight.asnumpy().T + d.bias.asnumpy()

    q, k, v = (
        lin(p, x).reshape(2, 5, 2, 4).transpose(0, 2, 1, 3) for p in (mha.q_proj, mha.k_proj, mha.v_proj)
    )
    s = q @ k.transpose(0, 1, 3, 2) / 2.0
    s = np.where(np.triu(np.ones((5, 5), bool), 1), -1e9, s)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want = lin(mha.out_proj, (p @ v).transpose(0, 2, 1, 3).reshape(2, 5, 8))
    np.testing.assert_allclose(mha(Tensor(x)).asnumpy(), want, rtol=1e-4, atol=1e-5)


def test_losses():
    logits, labels = arr(4, 3), np.array([0, 2, 1, 2])
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = nn.CrossEntropyLoss()(Tensor(logits), Tensor(labels))
    np.testing.assert_allclose(ce.asnumpy(), -lp[np.arange(4), labels].mean(), rtol=1e-5)
    a, b = arr(3, 2), arr(3, 2)
    np.testing.assert_allclose(nn.MSELoss()(Tensor(a), Tensor(b)).asnumpy(), ((a - b) ** 2).mean(), rtol=1e-5)


# ---------------------------------------------------------------- optimizers


def _one_step(opt_cls, kwargs, graph, steps=2):
    w0, g = arr(3, 2), arr(3, 2)
    w = Parameter(w0.copy(), "w")
    opt = opt_cls([w], **kwargs)
    step = framework.jit(lambda grad: opt((grad,))) if graph else (lambda grad: opt((grad,)))
    for _ in range(steps):
        step(Tensor(g))
    return w0, g, w.asnumpy()


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
def test_optimizers_match_their_update_rules(graph):
    w0, g, w = _one_step(nn.SGD, {"learning_rate": 0.1}, graph)
    np.testing.assert_allclose(w, w0 - 2 * 0.1 * g, rtol=1e-5)
    w0, g, w = _one_step(nn.Momentum, {"learning_rate": 0.1, "momentum": 0.9}, graph)
    np.testing.assert_allclose(w, w0 - 0.1 * g - 0.1 * (0.9 * g + g), rtol=1e-5)  # v1 = g, v2 = 1.9 g
    w0, g, w = _one_step(nn.Adam, {"learning_rate": 0.01}, graph)
    ref = w0.copy()
    m = v = 0
    for t in (1, 2):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        ref = ref - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8 / np.sqrt(1 - 0.999**t))
    np.testing.assert_allclose(w, ref, rtol=1e-4)
    w0, g, w = _one_step(nn.AdamWeightDecay, {"learning_rate": 0.01, "weight_decay": 0.1}, graph, steps=1)
    m, v = 0.1 * g, 0.001 * g * g
    np.testing.assert_allclose(w, w0 - 0.01 * (m / (np.sqrt(v) + 1e-6) + 0.1 * w0), rtol=1e-4)


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
def test_learning_rate_schedules(graph):
    scheds = {
        "list": ([0.5, 0.25, 0.125], lambda t: [0.5, 0.25, 0.125][min(t, 2)]),
        "exp": (nn.ExponentialDecayLR(0.1, 0.5, 2), lambda t: 0.1 * 0.5 ** (t / 2)),
        "cos": (
            nn.CosineDecayLR(0.01, 0.1, 3),
            lambda t: 0.01 + 0.045 * (1 + math.cos(math.pi * min(t, 3) / 3)),
        ),
        "warm": (nn.WarmUpLR(0.1, 2), lambda t: 0.1 * min(t + 1, 2) / 2),
    }
    for name, (lr, formula) in scheds.items():
        w = Parameter(np.zeros(1, np.float32), "w")
        opt = nn.SGD([w], learning_rate=lr)
        step = framework.jit(lambda grad: opt((grad,))) if graph else (lambda grad: opt((grad,)))
        total = 0.0
        for t in range(5):
            step(Tensor(np.ones(1, np.float32)))
            total += formula(t)
            np.testing.assert_allclose(w.asnumpy(), [-total], rtol=1e-5, err_msg=f"{name} step {t}")


def test_optimizer_errors():
    w = Parameter(arr(3), "w")
    with pytest.raises(GradError, match="non-empty list of Parameters"):
        nn.SGD([], 0.1)
    with pytest.raises(ShapeError, match="gradient of shape \\(2,\\) for parameter 'w'"):
        nn.SGD([w], 0.1)((Tensor(arr(2)),))
