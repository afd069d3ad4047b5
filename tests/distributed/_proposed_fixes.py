"""Names the distributed workers use for the "fixed" cases, and a counting test layer.

The changes once proposed here as subclasses (deciding on all-reduced gradients, dividing by
the global valid count, summing counters across replicas) are now in the components, so the
first two names are the shipped classes. `ReplicaSumCountingLayer(global_count=False)` still
reproduces the per-replica counter fork that `replica_sum` prevents.
"""

import keras

from xstable import backend
from xstable.losses import SafeLoss
from xstable.optimizers import GuardedOptimizer

__all__ = ["CrossReplicaGuardedOptimizer", "GlobalMeanSafeLoss", "ReplicaSumCountingLayer"]


# Both changes now live in the components themselves (GuardedOptimizer._graph_apply and the
# masked-loss reduction), so the "fixed" cases run the shipped classes under their old names.
CrossReplicaGuardedOptimizer = GuardedOptimizer
GlobalMeanSafeLoss = SafeLoss


class ReplicaSumCountingLayer(keras.layers.Layer):
    """Counts non-finite inputs like FiniteCheck does, with the count made global first.

    The change proposed for `FiniteCheck.call`: `count = backend.replica_sum(count)`
    before `self.nonfinite_count.assign(self.nonfinite_count + count)`.
    """

    def __init__(self, global_count=True, **kwargs):
        super().__init__(**kwargs)
        self.global_count = global_count
        self.nonfinite_count = self.add_weight(
            shape=(), initializer="zeros", dtype="float32", trainable=False, name="count"
        )

    def call(self, inputs):
        ops = keras.ops
        count = ops.sum(ops.cast(ops.logical_not(ops.isfinite(inputs)), "float32"))
        if self.global_count:
            count = backend.replica_sum(count)
        self.nonfinite_count.assign(self.nonfinite_count + count)
        return ops.where(ops.isfinite(inputs), inputs, ops.zeros_like(inputs))
