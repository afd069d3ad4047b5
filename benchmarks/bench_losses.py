"""Safe losses vs their Keras twins: cost in a training step, and what each computes.

Usage: KERAS_BACKEND=<jax|torch|tensorflow> python benchmarks/bench_losses.py [--quick]

Part 1 prints, for saturated sigmoid outputs, the per-sample loss and its gradient with
respect to the logit behind the sigmoid, for keras.losses.BinaryCrossentropy and for
xstable's SafeBinaryCrossentropy, computed the way `fit` computes them on this backend
(traced: tf.function / jax.jit; torch eager). Run it on each backend and compare.

Part 2 times a training step (`train_on_batch`, compiled as `fit` would be) with the Keras
loss and with the safe loss, interleaved in one process, and prints the median ratio.
"""

import statistics
import sys
import time

import keras
import numpy as np

from xstable.losses import (
    SafeBinaryCrossentropy,
    SafeCategoricalCrossentropy,
    SafeLoss,
)

LOGITS = np.array([[-30.0], [-17.0], [0.0], [12.0], [16.2], [20.0]], np.float32)
TARGETS = np.array([[1.0], [1.0], [1.0], [0.0], [0.0], [0.0]], np.float32)


def _loss_and_logit_gradient(loss):
    """Per-sample loss and d loss / d logit, through keras.activations.sigmoid, traced."""
    backend = keras.config.backend()
    y = TARGETS

    def per_sample(z):
        return loss(y, keras.activations.sigmoid(z))

    if backend == "jax":
        import jax

        def total(z):
            values = per_sample(z)
            return jax.numpy.sum(values), values

        (_, values), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(LOGITS)
        return np.asarray(values), np.asarray(grad)
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(z):
            with tf.GradientTape() as tape:
                tape.watch(z)
                values = per_sample(z)
                total = tf.reduce_sum(values)
            return values, tape.gradient(total, z)

        values, grad = step(tf.constant(LOGITS))
        return values.numpy(), grad.numpy()
    import torch

    z = torch.tensor(LOGITS, requires_grad=True)
    values = per_sample(z)
    (grad,) = torch.autograd.grad(values.sum(), z)
    return values.detach().numpy(), grad.numpy()


def report_saturation():
    print(f"# Saturated sigmoid outputs on {keras.config.backend()} (traced, as in fit)")
    print("logit, target, keras loss, keras dL/dz, safe loss, safe dL/dz")
    keras_values, keras_grad = _loss_and_logit_gradient(
        keras.losses.BinaryCrossentropy(reduction=None)
    )
    safe_values, safe_grad = _loss_and_logit_gradient(SafeBinaryCrossentropy(reduction=None))
    for i in range(len(LOGITS)):
        print(
            f"{LOGITS[i, 0]:6.1f}, {TARGETS[i, 0]:.0f}, {keras_values.ravel()[i]:.7g}, "
            f"{keras_grad.ravel()[i]:.7g}, {safe_values.ravel()[i]:.7g}, "
            f"{safe_grad.ravel()[i]:.7g}"
        )


def _model(units, activation, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(units, activation=activation),
        ]
    )


def _time_steps(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    # Make sure queued work (JAX async dispatch) is finished before stopping the clock.
    keras.ops.convert_to_numpy(model.layers[-1].kernel.value)
    return time.perf_counter() - start


def compare(name, keras_loss, safe_loss, units, activation, y, repeats, steps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 64)).astype("float32")
    jit = keras.config.backend() != "torch"
    models = {}
    for label, loss in (("keras", keras_loss), ("safe", safe_loss)):
        model = _model(units, activation, seed=1)
        model.compile(optimizer="adam", loss=loss, jit_compile=jit)
        model.train_on_batch(x, y)  # compile / warm up
        _time_steps(model, x, y, 3)
        models[label] = model
    ratios = []
    for _ in range(repeats):
        t_keras = _time_steps(models["keras"], x, y, steps)
        t_safe = _time_steps(models["safe"], x, y, steps)
        ratios.append(t_safe / t_keras)
    print(
        f"{name}: safe / keras step time, median of {repeats} interleaved runs of {steps} "
        f"steps: {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})"
    )


def main():
    quick = "--quick" in sys.argv
    repeats, steps = (3, 5) if quick else (9, 20)
    report_saturation()
    print(f"\n# Training-step cost on {keras.config.backend()} (batch 512, MLP 64-256-256-k)")
    rng = np.random.default_rng(1)
    y_binary = (rng.random((512, 1)) > 0.5).astype("float32")
    y_onehot = np.eye(10, dtype="float32")[rng.integers(0, 10, 512)]
    y_regression = rng.normal(size=(512, 1)).astype("float32")
    compare(
        "binary_crossentropy",
        keras.losses.BinaryCrossentropy(),
        SafeBinaryCrossentropy(),
        1,
        "sigmoid",
        y_binary,
        repeats,
        steps,
    )
    compare(
        "categorical_crossentropy",
        keras.losses.CategoricalCrossentropy(),
        SafeCategoricalCrossentropy(),
        10,
        "softmax",
        y_onehot,
        repeats,
        steps,
    )
    compare(
        "mse vs SafeLoss(mse)",
        keras.losses.MeanSquaredError(),
        SafeLoss("mse"),
        1,
        None,
        y_regression,
        repeats,
        steps,
    )


if __name__ == "__main__":
    main()
