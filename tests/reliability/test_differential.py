"""Differential fuzzing: random ONNX graphs in every executor and kernel generator against onnxruntime."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, event, given, settings

from framework import ops
from tests.reliability.differential import Stats, check_case, compare, configs, poly_built
from tests.reliability.graphs import RandomChooser, build_case, cases, load_regression, save_regression

CI_GRAPHS = 500
LONG_GRAPHS = 10_000
REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.json"))


@settings(
    max_examples=CI_GRAPHS,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_random_graphs_match_onnxruntime(case):
    event(f"{case.dtype} {'symbolic' if case.symbolic else 'static'}")
    problems = check_case(case, Stats())
    if problems:  # hypothesis reruns the shrunk example last, so this file ends up holding the minimal case
        save_regression(case, Path(__file__).parent / "regressions", name="new_failure")
    assert not problems, case.describe() + "\n" + "\n".join(problems)


@pytest.mark.slow
def test_random_graphs_long():
    stats = Stats()
    for seed in range(LONG_GRAPHS):
        check_case(build_case(RandomChooser(seed)), stats)
    assert stats.graphs == LONG_GRAPHS and not stats.mismatches, stats.mismatches[:5]


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_shrunk_failures_stay_fixed(path):
    problems = check_case(load_regression(path), Stats())
    assert not problems, "\n".join(problems)


def test_every_executor_and_generator_is_covered():
    labels = [label for label, _ in configs()]
    assert labels == [
        "pynative O0",
        "pynative O1",
        "graph O0",
        "graph O1 dvm",
        "graph O1 poly",
        "graph O1 auto",
    ]
    if not poly_built():
        pytest.skip(
            "polyhedral.backend is not built yet: the 'graph O1 poly' runs above exercised the "
            "reference interpreting fused bodies, not polyhedral code"
        )


def test_the_oracle_comparison_catches_wrong_results():
    a = np.array([1.0, 2.0, np.nan], np.float32)
    assert compare(a, a.copy(), "float32") is None
    assert compare(a + np.float32(1e-3), a, "float32") is not None
    assert compare(a.astype(np.float16), a, "float32") is not None  # dtype
    assert compare(a[:2], a, "float32") is not None  # shape
    assert compare(np.array([1, 2]), np.array([1, 3]), "int64") is not None
    assert compare(np.array([np.inf], np.float32), np.array([-np.inf], np.float32), "float32") is not None


def test_a_planted_kernel_bug_is_found():
    """Break Tanh's reference kernel: the fuzzer must report mismatches in the configs that use it."""
    opdef = ops.get("Tanh", "", 18, "t")
    real = opdef.ref
    object.__setattr__(opdef, "ref", lambda ctx, x: real(ctx, x) * x.dtype.type(1.5))  # OpDef is frozen
    try:
        found, tried = [], 0
        for seed in range(2000):
            case = build_case(RandomChooser(seed))
            if case.dtype != "int64" and "unary(Tanh)" in case.recipe:
                tried += 1
                found += check_case(case, Stats())
            if tried >= 10:
                break
    finally:
        object.__setattr__(opdef, "ref", real)
    assert (
        tried == 10
        and any(p.startswith("pynative O0") for p in found)
        and any(p.startswith("graph O0") for p in found)
    )


def test_regression_files_round_trip(tmp_path):
    """A shrunk failure written to a file loads back as the same graph with the same feeds."""
    case = build_case(RandomChooser(3))
    path = save_regression(case, tmp_path)
    again = load_regression(path)
    assert onnx.printer.to_text(again.model.graph) == onnx.printer.to_text(case.model.graph)
    for a, b in zip(again.feeds, case.feeds, strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_onnxruntime_optimizer_bug_is_counted_not_blamed_on_us():
    """Found by the fuzzer (onnxruntime 1.32): Transpose then MatMul by a 1-D weight is wrong after its graph
    optimizations. Ours must equal the exact product; the case is counted as an onnxruntime bug, not ours."""
    from onnx import TensorProto, helper, numpy_helper

    from tests.reliability.differential import ORT_OPTIMIZER_BUG, ort_outputs
    from tests.reliability.graphs import Case

    w = np.array([-1, 0, 1, -1], np.float32)
    x = np.array([[1.75, -0.75], [-1, -1], [1.75, 1.75], [-2, 0]], np.float32)
    g = helper.make_graph(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
            helper.make_node("MatMul", ["t", "w"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    case = Case(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), [{"x": x}], "float32")
    case.model.ir_version = 8
    stats = Stats()
    assert check_case(case, stats) == []
    exact = x.T.astype(np.float64) @ w
    ort_wrong = not np.allclose(ort_outputs(case)[0][0], exact)
    assert stats.skipped == ({ORT_OPTIMIZER_BUG: 1} if ort_wrong else {})
    import framework

    for label, kw in configs():
        np.testing.assert_allclose(framework.InferenceSession(case.model, **kw).run(None, {"x": x})[0], exact)
