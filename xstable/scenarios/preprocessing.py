"""The documents' data fixes, in NumPy: StandardScaler, RobustScaler and 3-sigma outlier removal.

The seed documents use scikit-learn scalers and a pandas filter. xstable does not depend on
either, so these functions reproduce them exactly (the tests compare against scikit-learn and
pandas where they are installed): same statistics, same `ddof`, same handling of constant
columns.
"""

import numpy as np

__all__ = ["standard_scale", "robust_scale", "drop_outliers_3sigma"]


def _as_2d(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array (rows, features). Received: {name} with shape {x.shape}."
        )
    return x


def _nonzero_scale(scale):
    # scikit-learn leaves constant columns unscaled instead of dividing by zero.
    return np.where(scale == 0.0, 1.0, scale)


def standard_scale(x):
    """Standardizes each column to mean 0 and standard deviation 1, as `StandardScaler`.

    Args:
        x: array of shape `(rows, features)`.

    Returns:
        float64 array `(x - mean) / std` (population std, `ddof=0`; a constant column is only
        centred), as `sklearn.preprocessing.StandardScaler().fit_transform(x)`.

    Raises:
        ValueError: If `x` is not 2-D.

    Example:

    >>> standard_scale([[1.0], [3.0]]).ravel().tolist()
    [-1.0, 1.0]
    """
    x = _as_2d(x, "x")
    return (x - x.mean(axis=0)) / _nonzero_scale(x.std(axis=0))


def robust_scale(x):
    """Centres each column on its median and divides by its interquartile range, as `RobustScaler`.

    Args:
        x: array of shape `(rows, features)`.

    Returns:
        float64 array `(x - median) / (q75 - q25)` (linear-interpolated percentiles; a column
        with zero range is only centred), as `sklearn.preprocessing.RobustScaler().fit_transform(x)`.

    Raises:
        ValueError: If `x` is not 2-D.

    Example:

    >>> robust_scale([[1.0], [2.0], [3.0]]).ravel().tolist()
    [-1.0, 0.0, 1.0]
    """
    x = _as_2d(x, "x")
    q25, median, q75 = np.percentile(x, [25.0, 50.0, 75.0], axis=0)
    return (x - median) / _nonzero_scale(q75 - q25)


def drop_outliers_3sigma(*columns):
    """Keeps the rows whose every value lies within 3 sample standard deviations of its column mean.

    The pandas rule of the regression document,
    `df[(np.abs(df - df.mean()) < 3 * df.std()).all(axis=1)]`, where `df.std()` is the sample
    standard deviation (`ddof=1`).

    Args:
        *columns: arrays of shape `(rows,)` or `(rows, k)`, the same number of rows each
            (e.g. `x` and `y`).

    Returns:
        A tuple with the kept rows of each input, in the input's dtype and shape.

    Raises:
        ValueError: If no column is given or the columns differ in length.

    Example:

    >>> x = np.r_[np.zeros(20), 1e6]
    >>> drop_outliers_3sigma(x)[0].shape
    (20,)
    """
    if not columns:
        raise ValueError("`drop_outliers_3sigma` needs at least one column. Received none.")
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise ValueError(
            f"Every column must have the same number of rows. Received lengths: "
            f"{[len(c) for c in columns]}."
        )
    table = np.concatenate(
        [np.asarray(c, dtype=np.float64).reshape(len(c), -1) for c in columns], axis=1
    )
    within = np.abs(table - table.mean(axis=0)) < 3.0 * table.std(axis=0, ddof=1)
    keep = within.all(axis=1)
    return tuple(np.asarray(c)[keep] for c in columns)
