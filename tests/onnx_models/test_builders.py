"""Checker, onnxruntime execution and determinism tests for the bundled ONNX model builders."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnx_models

# Three shapes per model, covering every dynamic dim (odd sizes catch padding/stride mistakes).
SHAPES = {
    "tiny_gpt": [{"batch": 1, "seq": 5}, {"batch": 2, "seq": 16}, {"batch": 3, "seq": 33}],
    "mobilenet": [
        {"batch": 1, "height": 32, "width": 32},
        {"batch": 2, "height": 48, "width": 40},
        {"batch": 3, "height": 17, "width": 29},
    ],
    "mlp": [{"batch": 1}, {"batch": 4}, {"batch": 7}],
}
OUTPUT_SHAPES = {
    "tiny_gpt": lambda d: (d["batch"], d["seq"], 256),
    "mobilenet": lambda d: (d["batch"], 10),
    "mlp": lambda d: (d["batch"], 10),
}


def _session(model: onnx.ModelProto):
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    # Spinning threads burn CPU between tiny runs and slow down parallel test jobs.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sessions():
    return {name: _session(onnx_models.build(name)) for name in onnx_models.MODELS}


def test_registry():
    assert set(onnx_models.MODELS) == {"tiny_gpt", "mobilenet", "mlp"}
    assert onnx_models.DEFAULT_MODEL in onnx_models.MODELS
    with pytest.raises(ValueError, match="tiny_gpt"):
        onnx_models.build("nope")
    with pytest.raises(ValueError, match="known models"):
        onnx_models.example_inputs("nope")
    with pytest.raises(ValueError, match="unknown"):
        onnx_models.example_inputs("mlp", {"seq": 3})


@pytest.mark.parametrize("name", sorted(onnx_models.MODELS))
def test_checker_and_metadata(name):
    model = onnx_models.MODELS[name](seed=0)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    for init in model.graph.initializer:
        assert init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64)


def test_symbolic_dims():
    def dims(value_info):
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    gpt = onnx_models.build("tiny_gpt")
    assert dims(gpt.graph.input[0]) == ["batch", "seq"]
    assert gpt.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert dims(gpt.graph.output[0]) == ["batch", "seq", 256]
    cnn = onnx_models.build("mobilenet")
    assert dims(cnn.graph.input[0]) == ["batch", 3, "height", "width"]
    assert dims(cnn.graph.output[0]) == ["batch", 10]
    mlp = onnx_models.build("mlp")
    assert dims(mlp.graph.input[0]) == ["batch", 32]
    assert dims(mlp.graph.output[0]) == ["batch", 10]


def test_expected_ops():
    def ops(name):
        return {n.op_type for n in onnx_models.build(name).graph.node}

    assert {"Gather", "Shape", "Range", "Concat", "Unsqueeze", "LayerNormalization", "Softmax", "Erf",
            "Where", "Transpose", "Reshape"} <= ops("tiny_gpt")
    assert {"Conv", "BatchNormalization", "Clip", "MaxPool", "Add", "GlobalAveragePool", "Flatten",
            "Gemm"} <= ops("mobilenet")
    assert {"Gemm", "MatMul", "Add", "Relu", "Tanh", "Softmax"} <= ops("mlp")
    groups = [
        {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}.get("group", 1)
        for n in onnx_models.build("mobilenet").graph.node
        if n.op_type == "Conv"
    ]
    assert max(groups) > 1, "expected depthwise convolutions"


@pytest.mark.parametrize("name", sorted(onnx_models.MODELS))
def test_runs_at_several_shapes(name, sessions):
    for dims in SHAPES[name]:
        feed = onnx_models.example_inputs(name, dims)
        (out,) = sessions[name].run(None, feed)
        assert out.shape == OUTPUT_SHAPES[name](dims)
        assert out.dtype == np.float32
        assert np.isfinite(out).all()
        assert out.std() > 0


def test_example_inputs():
    ids = onnx_models.example_inputs("tiny_gpt", {"batch": 3, "seq": 7})["ids"]
    assert ids.shape == (3, 7) and ids.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < 256
    image = onnx_models.example_inputs("mobilenet")["image"]
    assert image.shape == (2, 3, 32, 32) and image.dtype == np.float32
    a = onnx_models.example_inputs("mlp", seed=1)["x"]
    np.testing.assert_array_equal(a, onnx_models.example_inputs("mlp", seed=1)["x"])
    assert not np.array_equal(a, onnx_models.example_inputs("mlp", seed=2)["x"])


@pytest.mark.parametrize("name", sorted(onnx_models.MODELS))
def test_seed_determinism(name, sessions):
    same = onnx_models.build(name, seed=0)
    assert same.SerializeToString() == onnx_models.build(name, seed=0).SerializeToString()
    feed = onnx_models.example_inputs(name)
    base = sessions[name].run(None, feed)[0]
    np.testing.assert_array_equal(base, _session(same).run(None, feed)[0])
    other = _session(onnx_models.build(name, seed=1)).run(None, feed)[0]
    assert not np.allclose(base, other)


def test_tiny_gpt_is_causal(sessions):
    feed = onnx_models.example_inputs("tiny_gpt", {"batch": 1, "seq": 12})
    changed = {"ids": feed["ids"].copy()}
    changed["ids"][0, 8:] = (changed["ids"][0, 8:] + 1) % 256
    a = sessions["tiny_gpt"].run(None, feed)[0]
    b = sessions["tiny_gpt"].run(None, changed)[0]
    np.testing.assert_allclose(a[:, :8], b[:, :8], rtol=1e-5, atol=1e-5)
    assert not np.allclose(a[:, 8:], b[:, 8:])


def test_mlp_outputs_probabilities(sessions):
    (probs,) = sessions["mlp"].run(None, onnx_models.example_inputs("mlp", {"batch": 5}))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    assert (probs >= 0).all()


def test_export(tmp_path):
    paths = onnx_models.export(tmp_path / "models")
    assert [p.name for p in paths] == [f"{n}.onnx" for n in onnx_models.MODELS]
    for path in paths:
        loaded = onnx.load(path)
        onnx.checker.check_model(loaded, full_check=True)
        assert loaded.SerializeToString() == onnx_models.build(path.stem).SerializeToString()
