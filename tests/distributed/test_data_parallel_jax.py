"""GuardedOptimizer under `keras.distribution.DataParallel` on 2 virtual CPU devices (JAX).

The scenarios run in a worker process (tests/distributed/worker_jax.py) because the device
count must be set before jax initialises. A NaN sits in one row of step 1, in the last
replica's shard only.
"""

import numpy as np
import pytest

from tests.distributed import _cases
from tests.distributed._checks import (
    assert_counters_global,
    assert_matches_single_device,
    assert_replicas_identical,
    assert_safe_loss_counts_globally,
    assert_same_reported_loss,
    case_result,
)
from tests.distributed._launch import REPLICAS, run_worker

pytestmark = pytest.mark.only_backend(
    "jax",
    reason="keras.distribution.DataParallel is Keras's JAX distribution API; the worker needs "
    "jax installed, as in the tests-jax session",
)


@pytest.fixture(scope="module")
def measured():
    return run_worker("tests.distributed.worker_jax")


def test_worker_trains_on_several_devices(measured):
    assert len(measured["devices"]) == REPLICAS, measured["devices"]


def test_plain_keras_data_parallel_matches_one_device(measured):
    result = case_result(measured, "plain_clean")
    assert_replicas_identical(result, "plain_clean")
    assert_matches_single_device(result, "plain_clean")


def test_baseline_nan_in_one_shard_reaches_every_replica_without_a_guard(measured):
    # The step is one SPMD program over the global batch: plain Adam applies the NaN
    # gradient everywhere, as on one device.
    result = case_result(measured, "plain_nan")
    assert_replicas_identical(result, "plain_nan")
    assert all(np.isnan(w).any() for w in result["distributed"]["replica_weights"])
    assert np.isnan(result["single"]["weights"]).any()


@pytest.mark.parametrize("name", ["guarded_clean", "guarded_nan"])
def test_guarded_optimizer_replicas_agree_and_match_one_device(measured, name):
    result = case_result(measured, name)
    assert_replicas_identical(result, name)
    assert np.isfinite(result["distributed"]["replica_weights"]).all()
    assert_matches_single_device(result, name)


def test_guarded_optimizer_skips_the_step_on_every_replica_with_global_counters(measured):
    result = case_result(measured, "guarded_nan")
    assert_counters_global(
        result,
        "guarded_nan",
        {"skipped_steps": 1.0, "consecutive_skips": 0.0, "iterations": _cases.STEPS - 1.0},
    )


def test_guarded_optimizer_clean_run_skips_nothing(measured):
    result = case_result(measured, "guarded_clean")
    assert_counters_global(
        result, "guarded_clean", {"skipped_steps": 0.0, "iterations": float(_cases.STEPS)}
    )


def test_loss_scale_optimizer_skips_consistently(measured):
    # Keras's LossScaleOptimizer checks the (global) gradients here: it skips on all replicas.
    result = case_result(measured, "loss_scale_nan")
    assert_replicas_identical(result, "loss_scale_nan")
    assert_matches_single_device(result, "loss_scale_nan")


def test_safe_loss_matches_one_device_and_counts_the_nan_label_once(measured):
    # The step is one program over the global batch: the mean is over the global batch's
    # finite samples and the count is global.
    result = case_result(measured, "safe_loss_nan")
    assert_replicas_identical(result, "safe_loss_nan")
    assert np.isfinite(result["distributed"]["replica_weights"]).all()
    assert_matches_single_device(result, "safe_loss_nan")
    assert_same_reported_loss(result, "safe_loss_nan")
    assert_safe_loss_counts_globally(result, "safe_loss_nan")


def test_finite_check_replace_keeps_replicas_identical_and_matches_one_device(measured):
    result = case_result(measured, "finite_check_replace")
    assert_replicas_identical(result, "finite_check_replace")
    assert np.isfinite(result["distributed"]["replica_weights"]).all()
    assert_matches_single_device(result, "finite_check_replace")
    # policy="replace" counts in its variable (checked below), not in the logs.
    assert "input_check_nonfinite" not in result["distributed"]["history"]


@pytest.mark.parametrize("name", ["finite_check_replace", "finite_check_count"])
def test_finite_check_counter_is_global(measured, name):
    assert_counters_global(case_result(measured, name), name, {"nonfinite_count": 1.0})
