"""Seed document 000, "Why is the loss NaN when training a TensorFlow Keras regression model?".

Three examples: an input outlier of 1e10 (fix: drop rows beyond 3 standard deviations),
features on different scales (fix: StandardScaler) and Adam with learning rate 10 (fix: 0.01).
"""

import functools

import keras
import numpy as np

from xstable.scenarios import _porting as p
from xstable.scenarios import xstable_fixes as fixes
from xstable.scenarios.preprocessing import drop_outliers_3sigma, standard_scale
from xstable.scenarios.scenario import Scenario, Variant, expect

__all__ = ["DOCUMENT", "TITLE", "scenarios"]

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
    return p.sequential(input_dim, keras.layers.Dense(10, activation="relu"), keras.layers.Dense(1))


def _compile(optimizer):
    return lambda: {"optimizer": optimizer(), "loss": "mse"}


def _sgd(learning_rate):
    return lambda: keras.optimizers.SGD(learning_rate=learning_rate)


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


def _outlier_spec(name, make_data, optimizer=None, description=""):
    optimizer = optimizer or (lambda: keras.optimizers.Adam(learning_rate=0.001))
    return p.spec(
        f"regression_nan.outlier.{name}",
        functools.partial(_relu_regressor, 1),
        make_data,
        _compile(optimizer),
        epochs=10,
        description=description,
    )


def _outlier_scenario():
    return Scenario(
        id="regression_nan.outlier",
        document=DOCUMENT,
        title=TITLE,
        example=1,
        claim="One input outlier of 1e10 can make an MSE regression's loss NaN; dropping "
        "rows beyond 3 standard deviations fixes it.",
        claimed_outcome="nan",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _outlier_spec("failure", _outlier_data),
                summary="ReLU MLP, Adam(1e-3), MSE, x[0] = 1e10",
                origin="document",
                changes=_COMMON,
                expected=expect("exploded"),
            ),
            "stress": Variant(
                kind="stress",
                make_spec=lambda: _outlier_spec("stress", _outlier_data, _sgd(10.0)),
                summary="the failure with SGD(10.0) instead of Adam",
                origin="ours",
                changes=_COMMON + (p.stress_sgd(10.0),),
                expected=expect("nan"),
            ),
            "document_fix": Variant(
                kind="document_fix",
                make_spec=lambda: _outlier_spec("document_fix", _outlier_removed_data),
                summary="rows beyond 3 sample std of any column (x or y) dropped first",
                origin="document",
                changes=_COMMON
                + (
                    "the pandas filter -> `drop_outliers_3sigma` (the same rule in NumPy, "
                    "sample std as pandas; checked against pandas in the tests)",
                    p.FRESH_MODEL_FOR_FIX,
                ),
                expected=expect("stalled"),
            ),
            "xstable_fix": fixes.fix_variant(
                "regression_nan.outlier",
                lambda: _outlier_spec("stress", _outlier_data, _sgd(10.0)),
                _OUTLIER_FIX,
                _COMMON + (p.stress_sgd(10.0),),
            ),
        },
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


def _scales_spec(name, make_data, optimizer=lambda: "adam"):
    return p.spec(
        f"regression_nan.feature_scales.{name}",
        functools.partial(_relu_regressor, 2),
        make_data,
        _compile(optimizer),
        epochs=10,
    )


def _scales_scenario():
    return Scenario(
        id="regression_nan.feature_scales",
        document=DOCUMENT,
        title=TITLE,
        example=2,
        claim="Features on scales 1 and 1000 cause gradient issues that can make the loss "
        "NaN; StandardScaler on the inputs avoids them.",
        claimed_outcome="unstable",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _scales_spec("failure", _two_scale_data),
                summary="the example without its StandardScaler: raw features in [0,1) and "
                "[0,1000), Adam, MSE",
                origin="derived",
                changes=_COMMON
                + (
                    "the document shows only the fixed code; the failure is that code with "
                    "the StandardScaler removed (the setting its prose warns about)",
                ),
                expected=expect("stalled"),
            ),
            "stress": Variant(
                kind="stress",
                make_spec=lambda: _scales_spec("stress", _two_scale_data, _sgd(10.0)),
                summary="the unscaled failure with SGD(10.0) instead of Adam",
                origin="ours",
                changes=_COMMON + (p.stress_sgd(10.0),),
                expected=expect("nan"),
            ),
            "document_fix": Variant(
                kind="document_fix",
                make_spec=lambda: _scales_spec("document_fix", _standardized_data),
                summary="StandardScaler on x (y left unscaled, as in the document)",
                origin="document",
                changes=_COMMON
                + (
                    "`StandardScaler().fit_transform` -> `standard_scale` (the same formula "
                    "in NumPy; checked against scikit-learn in the tests)",
                ),
                expected=expect("stalled"),
            ),
            "xstable_fix": fixes.fix_variant(
                "regression_nan.feature_scales",
                lambda: _scales_spec("stress", _two_scale_data, _sgd(10.0)),
                _SCALES_FIX,
                _COMMON + (p.stress_sgd(10.0),),
            ),
        },
    )


# Example 3: Adam with learning rate 10.
def _small_data():
    rng = p.rng()
    x = rng.random((100, 1))
    y = 2 * x + 1 + rng.standard_normal((100, 1))
    return p.float32(x, y)


def _rate_spec(name, learning_rate, optimizer="Adam"):
    optimizer_class = getattr(keras.optimizers, optimizer)
    return p.spec(
        f"regression_nan.learning_rate.{name}",
        functools.partial(_relu_regressor, 1),
        _small_data,
        _compile(lambda: optimizer_class(learning_rate=learning_rate)),
        epochs=10,
    )


def _rate_scenario():
    return Scenario(
        id="regression_nan.learning_rate",
        document=DOCUMENT,
        title=TITLE,
        example=3,
        claim="Adam with learning rate 10 is likely to make the loss NaN; 0.01 fixes it.",
        claimed_outcome="nan",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _rate_spec("failure", 10.0),
                summary="ReLU MLP, Adam(learning_rate=10.0), MSE",
                origin="document",
                changes=_COMMON
                + (
                    "`learning_rate=10` -> `10.0` (Keras 3 rejects an int learning rate with "
                    "a ValueError; checked in the tests)",
                ),
                expected=expect("stalled"),
            ),
            "stress": Variant(
                kind="stress",
                make_spec=lambda: _rate_spec("stress", 10.0, optimizer="SGD"),
                summary="the document's learning rate 10 with SGD instead of Adam",
                origin="ours",
                changes=_COMMON
                + (
                    "`learning_rate=10` -> `10.0` (Keras 3 rejects an int learning rate)",
                    "ours, not the document's: `Adam` -> `SGD` at the same learning rate "
                    "(Adam's step is bounded by its learning rate, so the document's code "
                    "stays finite on Keras 3)",
                ),
                expected=expect("nan"),
            ),
            "document_fix": Variant(
                kind="document_fix",
                make_spec=lambda: _rate_spec("document_fix", 0.01),
                summary="Adam(learning_rate=0.01)",
                origin="document",
                changes=_COMMON + (p.FRESH_MODEL_FOR_FIX,),
                expected=expect("ok"),
            ),
            "xstable_fix": fixes.fix_variant(
                "regression_nan.learning_rate",
                lambda: _rate_spec("stress", 10.0, optimizer="SGD"),
                _RATE_FIX,
                _COMMON + ("ours: SGD(10.0) as in the stress variant",),
            ),
        },
    )


def scenarios():
    """Returns this document's scenarios, in the document's order."""
    return [_outlier_scenario(), _scales_scenario(), _rate_scenario()]
