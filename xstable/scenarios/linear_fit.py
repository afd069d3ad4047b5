"""Seed document 001, "Why is TensorFlow's simple linear fit producing NaN loss?".

Three examples on a one-layer linear model: raw features of scale 1 and 1e6 (claimed to go
NaN), the same data standardized with Adam at 0.01 (the fix), and a row with an outlier of
1e6 handled by RobustScaler and SGD (the robust fix).
"""

import keras
import numpy as np

from xstable.scenarios import _porting as p
from xstable.scenarios import xstable_fixes as fixes
from xstable.scenarios.preprocessing import robust_scale, standard_scale
from xstable.scenarios.scenario import Scenario, Variant, expect

__all__ = ["DOCUMENT", "TITLE", "scenarios"]

DOCUMENT = "001_4e8dde463d9e341c.txt"
TITLE = "Why is TensorFlow's simple linear fit producing NaN loss?"
# The document's arrays are literals, so no seeding is needed; they are int64 in NumPy.
_COMMON = (
    p.KERAS3,
    p.INPUT,
    "int64 arrays -> float32 (Keras computes in float32; explicit so every backend gets "
    "identical tensors)",
    p.pinned_fit(100),
)


def _linear_model():
    return p.sequential(2, keras.layers.Dense(1))


def _spec(name, make_data, optimizer):
    return p.spec(
        f"linear_fit.{name}",
        _linear_model,
        make_data,
        lambda: {"optimizer": optimizer(), "loss": "mse"},
        epochs=100,
    )


def _scales_data():
    x = np.array([[1, 1000000], [2, 2000000], [3, 3000000]])
    y = np.array([10, 20, 30])
    return p.float32(x, y)


def _standardized_data():
    x, y = _scales_data()
    return p.float32(standard_scale(x), y)


def _outlier_data():
    x = np.array([[1, 10], [2, 20], [3, 30], [4, 1000000]])
    y = np.array([10, 20, 30, 40])
    return p.float32(x, y)


def _robust_scaled_data():
    x, y = _outlier_data()
    return p.float32(robust_scale(x), y)


_STANDARD_SCALER = (
    "`StandardScaler().fit_transform` -> `standard_scale` (the same formula in NumPy; checked "
    "against scikit-learn in the tests)"
)
_ROBUST_SCALER = (
    "`RobustScaler().fit_transform` -> `robust_scale` (the same formula in NumPy; checked "
    "against scikit-learn in the tests)"
)


def _adam(learning_rate=None):
    if learning_rate is None:
        return lambda: "adam"
    return lambda: keras.optimizers.Adam(learning_rate=learning_rate)


def _sgd(learning_rate):
    return lambda: keras.optimizers.SGD(learning_rate=learning_rate)


# What diagnose() says for the SGD(0.01) stress variants. Once the inputs are scaled, SGD(0.01)
# is below its stability limit, so the learning rate stays.
_SCALES_FIX = fixes.XstableFix(
    answers=("feature-scale-spread", "sgd-step-too-large", "output-far-from-targets"),
    auto_scale={},
    start_at_trivial=True,
    guard=fixes.GUARD,
)
_OUTLIER_FIX = fixes.XstableFix(
    answers=(
        "feature-scale-spread",
        "input-outlier",
        "sgd-step-too-large",
        "output-far-from-targets",
    ),
    auto_scale={"method": "robust", "clip": 5.0},
    start_at_trivial=True,
    guard=fixes.GUARD,
)


# Examples 1 and 2 share their data, stress variant and fix: one spec each, trained once.
def _scales_stress(summary):
    return Variant(
        kind="stress",
        make_spec=lambda: _spec("unscaled.stress", _scales_data, _sgd(0.01)),
        summary=summary,
        origin="ours",
        changes=_COMMON + (p.stress_sgd(0.01),),
        expected=expect("nan"),
    )


def _scales_document_fix(summary):
    return Variant(
        kind="document_fix",
        make_spec=lambda: _spec("unscaled.document_fix", _standardized_data, _adam(0.01)),
        summary=summary,
        origin="document",
        changes=_COMMON + (_STANDARD_SCALER,),
        expected=expect("stalled"),
    )


def _unscaled_fix():
    """The xstable fix of examples 1 and 2 (one spec, trained once for both)."""
    return fixes.fix_variant(
        "linear_fit.unscaled",
        lambda: _spec("unscaled.stress", _scales_data, _sgd(0.01)),
        _SCALES_FIX,
        _COMMON + (p.stress_sgd(0.01),),
    )


def _unscaled_scenario():
    return Scenario(
        id="linear_fit.unscaled",
        document=DOCUMENT,
        title=TITLE,
        example=1,
        claim="A linear fit on features of scale 1 and 1e6 with Adam is likely to make the "
        "loss NaN; example 2 (StandardScaler, Adam 0.01) fixes it.",
        claimed_outcome="nan",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _spec("unscaled.failure", _scales_data, _adam()),
                summary="Dense(1), Adam (default 1e-3), MSE, 3 rows with x2 ~ 1e6, 100 epochs",
                origin="document",
                changes=_COMMON,
                expected=expect("exploded"),
            ),
            "stress": _scales_stress("the failure with SGD(0.01) instead of Adam"),
            "document_fix": _scales_document_fix("example 2: StandardScaler on x, Adam(0.01)"),
            "xstable_fix": _unscaled_fix(),
        },
    )


def _scaled_scenario():
    return Scenario(
        id="linear_fit.scaled_lower_rate",
        document=DOCUMENT,
        title=TITLE,
        example=2,
        claim="Standardizing the inputs (with Adam at 0.01) significantly reduces the risk "
        "of a NaN loss on the same data.",
        claimed_outcome="ok",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _spec("scaled_lower_rate.failure", _scales_data, _adam(0.01)),
                summary="example 2 without its StandardScaler: raw x, Adam(0.01)",
                origin="derived",
                changes=_COMMON
                + (
                    "example 2 is a fix; its failure is its own code with the StandardScaler "
                    "removed (Adam 0.01 kept), to measure what the scaling does alone",
                ),
                expected=expect("exploded"),
            ),
            "stress": _scales_stress("raw x with SGD at the same learning rate 0.01"),
            "document_fix": _scales_document_fix("StandardScaler on x, Adam(0.01)"),
            "xstable_fix": _unscaled_fix(),
        },
    )


def _robust_scenario():
    return Scenario(
        id="linear_fit.robust_scaler_sgd",
        document=DOCUMENT,
        title=TITLE,
        example=3,
        claim="With an outlier of 1e6 in one row, RobustScaler plus SGD (more robust to "
        "outliers than Adam) trains a linear fit without NaN.",
        claimed_outcome="ok",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _spec("robust_scaler_sgd.failure", _outlier_data, _adam()),
                summary="example 3 without its fix: raw x with the 1e6 outlier, Adam (as in "
                "example 1)",
                origin="derived",
                changes=_COMMON
                + (
                    "example 3 is a fix; its failure is its data unscaled with example 1's "
                    "optimizer (Adam), the two things example 3 changes",
                ),
                expected=expect("exploded"),
            ),
            "stress": Variant(
                kind="stress",
                make_spec=lambda: _spec("robust_scaler_sgd.stress", _outlier_data, _sgd(0.01)),
                summary="raw x with the outlier and the document's SGD, without RobustScaler",
                origin="ours",
                changes=_COMMON
                + (
                    "ours: the document's optimizer ('SGD', learning rate 0.01) kept, its "
                    "RobustScaler removed, to show which half of the fix matters",
                ),
                expected=expect("nan"),
            ),
            "document_fix": Variant(
                kind="document_fix",
                make_spec=lambda: _spec(
                    "robust_scaler_sgd.document_fix", _robust_scaled_data, lambda: "SGD"
                ),
                summary="RobustScaler on x, optimizer 'SGD' (learning rate 0.01)",
                origin="document",
                changes=_COMMON + (_ROBUST_SCALER,),
                expected=expect("ok"),
            ),
            "xstable_fix": fixes.fix_variant(
                "linear_fit.robust_scaler_sgd",
                lambda: _spec("robust_scaler_sgd.stress", _outlier_data, _sgd(0.01)),
                _OUTLIER_FIX,
                _COMMON,
            ),
        },
    )


def scenarios():
    """Returns this document's scenarios, in the document's order."""
    return [_unscaled_scenario(), _scaled_scenario(), _robust_scenario()]
