"""Test helpers shared by every test module.

`assert_matches_reference` is the one way tests compare a tensor from any backend against a
NumPy (ideally float64) reference: it names the tolerance and prints the deviation.
"""

import keras
import numpy as np

__all__ = ["TOLERANCES", "assert_matches_reference", "to_numpy"]

# Named tolerances (rtol, atol). Use the name in tests so a failure says which budget broke.
TOLERANCES = {
    "exact": (0.0, 0.0),
    "float64": (1e-12, 1e-300),
    "float32": (1e-5, 1e-7),
    "float32_loose": (1e-4, 1e-6),
    "float16": (1e-2, 1e-3),
    "cross_backend": (1e-5, 1e-7),
}


def to_numpy(x):
    """Converts a backend tensor, Keras variable or array-like to a NumPy array."""
    if isinstance(x, keras.Variable):
        x = x.value
    return np.asarray(keras.ops.convert_to_numpy(x))


def assert_matches_reference(actual, reference, tolerance="float32", what="value"):
    """Asserts `actual` (any backend) equals the NumPy `reference` within a named tolerance.

    NaN must match NaN and infinities must match in sign. On failure the message states the
    tolerance, the largest absolute and relative deviation, where it occurred, and the count of
    mismatching elements.

    Args:
        actual: Tensor from the active backend, or array-like.
        reference: NumPy array (float64 preferred) with the expected values.
        tolerance: A key of `TOLERANCES` or an `(rtol, atol)` pair.
        what: Short description used in the failure message.
    """
    if isinstance(tolerance, str):
        rtol, atol = TOLERANCES[tolerance]
        name = tolerance
    else:
        rtol, atol = tolerance
        name = f"rtol={rtol}, atol={atol}"
    actual = to_numpy(actual).astype(np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if actual.shape != reference.shape:
        raise AssertionError(
            f"{what}: shape {actual.shape} differs from reference shape {reference.shape}"
        )
    close = np.isclose(actual, reference, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return
    with np.errstate(all="ignore"):
        abs_dev = np.abs(actual - reference)
        rel_dev = abs_dev / np.maximum(np.abs(reference), np.finfo(np.float64).tiny)
    abs_dev = np.where(close, 0.0, np.nan_to_num(abs_dev, nan=np.inf))
    rel_dev = np.where(close, 0.0, np.nan_to_num(rel_dev, nan=np.inf))
    worst = np.unravel_index(np.argmax(rel_dev), rel_dev.shape) if rel_dev.ndim else ()
    raise AssertionError(
        f"{what} deviates from the reference beyond tolerance '{name}' "
        f"(rtol={rtol}, atol={atol}): {int((~close).sum())} of {close.size} elements differ; "
        f"max abs deviation {abs_dev.max():.3e}, max rel deviation {rel_dev.max():.3e} "
        f"at index {tuple(int(i) for i in worst)}: actual={actual[worst]!r}, "
        f"reference={reference[worst]!r}"
    )
