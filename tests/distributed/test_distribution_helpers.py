"""`xstable.backend`'s data-parallel helpers in an ordinary single-device process, on every backend.

The multi-replica behaviour is tested in the TF worker (test_mirrored_strategy_tensorflow.py).
"""

import keras
import pytest

from xstable import backend as seam


def test_one_replica_without_a_distribution():
    assert seam.replicas_in_sync() == 1


def test_cross_replica_guarded_apply_refuses_to_run_without_replicas(backend):
    variable = keras.Variable([1.0, 2.0])
    with pytest.raises(ValueError, match="more than one replica") as error:
        seam.cross_replica_guarded_apply(
            [keras.ops.ones((2,))],
            [variable],
            guard=lambda grads: (grads, True),
            inner_apply=lambda grads: None,
        )
    assert f"backend={backend!r}" in str(error.value)
    assert keras.ops.convert_to_numpy(variable.value).tolist() == [1.0, 2.0]


def test_replica_sum_and_global_mean_divisor_are_identities_on_one_device():
    value = keras.ops.convert_to_tensor(3.0)
    assert float(keras.ops.convert_to_numpy(seam.replica_sum(value))) == 3.0
    assert float(keras.ops.convert_to_numpy(seam.global_mean_divisor(value))) == 3.0
