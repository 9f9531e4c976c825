"""Hostile models: every mutation must end in a MsgxError (or, for a bit flip or cut that left the model
valid, in a normal run), never a crash, a hang, another exception or a runaway allocation."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import framework
from framework.errors import ModelError
from tests.reliability import hostile
from tests.reliability.hostile import acceptable, run_hostile
from tests.reliability.mutate import CATEGORIES, STRICT

CI_MODELS = 24 * len(CATEGORIES)  # a few hundred
LONG_MODELS = 1000


def _check(stats, count):
    assert stats.tried == count
    assert set(stats.outcomes) == set(CATEGORIES), stats.outcomes  # every category was generated
    assert not stats.failures, stats.failures[:10]
    for category in STRICT:  # mutations made invalid on purpose are all refused
        assert all(k.startswith("MsgxError") for k in stats.outcomes[category]), stats.outcomes[category]


def test_hostile_models_ci():
    _check(run_hostile(CI_MODELS, seed=1), CI_MODELS)


@pytest.mark.slow
def test_hostile_models_long():
    _check(run_hostile(LONG_MODELS, seed=2), LONG_MODELS)


def test_the_harness_records_crashes_and_hangs(monkeypatch):
    """A worker that dies or hangs inside a model is reported against that model, and the run goes on."""
    monkeypatch.setenv("MSGX_HOSTILE_PLANT", "crash:1,hang:3")
    monkeypatch.setattr(hostile, "TIME_LIMIT", 1.0)
    stats = run_hostile(5, seed=0)
    assert stats.tried == 5 and stats.restarts == 1
    assert [(i, o) for i, _, o in stats.failures] == [(1, "crash (exit -6)"), (3, "hang")]


def test_outcome_rules():
    assert acceptable("cycle", "MsgxError:ModelError") and not acceptable("cycle", "ran")
    assert acceptable("bitflip", "ran") and not acceptable("bitflip", "other:ValueError: x")
    assert not acceptable("truncate", "hang") and not acceptable("huge_dims", "crash (exit -11)")


def _model(nodes, inits=(), x_shape=(2, 3)):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        list(inits),
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


# Found by the generator: each was accepted (numpy coerced the value) before the frontend checked it.
def test_negative_initializer_dim_is_refused():
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, raw_data=np.ones(3, np.float32).tobytes())
    t.dims.extend([-5, 3])  # numpy's reshape read -5 as -1 and gave shape (1, 3)
    with pytest.raises(ModelError, match="'w' has a negative dimension"):
        framework.InferenceSession(_model([helper.make_node("Add", ["x", "w"], ["y"])], [t]))


def test_string_tensor_where_int64_belongs_is_refused():
    s = helper.make_tensor("s", TensorProto.STRING, [1], [b"1"])
    for node in (
        helper.make_node("Slice", ["x", "s", "s"], ["y"]),
        helper.make_node("Reshape", ["x", "s"], ["y"]),
    ):
        with pytest.raises(ModelError, match=r"input 1 \((starts|shape)\) is tensor\(string\)"):
            framework.InferenceSession(_model([node], [s]))


def test_string_attribute_where_int_belongs_is_refused():
    n = helper.make_node("Cast", ["x"], ["y"])
    n.attribute.append(helper.make_attribute("to", "float"))
    with pytest.raises(ModelError, match="attribute 'to' must be INT, got STRING"):
        framework.InferenceSession(_model([n]))


def test_wrong_input_count_is_refused_at_load():
    """These once got as far as a KernelError at run time."""
    for node, want in ((helper.make_node("Relu", ["x", "x", "x"], ["y"]), "3 inputs, the op takes 1 to 1"),
                       (helper.make_node("Add", ["x"], ["y"]), "1 inputs, the op takes 2 to 2")):
        with pytest.raises(ModelError, match=want):
            framework.InferenceSession(_model([node]))
