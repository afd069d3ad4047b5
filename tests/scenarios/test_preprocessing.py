import numpy as np
import pytest

from tests.helpers import assert_matches_reference
from xstable.scenarios.preprocessing import drop_outliers_3sigma, robust_scale, standard_scale


def _data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 3)) * [1.0, 1e3, 0.0]
    x[0, 1] = 1e7
    return x


def test_standard_scale_matches_scikit_learn():
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    x = _data()
    expected = preprocessing.StandardScaler().fit_transform(x)
    assert_matches_reference(standard_scale(x), expected, "float64", what="standard_scale")


def test_robust_scale_matches_scikit_learn():
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    x = _data()
    expected = preprocessing.RobustScaler().fit_transform(x)
    assert_matches_reference(robust_scale(x), expected, "float64", what="robust_scale")


def test_scalers_by_hand():
    # Hand-checked values; they hold without scikit-learn installed.
    assert standard_scale([[1.0, 5.0], [3.0, 5.0]]).tolist() == [[-1.0, 0.0], [1.0, 0.0]]
    assert robust_scale([[1.0], [2.0], [3.0], [1e6]]).ravel().tolist()[:3] == pytest.approx(
        [-1.5 / 250000.5, -0.5 / 250000.5, 0.5 / 250000.5]
    )
    with pytest.raises(ValueError, match="must be a 2-D array"):
        standard_scale([1.0, 2.0])


def test_drop_outliers_matches_the_documents_pandas_filter():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    x = rng.random((100, 1)) * 10
    y = 2 * x + 1 + rng.standard_normal((100, 1))
    x[0, 0] = 1e10
    df = pd.DataFrame({"X": x[:, 0], "y": y[:, 0]})
    cleaned = df[(np.abs(df - df.mean()) < (3 * df.std())).all(axis=1)]
    kept_x, kept_y = drop_outliers_3sigma(x, y)
    assert_matches_reference(kept_x[:, 0], cleaned["X"].values, "exact", what="kept x")
    assert_matches_reference(kept_y[:, 0], cleaned["y"].values, "exact", what="kept y")
    assert len(kept_x) == 99


def test_drop_outliers_validates_its_columns():
    with pytest.raises(ValueError, match="at least one column"):
        drop_outliers_3sigma()
    with pytest.raises(ValueError, match="same number of rows"):
        drop_outliers_3sigma(np.zeros(3), np.zeros(4))
