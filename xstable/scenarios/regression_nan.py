"""Seed document 000, "Why is the loss NaN when training a TensorFlow Keras regression model?".

Three examples: an input outlier of 1e10 (fix: drop rows beyond 3 standard deviations),
features on different scales (fix: StandardScaler) and Adam with learning rate 10 (fix: 0.01).
"""

import numpy as np

from xstable.scenarios import _porting as p
from xstable.scenarios import xstable_fixes as fixes
from xstable.scenarios._stress import sgd_stress
from xstable.scenarios.declaration import Case, DenseStack, FixCase, SeedExample, Setting
from xstable.scenarios.preprocessing import drop_outliers_3sigma, standard_scale
from xstable.scenarios.scenario import expect

__all__ = ["DOCUMENT", "TITLE", "EXAMPLES"]

DOCUMENT = "000_d253c13cab404a73.txt"
TITLE = "Why is the loss NaN when training a TensorFlow Keras regression model?"
# What diagnose() says for each stress variant (SGD 10.0); the learning rates are the ones it
# suggests once the inputs are scaled (a tenth of 1 / lambda_max of the scaled inputs).
_OUTLIER_FIX = fixes.XstableFix(
    answers=("input-outlier", "sgd-step-too-large", "output-far-from-targets"),
    auto_scale={"method": "robust", "clip": 5.0},
    start_at_trivial=True,
    learning_rate=0.1,
    guard=fixes.GUARD,
)
_SCALES_FIX = fixes.XstableFix(
    answers=("feature-scale-spread", "sgd-step-too-large", "output-far-from-targets"),
    auto_scale={},
    start_at_trivial=True,
    learning_rate=0.1,
    guard=fixes.GUARD,
)
_RATE_FIX = fixes.XstableFix(
    answers=("sgd-step-too-large", "output-far-from-targets"),
    start_at_trivial=True,
    learning_rate=0.2,
    guard=fixes.GUARD,
)
_COMMON = (p.KERAS3, p.INPUT, p.SEEDED_DATA, p.FLOAT32, p.pinned_fit(10))


def _relu_regressor(input_dim):
    return DenseStack(input_dim, ((10, "relu"), (1, None)))


# Example 1: a single outlier of 1e10 in the inputs.
def _outlier_data():
    rng = p.rng()
    x = rng.random((100, 1)) * 10
    y = 2 * x + 1 + rng.standard_normal((100, 1))
    x[0, 0] = 1e10
    return p.float32(x, y)


def _outlier_removed_data():
    x, y = _outlier_data()
    return drop_outliers_3sigma(x, y)


_OUTLIER = Setting(
    _relu_regressor(1), _outlier_data, epochs=10, optimizer=("Adam", {"learning_rate": 0.001})
)


# Example 2: one feature in [0, 1), another in [0, 1000).
def _two_scale_data():
    rng = p.rng()
    x = np.concatenate((rng.random((100, 1)), rng.random((100, 1)) * 1000), axis=1)
    y = x[:, 0] + x[:, 1] + rng.standard_normal(100)
    return p.float32(x, y)


def _standardized_data():
    x, y = _two_scale_data()
    return p.float32(standard_scale(x), y)


_TWO_SCALES = Setting(_relu_regressor(2), _two_scale_data, epochs=10)


# Example 3: Adam with learning rate 10.
def _small_data():
    rng = p.rng()
    x = rng.random((100, 1))
    y = 2 * x + 1 + rng.standard_normal((100, 1))
    return p.float32(x, y)


_RATE_10 = Setting(
    _relu_regressor(1), _small_data, epochs=10, optimizer=("Adam", {"learning_rate": 10.0})
)


EXAMPLES = (
    SeedExample(
        id="regression_nan.outlier",
        number=1,
        claim="One input outlier of 1e10 can make an MSE regression's loss NaN; dropping "
        "rows beyond 3 standard deviations fixes it.",
        claimed_outcome="nan",
        changes=_COMMON,
        failure=Case(
            _OUTLIER,
            summary="ReLU MLP, Adam(1e-3), MSE, x[0] = 1e10",
            origin="document",
            expected=expect("exploded"),
        ),
        stress=sgd_stress(_OUTLIER, 10.0, "the failure with SGD(10.0) instead of Adam"),
        document_fix=Case(
            _OUTLIER.replace(data=_outlier_removed_data),
            summary="rows beyond 3 sample std of any column (x or y) dropped first",
            origin="document",
            expected=expect("stalled"),
            changes=(
                "the pandas filter -> `drop_outliers_3sigma` (the same rule in NumPy, "
                "sample std as pandas; checked against pandas in the tests)",
                p.FRESH_MODEL_FOR_FIX,
            ),
        ),
        xstable_fix=FixCase(_OUTLIER_FIX, changes=(p.stress_sgd(10.0),)),
    ),
    SeedExample(
        id="regression_nan.feature_scales",
        number=2,
        claim="Features on scales 1 and 1000 cause gradient issues that can make the loss "
        "NaN; StandardScaler on the inputs avoids them.",
        claimed_outcome="unstable",
        changes=_COMMON,
        failure=Case(
            _TWO_SCALES,
            summary="the example without its StandardScaler: raw features in [0,1) and "
            "[0,1000), Adam, MSE",
            origin="derived",
            expected=expect("stalled"),
            changes=(
                "the document shows only the fixed code; the failure is that code with "
                "the StandardScaler removed (the setting its prose warns about)",
            ),
        ),
        stress=sgd_stress(_TWO_SCALES, 10.0, "the unscaled failure with SGD(10.0) instead of Adam"),
        document_fix=Case(
            _TWO_SCALES.replace(data=_standardized_data),
            summary="StandardScaler on x (y left unscaled, as in the document)",
            origin="document",
            expected=expect("stalled"),
            changes=(p.STANDARD_SCALER,),
        ),
        xstable_fix=FixCase(_SCALES_FIX, changes=(p.stress_sgd(10.0),)),
    ),
    SeedExample(
        id="regression_nan.learning_rate",
        number=3,
        claim="Adam with learning rate 10 is likely to make the loss NaN; 0.01 fixes it.",
        claimed_outcome="nan",
        changes=_COMMON,
        failure=Case(
            _RATE_10,
            summary="ReLU MLP, Adam(learning_rate=10.0), MSE",
            origin="document",
            expected=expect("stalled"),
            changes=(
                "`learning_rate=10` -> `10.0` (Keras 3 rejects an int learning rate with "
                "a ValueError; checked in the tests)",
            ),
        ),
        stress=Case(
            _RATE_10.replace(optimizer=("SGD", {"learning_rate": 10.0})),
            summary="the document's learning rate 10 with SGD instead of Adam",
            origin="ours",
            expected=expect("nan"),
            changes=(
                "`learning_rate=10` -> `10.0` (Keras 3 rejects an int learning rate)",
                "ours, not the document's: `Adam` -> `SGD` at the same learning rate "
                "(Adam's step is bounded by its learning rate, so the document's code "
                "stays finite on Keras 3)",
            ),
        ),
        document_fix=Case(
            _RATE_10.replace(optimizer=("Adam", {"learning_rate": 0.01})),
            summary="Adam(learning_rate=0.01)",
            origin="document",
            expected=expect("ok"),
            changes=(p.FRESH_MODEL_FOR_FIX,),
        ),
        xstable_fix=FixCase(_RATE_FIX, changes=("ours: SGD(10.0) as in the stress variant",)),
    ),
)
