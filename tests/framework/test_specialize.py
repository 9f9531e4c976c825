"""Per-shape kernel specialisation in the graph executor: where every shape follows the input shapes (static
graphs included), a repeated input-shape signature runs each DVM kernel's bound program directly;
data-dependent shapes rule it out."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import framework


def _model(nodes, inputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _heads_softmax_model():
    """Shape -> Concat -> Reshape splitting heads, then a fusable scale + bias + softmax over them."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "two"], ["bt"]),
             helper.make_node("Concat", ["bt", "heads"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["h"]),
             helper.make_node("Mul", ["h", "scale"], ["m"]),
             helper.make_node("Add", ["m", "bias"], ["a"]),
             helper.make_node("Softmax", ["a"], ["y"], axis=-1)]
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("zero", [0]), ("two", [2]), ("heads", [4, 16]))]
    inits += [numpy_helper.from_array(np.float32(0.5), "scale"),
              numpy_helper.from_array(np.linspace(-1, 1, 16, dtype=np.float32), "bias")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", 64])], inits)


def test_repeated_shapes_run_the_bound_programs_and_alternating_shapes_stay_correct():
    m = _heads_softmax_model()
    fused = framework.InferenceSession(m, jit_level="O1", graph_kernel_flags="--kernel_generator=dvm")
    plain = framework.InferenceSession(m, jit_level="O0")
    ex = fused._executor
    dvm_steps = [i for i, (st, *_) in enumerate(ex._flat) if st.backend == "dvm"]
    assert dvm_steps and set(dvm_steps) <= ex._specialize
    rng = np.random.default_rng(0)
    for b, t in [(1, 3), (2, 5), (1, 3), (2, 5), (3, 1), (1, 3)]:
        x = rng.standard_normal((b, t, 64)).astype(np.float32)
        np.testing.assert_allclose(fused.run(None, {"x": x})[0], plain.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
    # the session keys the executor's shape cache by the feed's signature: (shape, dtype) per input
    kernels = ex._shape_kernels[(((1, 3, 64), np.dtype(np.float32)),)]
    for i in dvm_steps:
        original = ex._flat[i][1]
        bound = kernels[ex._fast_index.index(i)]
        assert bound is not original
        key = next(k for k, run in original.cache.items() if run is bound)
        assert key[0] == (1, 3, 64) and key in original.codes  # the program encoded for (1, 3, 64)


def test_data_dependent_shapes_are_not_specialised():
    """NonZero's length changes with the data at one input shape: its consumers keep their shape lookup."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Reshape", ["x", "s"], ["xr"]),
             helper.make_node("NonZero", ["xr"], ["nz"]),
             helper.make_node("Cast", ["nz"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f", "two"], ["m"]),
             helper.make_node("Add", ["m", "one"], ["a"]),
             helper.make_node("Tanh", ["a"], ["y"])]
    inits = [numpy_helper.from_array(np.float32(2), "two"), numpy_helper.from_array(np.float32(1), "one")]
    s = framework.InferenceSession(_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                                          inits), jit_level="O1", graph_kernel_flags="--kernel_generator=dvm")
    assert s._executor.shape_steps and not s._executor._specialize
    assert "dvm" in {st.backend for st in s._executor.steps}
    for x in ([1, 0, 0, 0], [1, 1, 1, 0], [0, 1, 0, 1], [1, 0, 0, 0]):
        x = np.array(x, np.float32)
        want = np.tanh(np.nonzero(x)[0].astype(np.float32)[None] * 2 + 1)
        np.testing.assert_allclose(s.run(None, {"x": x})[0], want, rtol=1e-6)


def test_static_graphs_specialise_their_kernels_too():
    """No shape computations to skip, but every shape is fixed: the second run calls the bound programs."""
    nodes = [helper.make_node("Mul", ["x", "scale"], ["m"]), helper.make_node("Add", ["m", "bias"], ["a"]),
             helper.make_node("Softmax", ["a"], ["y"], axis=-1)]
    inits = [numpy_helper.from_array(np.float32(0.5), "scale"),
             numpy_helper.from_array(np.linspace(-1, 1, 16, dtype=np.float32), "bias")]
    s = framework.InferenceSession(_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 16])],
                                          inits), jit_level="O1", graph_kernel_flags="--kernel_generator=dvm")
    ex = s._executor
    assert not ex.shape_steps and ex._specialize
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    first, second = s.run(None, {"x": x})[0], s.run(None, {"x": x})[0]
    (kernels,) = ex._shape_kernels.values()
    for k, i in zip(kernels, ex._fast_index):
        if i in ex._specialize:  # the bound runner of the one signature, not the generic kernel
            assert k is not ex._flat[i][1] and k in ex._flat[i][1].cache.values()
    np.testing.assert_array_equal(first, second)
    e = np.exp((a := x * 0.5 + np.linspace(-1, 1, 16, dtype=np.float32)) - a.max(-1, keepdims=True))
    np.testing.assert_allclose(second, e / e.sum(-1, keepdims=True), rtol=1e-5)


def test_cached_shapes_call_reference_kernels_bare_as_the_first_run_does():
    """A shape-cache hit passes the fast line callables of the convention it was generated for: a
    single-output reference kernel's `direct` function (a bare array) or what that function's `specialize`
    returned for these shapes (Reshape, Transpose), never its list-returning kernel (converted each call)."""
    s = framework.InferenceSession(_heads_softmax_model(), jit_level="O0")
    ex = s._executor
    x = np.random.default_rng(0).standard_normal((2, 3, 64)).astype(np.float32)
    first, again = s.run(None, {"x": x})[0], s.run(None, {"x": x})[0]
    np.testing.assert_array_equal(first, again)
    (kernels,) = ex._shape_kernels.values()
    directs = [(k, ex._flat[i]) for k, i in zip(kernels, ex._fast_index) if hasattr(ex._flat[i][1], "direct")]
    single = [(k, entry) for k, entry in directs if len(entry[3]) == 1]
    assert single and all(k is entry[1].direct or (hasattr(entry[1].direct, "specialize") and k is not entry[1])
                          for k, entry in single)
    assert any(k is not entry[1].direct for k, entry in single), "no Reshape/Transpose was specialised"


def test_specialised_reshape_follows_each_input_shape():
    """Reshape's specialisation (a fixed target per input-shape signature) gives numpy's result for every
    signature, each seen again after another: batch 2, 5, 2, 5 and sequence 3, 7."""
    s = framework.InferenceSession(_heads_softmax_model(), jit_level="O0")
    rng = np.random.default_rng(1)
    bias = np.linspace(-1, 1, 16, dtype=np.float32)
    for b, t in [(2, 3), (5, 7), (2, 3), (5, 7), (2, 3)]:
        x = rng.standard_normal((b, t, 64)).astype(np.float32)
        a = x.reshape(b, t, 4, 16) * np.float32(0.5) + bias
        e = np.exp(a - a.max(-1, keepdims=True))
        np.testing.assert_allclose(s.run(None, {"x": x})[0], e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
    assert len(s._executor._shape_kernels) == 2


def _bound(op, **attrs):
    """The reference backend's kernel for one node of `op` (no graph needed)."""
    from framework.backends import NUMPY
    from framework.ir import Node, Value
    return NUMPY.compile(Node(op, [Value("a"), Value("b")], [Value("y")], attrs=attrs))


def test_specialised_matmul_gives_the_general_kernels_results_for_every_layout():
    """Per shape, MatMul's specialisation (np.dot on 2-D, one flattened np.dot for [..., K] @ [K, N], else
    np.matmul) equals the general kernel, also for later calls with non-contiguous arrays of the same shape;
    products past our GEMM's threshold and mixed dtypes keep the general kernel."""
    rng = np.random.default_rng(2)
    k = _bound("MatMul")
    cases = [((3, 5), (5, 4)), ((2, 3, 5), (5, 4)), ((2, 3, 5), (2, 5, 4)), ((5,), (5, 4)), ((3, 5), (5,)),
             ((5,), (5,))]
    for sa, sb in cases:
        a, b = rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32)
        fast = k.direct.specialize(a, b)
        assert fast is not k.direct
        np.testing.assert_array_equal(np.asarray(fast(a, b)), k(a, b)[0], err_msg=f"{sa} @ {sb}")
        if a.ndim >= 2:
            a2 = np.asfortranarray(a) if a.ndim == 2 else \
                np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1)
            np.testing.assert_allclose(fast(a2, b), k(a2, b)[0], rtol=1e-6, err_msg=f"{sa} @ {sb} strided")
    big = np.zeros((600, 600), np.float32)
    assert k.direct.specialize(big, big) is k.direct
    assert k.direct.specialize(np.zeros((3, 5), np.float64), np.zeros((5, 4), np.float32)) is k.direct
    assert k.direct.specialize(np.zeros(()), np.zeros(())) is k.direct
    one = np.ones(3, np.float32)
    assert type(k(one, one)[0]) is np.ndarray   # a 1-D @ 1-D product: a 0-d array, not a numpy scalar


def test_specialised_gather_keeps_its_range_check_and_axis():
    from framework.errors import KernelError
    data = np.arange(24, dtype=np.float32).reshape(4, 6)
    for axis in (0, 1, -1):
        k = _bound("Gather", axis=axis)
        idx = np.array([[0, -1], [2, 3]], np.int64)
        fast = k.direct.specialize(data, idx)
        assert fast is not k.direct
        np.testing.assert_array_equal(fast(data, idx), np.take(data, idx, axis=axis))
        with pytest.raises(KernelError, match="out of range"):
            fast(data, np.array([[0, 7], [1, 1]], np.int64))
    k = _bound("Gather")
    assert k.direct.specialize(data, np.array([1], np.int32)) is k.direct   # other index dtypes: general
