"""Float64 references judged as float32 results: rounding first, then the float32 limits.

A float64 reference must be rounded to float32 before it is compared with float32's limits: a
norm a hair above `FLOAT32_MAX` rounds *down* to `FLOAT32_MAX` (the correctly rounded float32
result is finite), and only values at or above `FLOAT32_MAX + ulp/2` round to infinity. Near
that boundary a float32 computation with a few ulps of rounding error may land on either side,
so within the comparison tolerance of `FLOAT32_MAX` both a finite result and an infinity of the
right sign are correct.
"""

import numpy as np

from tests.helpers import TOLERANCES, assert_matches_reference, to_numpy
from tests.numerics._strategies import FLOAT32_MAX

__all__ = ["assert_float32_result", "float32_overflows", "near_float32_max"]


def _rtol(tolerance):
    return TOLERANCES[tolerance][0] if isinstance(tolerance, str) else tolerance[0]


def near_float32_max(reference, tolerance="float32"):
    """Mask of references within `tolerance` of `±FLOAT32_MAX`: finite or infinite is right."""
    magnitude = np.abs(np.asarray(reference, dtype=np.float64))
    rtol = 4 * _rtol(tolerance)
    with np.errstate(invalid="ignore"):
        return (magnitude >= FLOAT32_MAX * (1 - rtol)) & (magnitude <= FLOAT32_MAX * (1 + rtol))


def float32_overflows(reference):
    """Mask of float64 references whose correctly rounded float32 value is infinite."""
    reference = np.asarray(reference, dtype=np.float64)
    with np.errstate(over="ignore"):
        rounded = reference.astype(np.float32)
    return np.isinf(rounded) & np.isfinite(reference)


def assert_float32_result(actual, reference, tolerance="float32", what="value"):
    """Asserts a float32 result against a float64 `reference` rounded to float32.

    Where the reference is within the tolerance of `±FLOAT32_MAX`, an infinity of the same sign
    is accepted too; elsewhere references beyond float32's range must come out infinite.

    Returns:
        Boolean mask of the elements that came out infinite (where a gradient check would be
        meaningless).
    """
    actual = to_numpy(actual).astype(np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    with np.errstate(over="ignore"):
        rounded = reference.astype(np.float32).astype(np.float64)
    # Near the boundary: a finite result within the tolerance of FLOAT32_MAX, or an infinity of
    # the reference's sign. Elsewhere: the correctly rounded float32 value (infinite included).
    band = near_float32_max(reference, tolerance)
    expected = np.where(band, np.clip(reference, -FLOAT32_MAX, FLOAT32_MAX), rounded)
    infinite_in_band = band & np.isinf(actual)
    assert (np.sign(actual) == np.sign(reference))[infinite_in_band].all(), (what, actual, reference)
    assert_matches_reference(
        np.where(infinite_in_band, 0.0, actual),
        np.where(infinite_in_band, 0.0, expected),
        tolerance,
        what=what,
    )
    return np.isinf(actual)
