"""Assertions shared by the data-parallel tests: replicas agree, and agree with one device."""

import numpy as np

from tests.helpers import assert_matches_reference

__all__ = [
    "SINGLE_DEVICE_TOLERANCE",
    "assert_counters_global",
    "assert_safe_loss_counts_globally",
    "assert_same_reported_loss",
    "assert_replicas_identical",
    "assert_matches_single_device",
    "case_result",
]

# Data parallelism sums the gradient in another order than one device does; after the few
# steps of these scenarios the weights differ by a few float32 ulps (about 1e-7 measured).
SINGLE_DEVICE_TOLERANCE = "float32"  # rtol=1e-5, atol=1e-7


def case_result(measured, name):
    """The `{"single", "distributed"}` result of a case; fails if the distributed run raised."""
    result = measured["cases"][name]
    error = result["distributed"].get("error")
    if error:
        raise AssertionError(f"case {name!r} failed in the multi-device run: {error}")
    return result


def assert_replicas_identical(result, name):
    """Every replica holds bit-identical weights (NaN counts as equal to NaN)."""
    replicas = [np.asarray(w) for w in result["distributed"]["replica_weights"]]
    assert len(replicas) >= 2, f"{name}: expected several replicas, got {len(replicas)}"
    for index, weights in enumerate(replicas[1:], start=1):
        differ = ~((weights == replicas[0]) | (np.isnan(weights) & np.isnan(replicas[0])))
        assert not differ.any(), (
            f"{name}: replica {index} forked from replica 0 in {int(differ.sum())} of "
            f"{differ.size} weights (max abs difference "
            f"{np.nanmax(np.abs(weights - replicas[0])):.3e})"
        )


def assert_matches_single_device(result, name):
    """Replica 0's weights equal the single-device run's within `SINGLE_DEVICE_TOLERANCE`."""
    assert_matches_reference(
        np.asarray(result["distributed"]["replica_weights"][0]),
        np.asarray(result["single"]["weights"]),
        tolerance=SINGLE_DEVICE_TOLERANCE,
        what=f"{name}: weights after data-parallel training vs one device",
    )


def assert_counters_global(result, name, expected):
    """Each counter holds `expected[label]` on every replica and in the single-device run."""
    for label, value in expected.items():
        per_replica = result["distributed"]["counters"][label]
        single = result["single"]["counters"][label]
        assert per_replica == [value] * len(per_replica), (
            f"{name}: counter {label!r} is {per_replica} per replica, expected {value} on each"
        )
        assert single == value, f"{name}: single-device {label!r} is {single}, expected {value}"


def assert_safe_loss_counts_globally(result, name, expected=1.0):
    """The non-finite count in history and in `result()` is the global one, as on one device."""
    for run in ("single", "distributed"):
        counts = result[run]["history"]["safe_mean_squared_error_nonfinite"]
        assert counts == [expected], f"{name} ({run}): history count {counts}, expected {expected}"
        readout = result[run]["readouts"]["nonfinite_count"]
        assert readout == expected, f"{name} ({run}): result() {readout}, expected {expected}"


def assert_same_reported_loss(result, name):
    """The loss in `fit` history equals the single-device one (float32 tolerance)."""
    assert_matches_reference(
        np.asarray(result["distributed"]["history"]["loss"]),
        np.asarray(result["single"]["history"]["loss"]),
        tolerance=SINGLE_DEVICE_TOLERANCE,
        what=f"{name}: epoch loss in history vs one device",
    )
