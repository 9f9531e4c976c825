"""Tensor/Parameter, autograd (grad, value_and_grad) in PyNative and graph mode, and jit compilation."""

import numpy as np
import pytest

import framework
from framework import Parameter, Tensor, ops
from framework.errors import GradError, InputShapeError, ShapeError

RNG = np.random.default_rng(0)


def arr(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_numpy_interop_and_operators():
    a, b = arr(2, 3), arr(2, 3)
    x, y = Tensor(a), Tensor(b)
    assert x.shape == (2, 3) and x.dtype == np.float32 and x.ndim == 2
    np.testing.assert_array_equal(x.asnumpy(), a)
    np.testing.assert_allclose((x + y).asnumpy(), a + b)
    np.testing.assert_allclose((x - 1).asnumpy(), a - 1)
    np.testing.assert_allclose((2 * x).asnumpy(), 2 * a)
    np.testing.assert_allclose((1 / (abs(x) + 1)).asnumpy(), 1 / (np.abs(a) + 1), rtol=1e-6)
    np.testing.assert_allclose((x @ y.T).asnumpy(), a @ b.T, rtol=1e-5)
    np.testing.assert_allclose((-x).asnumpy(), -a)
    np.testing.assert_allclose((x**2).asnumpy(), a**2, rtol=1e-6)
    np.testing.assert_array_equal((x > y).asnumpy(), a > b)
    np.testing.assert_allclose(x[1].asnumpy(), a[1])
    np.testing.assert_allclose(x[:, 1:].asnumpy(), a[:, 1:])
    np.testing.assert_allclose(x.reshape(3, 2).asnumpy(), a.reshape(3, 2))
    np.testing.assert_allclose(x.sum(axis=1).asnumpy(), a.sum(1), rtol=1e-6)
    np.testing.assert_allclose(x.mean().asnumpy(), a.mean(), rtol=1e-6)
    np.testing.assert_array_equal(x.argmax(-1).asnumpy(), a.argmax(-1))
    np.testing.assert_allclose(np.asarray(x), a)
    assert Tensor(1.5).dtype == np.float32  # Python floats default to float32
    assert Tensor(np.zeros(2)).dtype == np.float64  # arrays keep theirs


def test_functional_ops_match_numpy():
    a = arr(3, 4)
    x = Tensor(a)
    np.testing.assert_allclose(ops.relu(x).asnumpy(), np.maximum(a, 0))
    e = np.exp(a - a.max(-1, keepdims=True))
    np.testing.assert_allclose(ops.softmax(x).asnumpy(), e / e.sum(-1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(ops.concat([x, x], 0).asnumpy(), np.concatenate([a, a]))
    np.testing.assert_allclose(ops.expand_dims(x, 0).asnumpy(), a[None])
    np.testing.assert_allclose(ops.gather(x, [2, 0]).asnumpy(), a[[2, 0]])
    np.testing.assert_allclose(ops.where(x > 0, x, 0.0).asnumpy(), np.where(a > 0, a, 0))
    np.testing.assert_allclose(ops.one_hot(Tensor(np.array([1, 3])), 4).asnumpy(), np.eye(4)[[1, 3]])


def test_placeholder_and_parameter():
    p = Tensor(shape=(None, 3), dtype=np.float32)
    assert p.shape[1] == 3 and not isinstance(p.shape[0], int)
    with pytest.raises(GradError, match="no value"):
        p.asnumpy()
    w = Parameter(np.zeros((2, 2)), "w")
    assert w.dtype == np.float32 and w.requires_grad
    with pytest.raises(ShapeError, match="'w'.*\\(3,\\)"):
        w.set_data(np.zeros(3))
    ops.assign(w, Tensor(np.ones((2, 2), np.float32)))
    np.testing.assert_array_equal(w.asnumpy(), np.ones((2, 2)))


# ---------------------------------------------------------------- autograd


def _modes():
    return [pytest.param(False, id="pynative"), pytest.param(True, id="graph")]


def _maybe_jit(fn, graph):
    return framework.jit(fn) if graph else fn


@pytest.mark.parametrize("graph", _modes())
def test_grad_of_inputs_and_weights(graph):
    a, wv, bv = arr(4, 3), arr(3, 2), arr(2)
    w, b = Parameter(wv, "w"), Parameter(bv, "b")

    def loss(x):
        return ops.reduce_sum(ops.tanh(x @ w + b))

    vg = framework.value_and_grad(loss, 0, (w, b))
    step = _maybe_jit(lambda x: vg(x), graph)
    value, (dx, (dw, db)) = step(Tensor(a))
    d = 1 - np.tanh(a @ wv + bv) ** 2
    np.testing.assert_allclose(value.asnumpy(), np.tanh(a @ wv + bv).sum(), rtol=1e-5)
    np.testing.assert_allclose(dx.asnumpy(), d @ wv.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dw.asnumpy(), a.T @ d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db.asnumpy(), d.sum(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("graph", _modes())
def test_grad_has_aux_and_sensitivity(graph):
    a, s = arr(3), arr(3)
    g = framework.grad(lambda x: (ops.reduce_sum(x * x), x + 1), 0, has_aux=True)
    dx, aux = _maybe_jit(lambda x: g(x), graph)(Tensor(a))
    np.testing.assert_allclose(dx.asnumpy(), 2 * a, rtol=1e-6)
    np.testing.assert_allclose(aux[0].asnumpy(), a + 1)
    gs = framework.grad(lambda x: x * x * 3.0, 0, sens_param=True)
    np.testing.assert_allclose(_maybe_jit(gs, graph)(Tensor(a), Tensor(s)).asnumpy(), 6 * a * s, rtol=1e-6)


@pytest.mark.parametrize("graph", _modes())
def test_clear_autograd_errors(graph):
    w, unused = Parameter(arr(3), "w"), Parameter(arr(3), "unused_bias")
    with pytest.raises(GradError, match="non-scalar.*sensitivity"):
        _maybe_jit(framework.grad(lambda x: x * w, 0), graph)(Tensor(arr(3)))
    with pytest.raises(GradError, match="'unused_bias' is not in the graph"):
        _maybe_jit(framework.grad(lambda x: ops.reduce_sum(x * w), None, (w, unused)), graph)(Tensor(arr(3)))
    with pytest.raises(GradError, match="integer|dtype"):
        framework.grad(lambda x: ops.argmax(x), 0)(Tensor(arr(3)))


@pytest.mark.parametrize("graph", _modes())
def test_more_autograd_misuse_is_refused(graph):
    with pytest.raises(GradError, match=r"sensitivity's shape \(2, 2\) is not the output's \(3, 4\)"):
        _maybe_jit(framework.grad(lambda x: x * 2.0, 0, sens_param=True), graph)(Tensor(arr(3, 4)),
                                                                                 Tensor(arr(2, 2)))
    with pytest.raises(GradError, match="grad_position 1 is out of range for 1 argument"):
        _maybe_jit(framework.grad(lambda x: ops.reduce_sum(x), 1), graph)(Tensor(arr(3)))


def test_a_gradient_of_a_gradient_runs_in_graph_mode_and_is_refused_in_pynative():
    """PyNative's inner backward ran outside the outer tape, which saw a constant: zeros, silently."""
    def outer(a):
        return ops.reduce_sum(framework.grad(lambda b: ops.reduce_sum(b * b * b), 0)(a))
    x = arr(4)
    d2 = framework.jit(lambda a: framework.grad(outer, 0)(a))(Tensor(x))
    np.testing.assert_allclose(d2.asnumpy(), 6 * x, rtol=1e-5)
    with pytest.raises(GradError, match="gradient of a gradient.*framework.jit"):
        framework.grad(outer, 0)(Tensor(x))


@pytest.mark.parametrize("graph", _modes())
def test_values_reached_only_through_integers_are_constants(graph):
    """ones_like(x) (through Shape) and one_hot(argmax(x)) depend on x only through integers: no gradient
    flows there, so no rule is looked up for ConstantOfShape or OneHot."""
    x = arr(2, 3)
    g = _maybe_jit(framework.grad(lambda a: ops.reduce_sum(ops.ones_like(a) * a), 0), graph)(Tensor(x))
    np.testing.assert_array_equal(g.asnumpy(), np.ones((2, 3)))
    hot = (x == x.max(axis=1, keepdims=True)).astype(np.float32)
    g = _maybe_jit(framework.grad(lambda a: ops.reduce_sum(ops.one_hot(ops.argmax(a, -1), 3) * a), 0),
                   graph)(Tensor(x))
    np.testing.assert_array_equal(g.asnumpy(), hot)


def test_pynative_shape_mistakes_are_typed_errors():
    """Graph mode's shape inference raises ShapeError; PyNative runs kernels directly, and numpy's own
    complaint becomes a KernelError naming the op and the shapes (a layer's own check stays a ShapeError)."""
    with pytest.raises(framework.errors.KernelError, match=r"Add of inputs shaped \[\(3, 4\), \(3, 5\)\]"):
        Tensor(arr(3, 4)) + Tensor(arr(3, 5))
    with pytest.raises(framework.errors.KernelError, match="MatMul"):
        ops.matmul(Tensor(arr(3, 4)), Tensor(arr(5, 2)))
    with pytest.raises(ShapeError, match=r"'Dense' \(Dense\).*input is a scalar"):
        framework.nn.Dense(4, 2)(Tensor(np.float32(1.0)))


def test_jit_compiles_once_per_signature_and_dynamic_dims_once():
    w = Parameter(arr(5, 2), "w")
    f = framework.jit(lambda x: ops.relu(x @ w))
    for n in (2, 3, 2):
        a = arr(n, 5)
        np.testing.assert_allclose(f(Tensor(a)).asnumpy(), np.maximum(a @ w.asnumpy(), 0), rtol=1e-5)
    assert len(f.compiled) == 2  # batch 2 and batch 3
    g = framework.jit(lambda x: ops.relu(x @ w), input_signature=(Tensor(shape=(None, 5), dtype=np.float32),))
    for n in (1, 4, 7):
        a = arr(n, 5)
        np.testing.assert_allclose(g(Tensor(a)).asnumpy(), np.maximum(a @ w.asnumpy(), 0), rtol=1e-5)
    assert len(g.compiled) == 1
    with pytest.raises(InputShapeError, match="argument 0.*\\(4, 6\\)"):
        g(Tensor(arr(4, 6)))


def test_jit_writes_parameter_updates_back():
    w = Parameter(np.ones(3, np.float32), "w")

    @framework.jit
    def bump(x):
        ops.assign(w, w + x)
        return ops.reduce_sum(w)

    out = bump(Tensor(np.ones(3, np.float32)))
    out2 = bump(Tensor(np.ones(3, np.float32)))
    np.testing.assert_allclose(w.asnumpy(), [3, 3, 3])
    assert float(out.asnumpy()) == 6.0 and float(out2.asnumpy()) == 9.0  # reads after assign see new value


def test_jit_of_a_cell_uses_its_set_inputs():
    from framework import nn

    net = nn.Dense(5, 2)
    net.set_inputs(Tensor(shape=(None, 5), dtype=np.float32))
    f = framework.jit(net)
    for n in (1, 3):
        a = arr(n, 5)
        np.testing.assert_allclose(
            f(Tensor(a)).asnumpy(), a @ net.weight.asnumpy().T + net.bias.asnumpy(), rtol=1e-5, atol=1e-6
        )
    assert len(f.compiled) == 1
    with pytest.raises(InputShapeError, match="Dense: argument 0"):
        f(Tensor(arr(2, 4)))
