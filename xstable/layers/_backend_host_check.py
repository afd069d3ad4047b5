"""When may a FiniteCheck look at a count on the host, and how, on each backend.

Reading a device value from Python forces a host synchronisation, and inside compiled code
(XLA on TF, `jax.jit`, `torch.compile`) it is impossible or a graph break. This module
answers two questions for `FiniteCheck`:

- `is_concrete(tensor)`: is this an eager value whose count can be read right now?
- `reads_without_waiting(tensor)`: would reading it now cost no wait for the device?
- `call_on_host_if_positive(count, callback)`: inside traced JAX code, run `callback(count)`
  on the host only when `count > 0`, through `jax.lax.cond` + `jax.debug.callback`: with
  only finite values the callback never runs and nothing is copied to the host.

TensorFlow graphs and `torch.compile` get no host callback (XLA has none, and a graph break
per layer would defeat compilation); their counts are read at the end of the batch by
`xstable.callbacks.StabilityMonitor` (through the FiniteCheck reader it runs inside).
"""

import keras

__all__ = []


def is_concrete(tensor):
    """True when `tensor` holds an eager value that Python can read now."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    if backend == "jax":
        import jax

        return not isinstance(tensor, jax.core.Tracer)
    return False


def reads_without_waiting(tensor):
    """True when reading `tensor` on the host waits for no queued device work.

    Only eager torch on CPU, whose ops run synchronously in the calling thread: reading a
    scalar there costs under a microsecond. Elsewhere (GPU streams, JAX's asynchronous
    dispatch) a read would stall the host until the device caught up.
    """
    if keras.config.backend() != "torch":
        return False
    import torch

    return not torch.compiler.is_compiling() and tensor.device.type == "cpu"


def supports_host_callback():
    """True when traced code of this backend can call back into Python (JAX only)."""
    return keras.config.backend() == "jax"


def call_on_host_if_positive(count, callback):
    """In traced JAX code, runs `callback(count_as_numpy)` on the host iff `count > 0`."""
    import jax

    def on_host(value):
        callback(value)

    jax.lax.cond(
        count > 0,
        lambda c: jax.debug.callback(on_host, c),
        lambda c: None,
        count,
    )


def counter_value_or_none(variable):
    """The variable's value, or None while a JAX `fit` holds the state outside the variable.

    During `fit` the JAX trainer detaches variable values and keeps them in its own state;
    they are reattached at the end of the epoch.
    """
    if keras.config.backend() != "jax":
        return variable.value
    try:
        return variable.value
    except TypeError:
        # A detached JAX variable has neither a value nor an initializer to read.
        return None
