"""The changes proposed to GuardedOptimizer and SafeLoss, as test-only subclasses.

They show, in the workers, that routing through `xstable._distribution` makes the components
replica-consistent. Once the components carry the change, these subclasses and the strict
xfails in the tests can go (see docs/distributed.md).
"""

import keras

from xstable import _distribution
from xstable.losses import SafeLoss
from xstable.losses.safe_loss import _zero_nonfinite_gradient
from xstable.optimizers import GuardedOptimizer

__all__ = ["CrossReplicaGuardedOptimizer", "GlobalMeanSafeLoss", "ReplicaSumCountingLayer"]


class CrossReplicaGuardedOptimizer(GuardedOptimizer):
    """GuardedOptimizer with the change proposed for its TF path (see docs/distributed.md).

    It decides on the all-reduced gradients through
    `xstable._distribution.cross_replica_guarded_apply`, once, in the cross-replica context.
    """

    def _graph_apply(self, grads, trainable_variables):
        if _distribution.replicas_in_sync() > 1:

            def inner_apply(shares, lr_scale):
                with self._scaled_inner_learning_rate(lr_scale):
                    self.inner_optimizer.apply(shares, trainable_variables)

            _distribution.cross_replica_guarded_apply(
                grads,
                trainable_variables,
                guard=lambda global_grads: self._guard(global_grads, trainable_variables),
                inner_apply=inner_apply,
            )
            return
        super()._graph_apply(grads, trainable_variables)


class GlobalMeanSafeLoss(SafeLoss):
    """SafeLoss with the change proposed for its mean (see docs/distributed.md).

    Same steps as `SafeLoss.__call__` for the default reduction without sample weights, but
    divides by `xstable._distribution.global_mean_divisor` of the valid-sample count.
    """

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None or self.reduction != "sum_over_batch_size":
            raise NotImplementedError("the test scenario uses neither")
        ops = keras.ops
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
            values = ops.cast(self.call(y_true, _zero_nonfinite_gradient(y_pred)), self.dtype)
            finite = ops.isfinite(values)
            self.nonfinite_counter.record(
                ops.sum(ops.cast(ops.logical_not(finite), "int32")), like=values
            )
            values = ops.where(finite, values, ops.zeros_like(values))
            count = _distribution.global_mean_divisor(ops.sum(ops.cast(finite, self.dtype)))
            return ops.divide_no_nan(ops.sum(values), count)


class ReplicaSumCountingLayer(keras.layers.Layer):
    """Counts non-finite inputs like FiniteCheck does, with the count made global first.

    The change proposed for `FiniteCheck.call`: `count = _distribution.replica_sum(count)`
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
            count = _distribution.replica_sum(count)
        self.nonfinite_count.assign(self.nonfinite_count + count)
        return ops.where(ops.isfinite(inputs), inputs, ops.zeros_like(inputs))
