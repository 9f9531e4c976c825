"""Tensor API semantics a MindSpore or torch user relies on: dtype promotion of binary ops, true division,
truth values, grad through and nesting of jit functions, jit recompiling on set_train, and one tensor
passed at two differentiated positions."""
import numpy as np
import pytest

import framework
from framework import Tensor, nn
from framework.errors import ContextError, GradError

F32 = np.float32


@pytest.mark.parametrize("a, b, dtype, want", [
    (np.array([1, 2, 3]), np.array([.5, .5, .5], F32), np.float32, [1.5, 2.5, 3.5]),      # int + float
    (np.array([1, 2], np.float16), np.array([1, 2], F32), np.float32, [2, 4]),          # f16 + f32
    (np.array([1, 2], np.int32), np.array([1, 2], np.int64), np.int64, [2, 4]),         # int32 + int64
    (np.array([True, False]), np.array([2, 3], np.int32), np.int32, [3, 3]),            # bool + int
])
def test_binary_ops_promote_tensor_dtypes(a, b, dtype, want):
    for x, y in ((a, b), (b, a)):
        r = Tensor(x) + Tensor(y)
        assert r.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(r.asnumpy(), np.asarray(want, dtype))


def test_python_numbers_do_not_widen_a_tensor_of_their_kind():
    ints, half = Tensor(np.array([1, 2, 3])), Tensor(np.array([1, 2], np.float16))
    assert (ints * 0.5).dtype == np.float32 and list((ints * 0.5).asnumpy()) == [0.5, 1.0, 1.5]
    assert (ints + 1).dtype == np.int64 and (half + 1.0).dtype == np.float16 and (1.0 - half).dtype == np.float16
    assert (2.0 ** Tensor(np.array([1.0, 3.0], F32))).asnumpy().tolist() == [2.0, 8.0]


def test_integer_division_is_true_division_and_gradients_flow_through_promotion():
    q = Tensor(np.array([1, 2, 3])) / Tensor(np.array([2, 2, 2]))
    assert q.dtype == np.float32 and q.asnumpy().tolist() == [0.5, 1.0, 1.5]
    x = Tensor(np.array([1.0, 2.0, 3.0], F32))
    g = framework.grad(lambda t: (t * Tensor(np.array([1, 2, 3]))).sum())(x)
    np.testing.assert_array_equal(g.asnumpy(), [1, 2, 3])
    jitted = framework.jit(lambda a, b: a + b, jit_level="O0")  # the traced graph promotes alike
    r = jitted(Tensor(np.array([1, 2, 3])), x)
    assert r.dtype == np.float32 and r.asnumpy().tolist() == [2.0, 4.0, 6.0]


def test_truth_values_follow_numpy():
    assert not Tensor(np.array(0.0, F32)) and Tensor(np.array([2.0], F32))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(Tensor(np.zeros(2, F32)) > 1.0)
    with pytest.raises(TypeError, match="0-d"):
        len(Tensor(np.array(1.0, F32)))

    def branchy(t):
        return t * 2 if t.sum() > 0 else t
    with pytest.raises(GradError, match="no value"):  # data-dependent Python control flow in a traced graph
        framework.jit(branchy)(Tensor(np.ones(2, F32)))


def test_transpose_without_axes_reverses_them():
    x = Tensor(np.arange(6, dtype=F32).reshape(2, 3))
    np.testing.assert_array_equal(x.transpose().asnumpy(), x.asnumpy().T)


@pytest.mark.parametrize("level", ["O0", "O1"])
def test_grad_through_a_jit_function_and_nested_jit(level):
    x = Tensor(np.arange(6, dtype=F32))
    double = framework.jit(lambda a: a * 2.0, jit_level=level)
    np.testing.assert_array_equal(framework.grad(lambda a: double(a).sum())(x).asnumpy(), np.full(6, 2.0))
    outer = framework.jit(lambda a: double(a) + 1.0, jit_level=level)
    np.testing.assert_array_equal(outer(x).asnumpy(), x.asnumpy() * 2 + 1)
    net = nn.Dense(6, 1)
    net_jit = framework.jit(net, jit_level=level)
    want = framework.grad(lambda a: net(a).sum(), None, net.trainable_params())(x.reshape(1, 6))
    got = framework.grad(lambda a: net_jit(a).sum(), None, net.trainable_params())(x.reshape(1, 6))
    for w, g in zip(want, got):
        np.testing.assert_allclose(g.asnumpy(), w.asnumpy(), rtol=1e-6)


def test_jit_recompiles_after_set_train():
    framework.nn.manual_seed(0)
    net = nn.Dropout(p=0.5)
    f = framework.jit(lambda t: net(t), jit_level="O0")
    x = Tensor(np.ones(64, F32))
    net.set_train(True)
    assert (f(x).asnumpy() == 0).any()
    net.set_train(False)
    np.testing.assert_array_equal(f(x).asnumpy(), x.asnumpy())


def test_one_tensor_at_two_positions_gets_its_partial_derivatives():
    x = Tensor(np.arange(1, 5, dtype=F32))

    def f(a, b):
        return (a * b * 3.0).sum()
    eager = framework.grad(f, grad_position=(0, 1))(x, x)
    graph = framework.jit(lambda t: framework.grad(f, grad_position=(0, 1))(t, t), jit_level="O0")(x)
    for ga, gb in (eager, graph):
        np.testing.assert_array_equal(ga.asnumpy(), 3 * x.asnumpy())
        np.testing.assert_array_equal(gb.asnumpy(), 3 * x.asnumpy())


def test_jit_takes_keywords_and_checks_its_level():
    f = framework.jit(lambda a, b: a - b, jit_level="O0")
    x, y = Tensor(np.ones(3, F32)), Tensor(np.arange(3, dtype=F32))
    np.testing.assert_array_equal(f(x, b=y).asnumpy(), f(x, y).asnumpy())
    with pytest.raises(ContextError, match="jit_level"):
        framework.jit(lambda a: a, jit_level="O2")
