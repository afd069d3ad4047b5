import numpy as np
import pytest

from xstable.scenarios.thresholds import (
    DIVERGED_FACTOR,
    constant_prediction_bce,
    constant_prediction_mse,
    diverged_threshold,
)


def test_baselines_are_the_losses_of_the_mean_prediction():
    assert constant_prediction_mse([10.0, 20.0, 30.0]) == pytest.approx(200.0 / 3.0)
    assert constant_prediction_bce([0.0, 1.0]) == pytest.approx(np.log(2.0))
    assert constant_prediction_bce([1.0, 1.0]) == pytest.approx(0.0, abs=1e-9)
    assert diverged_threshold(2.0) == DIVERGED_FACTOR * 2.0


def test_bad_baselines_are_rejected():
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        constant_prediction_bce([2.0])
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive finite"):
            diverged_threshold(bad)
