"""A corpus of bad inputs: each must raise its own MsgxError subclass, never crash or hang."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import framework
import onnx_models
from framework.errors import (InputNameError, InputShapeError, InputTypeError, ModelError, MsgxError,
                              UnsupportedOpError)


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


ADD = _model([helper.make_node("Add", ["x", "y"], ["z"])], [_vi("x", ["N", 3]), _vi("y", [1, 3])], [_vi("z", None)])


def test_random_bytes():
    rng = np.random.default_rng(0)
    for i in range(20):
        with pytest.raises(ModelError):
            framework.InferenceSession(rng.bytes(int(rng.integers(1, 4096))))


def test_truncated_model():
    data = onnx_models.build("mlp").SerializeToString()
    for cut in (len(data) // 2, len(data) - 7, 13):
        with pytest.raises(ModelError):
            framework.InferenceSession(data[:cut])


def test_empty_and_wrong_type():
    with pytest.raises(ModelError):
        framework.InferenceSession(b"")
    with pytest.raises(ModelError):
        framework.InferenceSession(12345)
    with pytest.raises(ModelError, match="cannot read model"):
        framework.InferenceSession("/nonexistent/model.onnx")


def test_cycle():
    m = _model([helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
               [_vi("x", [2])], [_vi("b", [2])])
    with pytest.raises(ModelError, match="cycle"):
        framework.InferenceSession(m)


def test_dangling_input():
    m = _model([helper.make_node("Relu", ["missing"], ["y"])], [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(ModelError, match="dangling"):
        framework.InferenceSession(m)


def test_unknown_op_names_op_and_node():
    m = _model([helper.make_node("FrobnicateAll", ["x"], ["y"], name="frob1")], [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(UnsupportedOpError, match="FrobnicateAll.*frob1") as e:
        framework.InferenceSession(m)
    assert e.value.op == "FrobnicateAll" and e.value.opset == 17


def test_unknown_domain():
    n = helper.make_node("Relu", ["x"], ["y"], domain="com.example")
    g = helper.make_graph([n], "g", [_vi("x", [2])], [_vi("y", [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedOpError, match="com.example"):
        framework.InferenceSession(m)


def test_opset_99():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], [_vi("y", [2])], opset=99)
    with pytest.raises(UnsupportedOpError, match="99"):
        framework.InferenceSession(m)


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_bad_feeds(mode):
    s = framework.InferenceSession(ADD, mode=mode)
    ok = {"x": np.ones((2, 3), np.float32), "y": np.ones((1, 3), np.float32)}
    assert s.run(None, ok)[0].shape == (2, 3)
    with pytest.raises(InputNameError, match="'q'"):
        s.run(None, {**ok, "q": ok["x"]})
    with pytest.raises(InputNameError, match="missing"):
        s.run(None, {"x": ok["x"]})
    with pytest.raises(InputTypeError, match=r"expected tensor\(float\), got tensor\(double\)"):
        s.run(None, {**ok, "x": ok["x"].astype(np.float64)})
    with pytest.raises(InputShapeError, match="rank"):
        s.run(None, {**ok, "x": np.ones((2, 3, 1), np.float32)})
    with pytest.raises(InputShapeError, match="dim 1 must be 3"):
        s.run(None, {**ok, "x": np.ones((2, 4), np.float32)})
    with pytest.raises(InputNameError, match="output"):
        s.run(["nope"], ok)
    with pytest.raises(InputNameError):
        s.run(None, [ok["x"]])
    swapped = np.array([[-1, 2, 3], [4, -5, 6]], ">f4")  # float32 in the other byte order: the same values
    np.testing.assert_array_equal(s.run(None, {**ok, "x": swapped})[0], swapped.astype(np.float32) + 1)


def test_symbolic_dim_bound_consistently():
    m = _model([helper.make_node("Add", ["x", "y"], ["z"])], [_vi("x", ["N"]), _vi("y", ["N"])], [_vi("z", None)])
    s = framework.InferenceSession(m)
    with pytest.raises(InputShapeError, match="N"):
        s.run(None, {"x": np.ones(2, np.float32), "y": np.ones(3, np.float32)})
    s.run(None, {"x": np.ones(2, np.float32), "y": np.ones(2, np.float32)})  # a checked signature is kept...
    with pytest.raises(InputShapeError, match="N"):  # ...and a feed of other shapes is checked again
        s.run(None, {"x": np.ones(2, np.float32), "y": np.ones(3, np.float32)})


def _external_model(tmp_path, location):
    w = numpy_helper.from_array(np.ones(4, np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        e = w.external_data.add()
        e.key, e.value = k, v
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [4])], [_vi("y", [4])], [w])
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def test_external_data_escaping_folder(tmp_path):
    (tmp_path / "secret.bin").write_bytes(np.ones(4, np.float32).tobytes())
    inner = tmp_path / "model"
    inner.mkdir()
    for where in ("../secret.bin", "/etc/passwd", "sub/../../secret.bin"):
        with pytest.raises(ModelError, match="escapes"):
            framework.InferenceSession(_external_model(inner, where))


def test_external_data_missing_and_valid(tmp_path):
    with pytest.raises(ModelError, match="cannot read external data"):
        framework.InferenceSession(_external_model(tmp_path, "absent.bin"))
    (tmp_path / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    s = framework.InferenceSession(_external_model(tmp_path, "w.bin"))
    np.testing.assert_array_equal(s.run(None, {"x": np.zeros(4, np.float32)})[0], np.arange(4, dtype=np.float32))
    (tmp_path / "w.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ModelError, match="truncated"):
        framework.InferenceSession(_external_model(tmp_path, "w.bin"))


def test_runtime_failure_is_typed():
    m = _model([helper.make_node("Reshape", ["x", "s"], ["y"])], [_vi("x", ["N"]), _vi("s", [1], TensorProto.INT64)],
               [_vi("y", None)])
    s = framework.InferenceSession(m)
    with pytest.raises(MsgxError):
        s.run(None, {"x": np.ones(6, np.float32), "s": np.array([4], np.int64)})


def test_output_is_never_produced():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], [_vi("nothere", [2])])
    with pytest.raises(ModelError, match="nothere"):
        framework.InferenceSession(m)


def test_mutating_an_output_does_not_change_the_next_run():
    c = numpy_helper.from_array(np.ones(3, np.float32), "c")
    m = _model([helper.make_node("Identity", ["c"], ["y"])], [], [_vi("y", [3])], [c])
    s = framework.InferenceSession(m)
    s.run(None, {})[0][:] = 7
    np.testing.assert_array_equal(s.run(None, {})[0], np.ones(3, np.float32))
