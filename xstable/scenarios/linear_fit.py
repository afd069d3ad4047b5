"""Seed document 001, "Why is TensorFlow's simple linear fit producing NaN loss?".

Three examples on a one-layer linear model: raw features of scale 1 and 1e6 (claimed to go
NaN), the same data standardized with Adam at 0.01 (the fix), and a row with an outlier of
1e6 handled by RobustScaler and SGD (the robust fix).
"""

import dataclasses

import numpy as np

from xstable.scenarios import _porting as p
from xstable.scenarios import xstable_fixes as fixes
from xstable.scenarios._stress import sgd_stress
from xstable.scenarios.declaration import Case, DenseStack, FixCase, SeedExample, Setting
from xstable.scenarios.preprocessing import robust_scale, standard_scale
from xstable.scenarios.scenario import expect

__all__ = ["DOCUMENT", "TITLE", "EXAMPLES"]

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
_LINEAR = DenseStack(2, ((1, None),))


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


_OUTLIER = Setting(_LINEAR, _outlier_data, epochs=100)


# Examples 1 and 2 share their data, stress and fix settings and their xstable fix, each
# trained once; example 2 words their summaries for itself.
_UNSCALED = Setting(_LINEAR, _scales_data, epochs=100)
_SCALES_STRESS = sgd_stress(
    _UNSCALED, 0.01, "the failure with SGD(0.01) instead of Adam", name="linear_fit.unscaled.stress"
)
# Example 2's code without its StandardScaler.
_UNSCALED_ADAM_001 = _UNSCALED.replace(optimizer=("Adam", {"learning_rate": 0.01}))
_STANDARDIZED = Case(
    _UNSCALED_ADAM_001.replace(data=_standardized_data, name="linear_fit.unscaled.document_fix"),
    summary="example 2: StandardScaler on x, Adam(0.01)",
    origin="document",
    expected=expect("stalled"),
    changes=(p.STANDARD_SCALER,),
)
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

EXAMPLES = (
    SeedExample(
        id="linear_fit.unscaled",
        number=1,
        claim="A linear fit on features of scale 1 and 1e6 with Adam is likely to make the "
        "loss NaN; example 2 (StandardScaler, Adam 0.01) fixes it.",
        claimed_outcome="nan",
        changes=_COMMON,
        failure=Case(
            _UNSCALED,
            summary="Dense(1), Adam (default 1e-3), MSE, 3 rows with x2 ~ 1e6, 100 epochs",
            origin="document",
            expected=expect("exploded"),
        ),
        stress=_SCALES_STRESS,
        document_fix=_STANDARDIZED,
        xstable_fix=FixCase(_SCALES_FIX, changes=(p.stress_sgd(0.01),)),
    ),
    SeedExample(
        id="linear_fit.scaled_lower_rate",
        number=2,
        claim="Standardizing the inputs (with Adam at 0.01) significantly reduces the risk "
        "of a NaN loss on the same data.",
        claimed_outcome="ok",
        changes=_COMMON,
        failure=Case(
            _UNSCALED_ADAM_001,
            summary="example 2 without its StandardScaler: raw x, Adam(0.01)",
            origin="derived",
            expected=expect("exploded"),
            changes=(
                "example 2 is a fix; its failure is its own code with the StandardScaler "
                "removed (Adam 0.01 kept), to measure what the scaling does alone",
            ),
        ),
        stress=dataclasses.replace(
            _SCALES_STRESS, summary="raw x with SGD at the same learning rate 0.01"
        ),
        document_fix=dataclasses.replace(_STANDARDIZED, summary="StandardScaler on x, Adam(0.01)"),
        xstable_fix=FixCase(_SCALES_FIX, changes=(p.stress_sgd(0.01),)),
    ),
    SeedExample(
        id="linear_fit.robust_scaler_sgd",
        number=3,
        claim="With an outlier of 1e6 in one row, RobustScaler plus SGD (more robust to "
        "outliers than Adam) trains a linear fit without NaN.",
        claimed_outcome="ok",
        changes=_COMMON,
        failure=Case(
            _OUTLIER,
            summary="example 3 without its fix: raw x with the 1e6 outlier, Adam (as in example 1)",
            origin="derived",
            expected=expect("exploded"),
            changes=(
                "example 3 is a fix; its failure is its data unscaled with example 1's "
                "optimizer (Adam), the two things example 3 changes",
            ),
        ),
        stress=Case(
            _OUTLIER.replace(optimizer=("SGD", {"learning_rate": 0.01})),
            summary="raw x with the outlier and the document's SGD, without RobustScaler",
            origin="ours",
            expected=expect("nan"),
            changes=(
                "ours: the document's optimizer ('SGD', learning rate 0.01) kept, its "
                "RobustScaler removed, to show which half of the fix matters",
            ),
        ),
        document_fix=Case(
            _OUTLIER.replace(data=_robust_scaled_data, optimizer="SGD"),
            summary="RobustScaler on x, optimizer 'SGD' (learning rate 0.01)",
            origin="document",
            expected=expect("ok"),
            changes=(
                "`RobustScaler().fit_transform` -> `robust_scale` (the same formula in NumPy; "
                "checked against scikit-learn in the tests)",
            ),
        ),
        xstable_fix=FixCase(_OUTLIER_FIX),
    ),
)
