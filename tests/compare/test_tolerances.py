import math

import numpy as np
import pytest

from xstable.compare.tolerances import (
    DEFAULT_TOLERANCES,
    Tolerances,
    relative_deviation,
    tensor_deviation,
    tensors_differ,
)


def test_losses_differ_by_relative_and_absolute_tolerance():
    tol = Tolerances(loss_rtol=1e-3, loss_atol=1e-6)
    assert not tol.losses_differ(1.0, 1.0009)
    assert tol.losses_differ(1.0, 1.0011)
    assert not tol.losses_differ(0.0, 5e-7)  # Near zero only the absolute tolerance counts.
    assert tol.losses_differ(1.0, math.nan) and tol.losses_differ(math.inf, 3.0)
    assert not tol.losses_differ(math.nan, math.inf)  # Both failed: no divergence.


def test_relative_deviation_edge_cases():
    assert relative_deviation(0.0, 0.0) == 0.0
    assert relative_deviation(2.0, 1.0) == 0.5
    assert relative_deviation(1.0, math.nan) == math.inf
    assert relative_deviation(math.nan, math.nan) == 0.0


def test_tensor_deviation_handles_nonfinite_and_scale():
    a = np.array([1.0, -3.0e38, 0.0])
    assert tensor_deviation(a, a)[0] == 0.0
    assert tensor_deviation(a, np.array([1.0, -3.0e38, np.nan]))[0] == math.inf
    nan_both = np.array([np.nan, 1.0])
    assert tensor_deviation(nan_both, nan_both)[0] == 0.0
    assert tensor_deviation(np.zeros((2,)), np.zeros((3,)))[0] == math.inf
    differs, deviation = tensors_differ(DEFAULT_TOLERANCES, np.array([100.0, 1.0]),
                                        np.array([100.0, 1.005]))
    assert not differs and deviation == pytest.approx(5e-5)
    assert tensors_differ(DEFAULT_TOLERANCES, np.array([100.0]), np.array([100.1]))[0]


def test_invalid_tolerances_are_rejected():
    with pytest.raises(ValueError, match="`loss_rtol` must be finite and non-negative"):
        Tolerances(loss_rtol=-1.0)
    with pytest.raises(TypeError, match="`tensor_atol` must be a float"):
        Tolerances(tensor_atol="small")
