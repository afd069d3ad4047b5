"""Data-parallel training: where xstable's guards must see the gradients of the whole batch.

A guard that decides from one replica's gradients forks the model: the replica whose shard held
the NaN skips, the others step. The guard must decide from the all-reduced (global) gradients,
which then are identical on every replica, so every replica takes the same decision.

How each backend's data parallelism hands gradients to `optimizer.apply`:

- JAX (`keras.distribution.DataParallel`): the train step is one SPMD program over the global,
  sharded batch; the gradients are already global. Nothing to do.
- PyTorch (`DistributedDataParallel`): `backward()` averages the gradients across processes
  before `optimizer.apply` sees them. Nothing to do (counters kept by losses and layers are
  per process; see `docs/distributed.md`).
- TensorFlow (`tf.distribute.MirroredStrategy` and other replica strategies): `apply` runs in
  every replica with that replica's own gradients; Keras's TF optimizer all-reduces them only
  inside its update. And a `cond` whose branch calls the inner optimizer (which synchronises
  replicas through `merge_call`) is refused in a replica context. `cross_replica_guarded_apply`
  handles both.

This is the one module where xstable asks `tf.distribute` about replicas.
"""

import keras

__all__ = [
    "cross_replica_guarded_apply",
    "global_mean_divisor",
    "replica_sum",
    "replicas_in_sync",
]


def _tf_replica_context():
    """The current `tf.distribute` replica context if it has more than one replica, else None."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context


def replicas_in_sync():
    """Returns how many replicas' gradients the optimizer step being built must combine.

    Only TensorFlow hands per-replica gradients to `optimizer.apply` (inside a
    `tf.distribute` replica context with several replicas); there the answer is the
    strategy's `num_replicas_in_sync`. It is 1 everywhere else: on JAX the step is one SPMD
    program over the global batch, and PyTorch's DistributedDataParallel has averaged the
    gradients before `apply`.

    Returns:
        Int, at least 1.
    """
    if keras.config.backend() != "tensorflow":
        return 1
    context = _tf_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def replica_sum(value):
    """Returns the sum of `value` over the TF replicas of this step (a count made global).

    Under `tf.distribute` each replica runs the step on its shard, and a counter variable
    written in a replica context is written per replica: with the default aggregation
    (`"none"`) every replica keeps its own shard's count (the replicas' copies fork), with
    `"sum"` every write is multiplied, with `"only_first_replica"` the other shards are lost
    (all measured with MirroredStrategy, see docs/distributed.md). All-reducing the count first
    gives every replica the global count, so `counter.assign(counter + replica_sum(count))`
    keeps the copies identical and global.

    On JAX the step already sees the global batch, and on PyTorch counts stay per process
    (a collective per layer per step would cost more than it is worth; sum them with
    `torch.distributed.all_reduce` when reading): `value` is returned unchanged there.

    Every replica must call it at the same point of its step (it is a collective).

    Args:
        value: Tensor, e.g. a scalar count.

    Returns:
        Tensor of the same shape and dtype.
    """
    if keras.config.backend() != "tensorflow":
        return value
    context = _tf_replica_context()
    if context is None:
        return value
    import tensorflow as tf

    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def _torch_world_size():
    import torch.distributed

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 1
    return torch.distributed.get_world_size()


def global_mean_divisor(local_count):
    """Returns the divisor that turns a replica's masked sum into its share of the global mean.

    A loss that averages over the *valid* samples only (e.g. `SafeLoss` leaving non-finite
    samples out) must divide by the number of valid samples in the whole global batch, not in
    the replica's shard: the shards hold different numbers of valid samples, so averaging the
    per-shard means differs from the single-device mean. With this divisor,
    `local_sum / global_mean_divisor(local_count)` combined the way the backend combines
    replica gradients gives `global_sum / global_count`, as on one device:

    - TensorFlow replica context with N > 1 replicas: the all-reduced count. The replicas'
      gradients are summed, so the per-replica losses must add up to the global mean (this
      replaces Keras's `1 / N` loss scaling, which assumes equal shards).
    - PyTorch with `torch.distributed` initialised (world size W > 1, DistributedDataParallel):
      the all-reduced count divided by W, because DDP averages the gradients.
    - Otherwise (one device, or JAX, whose step already sees the global batch): `local_count`.

    Every replica must call it at the same point of its step (it is a collective).

    Args:
        local_count: Scalar float tensor (or Python float), the number (or total weight) of
            valid samples in this replica's shard.

    Returns:
        Scalar float tensor of the same dtype.
    """
    backend = keras.config.backend()
    if backend == "tensorflow":
        context = _tf_replica_context()
        if context is None:
            return local_count
        import tensorflow as tf

        if isinstance(local_count, (int, float)):
            local_count = tf.constant(float(local_count), dtype="float32")
        return context.all_reduce(tf.distribute.ReduceOp.SUM, local_count)
    if backend == "torch":
        world_size = _torch_world_size()
        if world_size == 1:
            return local_count
        import torch.distributed

        total = keras.ops.convert_to_tensor(local_count).detach().clone()
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
        return total / world_size
    return local_count


def cross_replica_guarded_apply(grads, trainable_variables, guard, inner_apply):
    """Runs a guarded optimizer step once on the global gradients of all TF replicas.

    Call it from an optimizer's `apply` when `replicas_in_sync() > 1` (TensorFlow only). It:
    1. all-reduces the gradients (sum; Keras scales each replica's loss by
       `1 / num_replicas`, so the sum is the gradient of the global batch's loss);
    2. calls `guard(global_grads)` once, in the cross-replica context, so its decision is one
       decision and its variable writes (counters) reach every replica alike;
    3. if the guard says apply, runs `inner_apply(shares, *extra)` in every replica, where `shares`
       are the guard's gradients divided by the number of replicas: the inner Keras optimizer
       all-reduces (sums) them once more, which gives back exactly the guard's gradients for
       2 or 4 replicas (division by a power of two is exact) and within one float rounding
       otherwise.

    The branch is a graph `cond` in the cross-replica context, as Keras's own
    `LossScaleOptimizer` does, because a `cond` in a replica context cannot contain the inner
    optimizer's `merge_call`.

    Args:
        grads: List of per-replica gradient tensors (or `None`), as given to `apply`.
        trainable_variables: List of the variables the gradients belong to.
        guard: Callable `guard(global_grads) -> (grads, apply, *extra)`: `global_grads` is a
            list like `grads` holding the all-reduced gradients; it returns the gradients to
            apply (e.g. clipped), a scalar boolean tensor, and any further values the step
            needs (e.g. a learning-rate scale), passed on to `inner_apply`.
        inner_apply: Callable `inner_apply(grads, *extra)` that applies gradients with the
            inner optimizer; called in each replica's context.

    Example (inside a wrapper optimizer's `apply` on TensorFlow):

    ```python
    if _distribution.replicas_in_sync() > 1:
        _distribution.cross_replica_guarded_apply(
            grads,
            trainable_variables,
            guard=lambda global_grads: self._guard(global_grads, trainable_variables),
            inner_apply=lambda shares, lr_scale: self.inner_optimizer.apply(
                shares, trainable_variables
            ),
        )
    ```

    Raises:
        ValueError: If not called inside a TensorFlow replica context with several replicas.
    """
    context = _tf_replica_context() if keras.config.backend() == "tensorflow" else None
    if context is None:
        raise ValueError(
            "`cross_replica_guarded_apply` must be called inside a tf.distribute replica "
            f"context with more than one replica. Received: backend={keras.config.backend()!r}, "
            f"replicas_in_sync={replicas_in_sync()}. Call it only when `replicas_in_sync() > 1`."
        )
    import tensorflow as tf

    grads = list(grads)
    present = [i for i, grad in enumerate(grads) if grad is not None]
    if not present:
        raise ValueError(
            "No gradients provided for any variable. Received: grads=[None, ...] for "
            f"{len(grads)} variables."
        )
    num_replicas = context.num_replicas_in_sync
    reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])

    def guarded_step(distribution, reduced):
        global_grads = list(grads)
        for index, grad in zip(present, reduced):
            # All-reduced: every replica holds the same value; the first one's is taken.
            global_grads[index] = distribution.experimental_local_results(grad)[0]
        step_grads, apply, *extra = guard(global_grads)
        # Mirrored copies on each variable's devices, so that the inner optimizer's all-reduce
        # inside `call_for_each_replica` has a per-replica value to reduce.
        shares = [
            None
            if grad is None
            else distribution.extended.broadcast_to(
                grad / num_replicas, destinations=_tf_variable(variable)
            )
            for grad, variable in zip(step_grads, trainable_variables, strict=True)
        ]

        def apply_in_every_replica():
            distribution.extended.call_for_each_replica(inner_apply, args=(shares, *extra))

        keras.ops.cond(apply, apply_in_every_replica, lambda: None)

    context.merge_call(guarded_step, args=(reduced,))


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable
