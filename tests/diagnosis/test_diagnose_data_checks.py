"""diagnose's data checks against NumPy references, on adversarial data (no model needed)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xstable.diagnosis import _data_checks as checks

ADVERSARIAL = st.sampled_from(
    [0.0, -0.0, np.nan, np.inf, -np.inf, 3e38, -3e38, 6e-8, 65504.0, 1.0, -1.0, 1e10]
)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 12), st.integers(1, 4)),
        elements=st.one_of(ADVERSARIAL, st.floats(-1e6, 1e6)),
    )
)
def test_nonfinite_counts_match_numpy(matrix):
    findings = checks.check_nonfinite("x", matrix, "input")
    bad_rows = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if bad_rows.size == 0:
        assert findings == []
        return
    (finding,) = findings
    assert finding.code == "nonfinite-input" and finding.severity == "error"
    assert finding.evidence["nan"] == int(np.isnan(matrix).sum())
    assert finding.evidence["posinf"] == int(np.isposinf(matrix).sum())
    assert finding.evidence["neginf"] == int(np.isneginf(matrix).sum())
    assert finding.evidence["rows_affected"] == bad_rows.size
    assert finding.evidence["first_rows"] == bad_rows[:10].tolist()


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(3, 40), st.integers(1, 3)),
        elements=st.one_of(ADVERSARIAL, st.floats(-1e3, 1e3)),
    )
)
def test_outlier_z_matches_the_numpy_definition_and_ignores_nonfinite(matrix):
    stats = checks.feature_stats("x", matrix)
    z = checks.robust_z(matrix, stats)
    for j in range(matrix.shape[1]):
        column = matrix[:, j]
        finite = column[np.isfinite(column)]
        if finite.size == 0:
            assert np.isnan(z[:, j]).all()
            continue
        median = np.median(finite)
        spread = 1.4826 * np.median(np.abs(finite - median))
        if spread == 0:
            spread = 1.2533 * np.mean(np.abs(finite - median))
        for i, value in enumerate(column):
            if not np.isfinite(value) or spread == 0:
                assert np.isnan(z[i, j])
            else:
                with np.errstate(over="ignore"):
                    expected = abs(value - median) / spread
                np.testing.assert_allclose(z[i, j], expected, rtol=1e-12)


def test_normal_data_has_no_outliers_constant_or_scale_findings():
    matrix = np.random.default_rng(0).normal(size=(20000, 5))
    stats = checks.feature_stats("x", matrix)
    assert checks.check_outliers(matrix, stats, "input") == []
    assert checks.check_constant_features(stats) == []
    assert checks.check_scale_spread(stats) == []


def test_constant_feature_is_reported_with_its_value():
    matrix = np.random.default_rng(0).normal(size=(50, 3))
    matrix[:, 1] = 7.0
    (finding,) = checks.check_constant_features(checks.feature_stats("x", matrix))
    assert finding.severity == "info"
    assert finding.evidence == {"features": [1], "values": [7.0]}


def test_mostly_zero_feature_uses_mean_absolute_deviation_not_division_by_zero():
    matrix = np.zeros((100, 1))
    matrix[:3, 0] = [1.0, 2.0, 500.0]  # MAD is 0: the fallback spread still finds the 500
    (finding,) = checks.check_outliers(matrix, checks.feature_stats("x", matrix), "input")
    assert finding.evidence["worst_row"] == 2
    np.testing.assert_allclose(finding.evidence["worst_robust_z"], 500 / (1.2533 * 5.03))


def test_target_outside_activation_range():
    y = np.array([[0.0], [0.5], [1.0], [2.0], [-1.0]])
    (finding,) = checks.check_target_range(y, 0.0, 1.0, "the output activation `sigmoid`", "mse")
    assert finding.code == "target-out-of-range"
    assert finding.evidence["values_outside"] == 2
    assert finding.evidence["first_rows"] == [3, 4]
    assert checks.check_target_range(y, -1.0, 2.0, "tanh", "mse") == []


def test_sparse_labels_outside_classes_negative_and_fractional():
    labels = np.array([[0], [1], [2], [3], [-1], [1.5], [np.nan]])
    (finding,) = checks.check_sparse_labels(labels, 3, None, "sparse_categorical_crossentropy")
    assert finding.evidence["negative"] == 1
    assert finding.evidence["too_large"] == 1
    assert finding.evidence["non_integer"] == 1
    assert finding.evidence["first_rows"] == [3, 4, 5]
    assert finding.fix == "xstable.losses.SafeSparseCategoricalCrossentropy"
    # An ignored class label is allowed.
    ignored = np.array([[0], [2], [-1]])
    assert checks.check_sparse_labels(ignored, 3, -1, "scce") == []
