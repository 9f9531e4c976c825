"""Regressions for framework/nn: optimizer checkpoints carry the moments (a resumed run matches continuous
training exactly), and bad layer/loss arguments raise typed errors at construction instead of a KeyError,
a ZeroDivisionError or a silently wrong result."""

import numpy as np
import pytest

import framework
from framework import Tensor, nn
from framework.checkpoint import load_checkpoint, load_param_into_net, save_checkpoint
from framework.errors import MsgxError
from framework.tensor import Parameter
from tests.framework.test_train import _trainer

# ---------------------------------------------------------------- optimizer checkpoints

_X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
_Y = np.random.default_rng(1).integers(0, 3, 8).astype(np.int64)

_OPTIMIZERS = {
    "adam": lambda ps: nn.Adam(ps, 0.01),
    "adamw": lambda ps: nn.AdamWeightDecay(ps, 0.01, weight_decay=0.1),
    "momentum": lambda ps: nn.Momentum(ps, 0.05, 0.9),
    "sgd_nesterov": lambda ps: nn.SGD(ps, 0.05, momentum=0.9, nesterov=True),
    "adam_schedule": lambda ps: nn.Adam(ps, nn.ExponentialDecayLR(0.01, 0.5, 2)),
}


def _setup(make_opt, graph):
    nn.manual_seed(0)
    net = nn.SequentialCell(nn.Dense(4, 5), nn.ReLU(), nn.Dense(5, 3))
    opt = make_opt(net.trainable_params())
    step = _trainer(net, opt, graph)
    return net, opt, lambda: step(Tensor(_X), Tensor(_Y))


def _weights(net):
    return {n: p.asnumpy().copy() for n, p in net.parameters_and_names()}


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
@pytest.mark.parametrize("name", list(_OPTIMIZERS))
def test_resumed_training_matches_continuous_training_exactly(name, graph, tmp_path):
    net, _, step = _setup(_OPTIMIZERS[name], graph)
    for _ in range(6):
        step()
    continuous = _weights(net)

    net, opt, step = _setup(_OPTIMIZERS[name], graph)
    for _ in range(3):
        step()
    save_checkpoint(net, tmp_path / "net.ckpt")
    save_checkpoint(opt, tmp_path / "opt.ckpt")

    net2, opt2, step2 = _setup(_OPTIMIZERS[name], graph)
    load_param_into_net(net2, load_checkpoint(tmp_path / "net.ckpt"))  # strict: every name must fit
    load_param_into_net(opt2, load_checkpoint(tmp_path / "opt.ckpt"))
    for _ in range(3):
        step2()
    resumed = _weights(net2)
    assert resumed.keys() == continuous.keys()
    for n in continuous:
        np.testing.assert_array_equal(resumed[n], continuous[n], err_msg=n)


def _state_names(opt):
    return [n for n, _ in opt.parameters_and_names()]


def test_optimizer_checkpoint_names_its_state_as_mindspore():
    nn.manual_seed(0)
    net = nn.SequentialCell(nn.Dense(4, 3))
    adam = set(_state_names(nn.Adam(net.trainable_params(), 0.01)))
    assert {"moment1.0.weight", "moment1.0.bias", "moment2.0.weight", "moment2.0.bias"} <= adam
    assert {"beta1_power", "beta2_power", "global_step", "learning_rate"} <= adam
    mom = set(_state_names(nn.Momentum(net.trainable_params(), 0.1, 0.9)))
    assert mom == {"moments.0.weight", "moments.0.bias", "global_step", "learning_rate"}
    # the state is not trainable: the optimizer's own trainable_params stay empty
    assert nn.Adam(net.trainable_params(), 0.01).trainable_params() == []


def test_same_named_parameters_keep_one_state_each(tmp_path):
    a, b = Parameter(np.ones(2, np.float32), "w"), Parameter(np.ones(3, np.float32), "w")
    opt = nn.Adam([a, b], 0.1)
    opt((Tensor(np.ones(2, np.float32)), Tensor(np.full(3, 2.0, np.float32))))
    save_checkpoint(opt, tmp_path / "opt.ckpt")
    ckpt = load_checkpoint(tmp_path / "opt.ckpt")
    assert ckpt["moment1.w"].shape == (2,) and ckpt["moment1.w.1"].shape == (3,)
    opt2 = nn.Adam([Parameter(np.ones(2, np.float32), "w"), Parameter(np.ones(3, np.float32), "w")], 0.1)
    load_param_into_net(opt2, ckpt)
    np.testing.assert_array_equal(opt2.moment1[1].asnumpy(), opt.moment1[1].asnumpy())


# ---------------------------------------------------------------- typed argument errors


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1, "0.5", None])
def test_dropout_rejects_probabilities_outside_0_1(p):
    with pytest.raises(MsgxError, match=r"Dropout.*\[0, 1\)") as e:
        nn.Dropout(p)
    assert isinstance(e.value, ValueError)


def test_dropout_valid_probabilities_still_work():
    x = Tensor(np.ones((4, 8), np.float32))
    assert np.array_equal(nn.Dropout(0.0).set_train()(x).asnumpy(), x.asnumpy())
    y = nn.Dropout(0.5).set_train()(x).asnumpy()
    assert set(np.unique(y)) <= {0.0, 2.0}


def test_dense_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError, match="Dense.*'foo'.*relu") as e:
        nn.Dense(3, 2, activation="foo")
    assert isinstance(e.value, MsgxError)
    assert isinstance(nn.Dense(3, 2, activation="relu").activation, nn.ReLU)


def test_conv2d_unknown_pad_mode_lists_valid_modes():
    with pytest.raises(ValueError, match="Conv2d.*'foo'.*'same', 'valid', 'pad'") as e:
        nn.Conv2d(1, 1, 3, pad_mode="foo")
    assert isinstance(e.value, MsgxError)
    for mode in ("same", "valid", "pad"):
        nn.Conv2d(1, 1, 3, pad_mode=mode)


@pytest.mark.parametrize("loss", [nn.MSELoss, nn.CrossEntropyLoss])
def test_losses_reject_unknown_reduction(loss):
    with pytest.raises(ValueError, match=f"{loss.__name__}.*'foo'.*'mean', 'sum', 'none'") as e:
        loss(reduction="foo")
    assert isinstance(e.value, MsgxError)


@pytest.mark.parametrize("label", [3, 5, -1])
def test_cross_entropy_rejects_labels_outside_the_classes(label):
    logits = Tensor(np.zeros((2, 3), np.float32))
    want = f"CrossEntropyLoss: label {label} is out of range for 3 classes"
    with pytest.raises(ValueError, match=want) as e:
        nn.CrossEntropyLoss(reduction="none")(logits, Tensor(np.array([0, label])))
    assert isinstance(e.value, MsgxError)
    # also under value_and_grad's eager tape, where the labels' values exist
    w = Parameter(np.zeros((2, 3), np.float32), "w")
    grad_fn = framework.value_and_grad(lambda y: nn.CrossEntropyLoss()(logits + w, y), None, [w])
    with pytest.raises(ValueError, match="out of range"):
        grad_fn(Tensor(np.array([0, label])))


def test_cross_entropy_in_range_labels_unchanged():
    logits = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 2])
    got = nn.CrossEntropyLoss(reduction="none")(Tensor(logits), Tensor(labels)).asnumpy()
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(got, -logp[np.arange(4), labels], rtol=1e-5)
    # a jit-traced label has no values at trace time: the loss still traces and runs
    f = framework.jit(lambda a, b: nn.CrossEntropyLoss()(a, b))
    np.testing.assert_allclose(f(Tensor(logits), Tensor(labels)).asnumpy(), got.mean(), rtol=1e-5)
