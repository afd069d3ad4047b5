"""TensorFlow worker: the scenarios under `tf.distribute.MirroredStrategy` on logical CPUs.

Run by tests/distributed/test_mirrored_strategy_tensorflow.py as
`python -m tests.distributed.worker_tensorflow`.
"""

import os

from tests.distributed._launch import REPLICAS, emit_result

# Before keras or tensorflow is imported: Keras fixes its backend at import.
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# Logical devices must be configured before TF initialises its devices.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration() for _ in range(REPLICAS)],
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tests.distributed import _cases  # noqa: E402
from tests.distributed._proposed_fixes import (  # noqa: E402
    CrossReplicaGuardedOptimizer,
    GlobalMeanSafeLoss,
    ReplicaSumCountingLayer,
)


def _fixed_guarded_adam():
    return CrossReplicaGuardedOptimizer(keras.optimizers.Adam(0.05), global_clipnorm=0.5)


def _layer_counter(model):
    return {"nonfinite_count": model.layers[1].nonfinite_count}


TF_CASES = [
    # A counter in a layer, written in each replica's step, as FiniteCheck's is.
    _cases.Case(
        "layer_count_per_replica",
        "x",
        lambda: keras.optimizers.SGD(0.05),
        make_middle_layer=lambda: ReplicaSumCountingLayer(global_count=False),
        counters=_layer_counter,
    ),
    _cases.Case(
        "layer_count_replica_sum",
        "x",
        lambda: keras.optimizers.SGD(0.05),
        make_middle_layer=lambda: ReplicaSumCountingLayer(global_count=True),
        counters=_layer_counter,
    ),
    _cases.Case(
        "guarded_nan_cross_replica_fix",
        "x",
        _fixed_guarded_adam,
        counters=_cases.CASES["guarded_nan"].counters,
    ),
    _cases.Case(
        "guarded_clean_cross_replica_fix",
        None,
        _fixed_guarded_adam,
        counters=_cases.CASES["guarded_clean"].counters,
    ),
    _cases.Case(
        "safe_loss_nan_global_mean_fix",
        "y",
        lambda: keras.optimizers.Adam(0.05),
        make_loss=lambda: GlobalMeanSafeLoss("mse"),
        metrics=lambda loss: loss.metrics,
        readouts=_cases.CASES["safe_loss_nan"].readouts,
    ),
]


def replica_values(variable):
    """One array per replica: the components of the mirrored variable, in device order."""
    value = variable.value if isinstance(variable, keras.Variable) else variable
    return [np.asarray(c.numpy()) for c in STRATEGY.experimental_local_results(value)]


def nan_rows_per_replica(poison):
    """Which replica receives the poisoned row: the same split `fit` uses for NumPy data."""
    x, _ = _cases.make_data(poison)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(_cases.GLOBAL_BATCH)
    for step, batch in enumerate(STRATEGY.experimental_distribute_dataset(dataset)):
        if step == _cases.NAN_STEP:
            shards = STRATEGY.experimental_local_results(batch)
            return [int(np.isnan(shard.numpy()).any(axis=1).sum()) for shard in shards]
    raise RuntimeError("the dataset has fewer batches than NAN_STEP + 1")


STRATEGY = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(REPLICAS)])


def main():
    cases = list(_cases.CASES.values()) + TF_CASES
    results = _cases.run_all(cases, STRATEGY.scope, replica_values)
    emit_result(
        {
            "devices": [d.name for d in tf.config.list_logical_devices("CPU")],
            "nan_rows_per_replica": nan_rows_per_replica("x"),
            "cases": results,
        }
    )


if __name__ == "__main__":
    main()
