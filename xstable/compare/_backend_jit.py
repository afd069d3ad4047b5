"""Compiling a pure function on the active backend, for the per-layer inspection.

JAX runs `keras.ops` eagerly one primitive at a time, compiling each; a forward and backward
pass taken apart layer by layer then costs seconds. Under `jax.jit` it is one compilation.
TensorFlow and torch run such a function fast enough eagerly, and eager TensorFlow keeps the
logits of a sigmoid/softmax output for the loss exactly as its compiled train step does,
so they are left as they are.
"""

import keras

__all__ = ["jit_if_jax", "share_compiled_programs"]


def jit_if_jax(fn):
    """Returns `jax.jit(fn)` on the JAX backend and `fn` itself on the others.

    Args:
        fn: a pure function of arrays (no Keras state read outside a `keras.StatelessScope`).

    Returns:
        A callable with the signature of `fn`.
    """
    if keras.config.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def share_compiled_programs(directory):
    """On JAX, lets targets with the same compiled program reuse it within one comparison.

    Keras compiles a fresh `jax.jit` train step for every model, so two targets with the same
    architecture, optimizer and batch shapes (a scenario's failure and its fix, say) compile
    the same XLA program twice. JAX's compilation cache in `directory` (one per comparison)
    stores each program once; a later identical program is loaded instead of compiled. The
    program is the same, so are the results. A no-op on the other backends.

    Args:
        directory: str, folder for the cached programs (created if missing).
    """
    if keras.config.backend() != "jax":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", directory)
    # Cache every program: the train steps of small models compile in well under the
    # default threshold of one second, and they are what repeats.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
