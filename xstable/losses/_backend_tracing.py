"""Whether code runs eagerly, and whether a variable update would persist.

The one place in `xstable.losses` that asks the backend directly: `keras.ops` cannot tell
eager from traced execution, and only eager code may read data on the host (the targets'
check, which skips the masking when every target is valid).
"""

import keras


def is_eager(x):
    """True when `x` holds concrete values that can be inspected on the host right now."""
    if keras.backend.is_keras_tensor(x):
        return False
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return False


def update_persists(variable, like):
    """True when `variable.assign(...)` made now, in the computation producing `like`, is kept.

    On JAX a traced train step is stateless: only variables passed in as state (the metrics
    the model tracks) get their updates back. A variable read as a concrete value while `like`
    is traced is not part of that state; assigning a tracer to it would leak.
    """
    if keras.config.backend() != "jax":
        return True
    import jax

    return isinstance(variable.value, jax.core.Tracer) or not isinstance(like, jax.core.Tracer)
