"""Numerics: float16 and bfloat16 within the documented tolerance; reductions deterministic run to run."""

import pytest

from tests.reliability.numerics import CHAINS, TOL, reduced_precision_errors, reduction_repeats

CI_SHAPES = {
    "ReduceSum": [(64, 4096), (3, 1000, 33)],
    "SumOfSquares": [(64, 4096), (3, 1000, 33)],
    "Softmax": [(3, 1000, 33)],
    "LayerNorm": [(3, 1000, 33)],
}
LONG_SHAPES = [(64, 4096), (1 << 20,), (3, 1000, 33)]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_within_documented_tolerance(dtype):
    errors = reduced_precision_errors(dtype)
    assert len(errors) == len(CHAINS) * 6  # every chain in every executor and generator
    worst = max(errors.items(), key=lambda kv: kv[1])
    assert worst[1] <= TOL[dtype], worst


@pytest.mark.parametrize("op,shape", [(op, s) for op, shapes in CI_SHAPES.items() for s in shapes])
def test_reductions_are_deterministic(op, shape):
    distinct = reduction_repeats(op, shape, repeats=4)
    assert distinct == {label: 1 for label in distinct}, distinct


@pytest.mark.slow
@pytest.mark.parametrize("op", list(CI_SHAPES))
@pytest.mark.parametrize("shape", LONG_SHAPES)
def test_reductions_are_deterministic_long(op, shape):
    distinct = reduction_repeats(op, shape, repeats=10)
    assert distinct == {label: 1 for label in distinct}, distinct
