"""Safe losses vs their Keras twins: cost in a training step, and what each computes.

Usage: KERAS_BACKEND=<jax|torch|tensorflow> python benchmarks/bench_losses.py
           [--rounds 15] [--block-seconds 0.3] [--threads N] [--skip-saturation]
           [--only bce,cce,scce,mse] [--against REV] [--copies K]
           [--reference-formula] [--reference-counter] [--loop train_on_batch|fit]

Part 1 prints, for saturated sigmoid outputs, the per-sample loss and its gradient with
respect to the logit behind the sigmoid, for keras.losses.BinaryCrossentropy and for
xstable's SafeBinaryCrossentropy, computed the way `fit` computes them on this backend
(traced: tf.function / jax.jit; torch eager). Run it on each backend and compare.

Part 2 times a training step (MLP 64-256-256-k, batch 512, Adam, `compile` defaults) with
each Keras loss and its safe twin, with `benchmarks/_harness.py`: paired rounds of
`train_on_batch` blocks (~0.3 s each, order random per round, same initial weights; with
`--loop fit`, the steps of one `fit` epoch per block, timed inside the epoch:
`_harness.fit_step_runner`), the ratio safe / Keras taken within each round; printed is the
median paired ratio with its IQR and whether the <= 1.05 target of issue #3 is met, missed or
undecided at the current load.
`--only` times some of the four losses; `--against REV` adds the safe loss as it was at git
revision REV (`_xstable_at_revision.py`) as a fourth variant, so a change is timed side by side
with its predecessor in the same rounds. `--reference-formula` adds, for the cross-entropies,
Keras's torch/JAX formula on the probabilities (`ProbabilityFormulaReference`, no target) and
prints the safe loss against it. `--reference-counter` adds the Keras loss with one idle
`LossEventCount` metric compiled in (no target): each safe loss reports one counter in the
logs, and in `train_on_batch` Keras resets, reads and returns every metric on every call, so
this row is the part of the ratio that reporting a counter costs. `--copies K` builds K
models per variant and times a different one each round (`_harness.Copies`), so one model's own
speed offset averages out.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402
import _xstable_at_revision  # noqa: E402

_harness.limit_threads_from_argv()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable import losses as xstable_losses  # noqa: E402
from xstable.losses import SafeBinaryCrossentropy  # noqa: E402

TARGET = 1.05
RUNNERS = {"train_on_batch": _harness.train_step_runner, "fit": _harness.fit_step_runner}
COUNTER_REFERENCE = "keras + 1 idle counter (reference)"
BATCH = 512
POOL_BATCHES = 4
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


def _model(units, activation):
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(units, activation=activation),
        ]
    )


def initial_weights(units, activation):
    """The weights every variant of one case starts from (seeded)."""
    keras.utils.set_random_seed(1)
    return _model(units, activation).get_weights()


def compiled_model(units, activation, weights, loss, metrics=None):
    """The benchmark MLP with `weights`, compiled with Adam(1e-3), `loss` and `metrics`."""
    model = _model(units, activation)
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=metrics)
    return model


def fresh_copy(loss):
    """A new loss object configured like `loss` (a safe loss reports to one model only)."""
    return loss.__class__.from_config(loss.get_config())


def compare(
    name, keras_loss, safe_losses, units, activation, y, args, references=(), with_counter=False
):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * POOL_BATCHES, 64)).astype("float32")
    weights = initial_weights(units, activation)
    variants = []
    keras_again = fresh_copy(keras_loss)
    labelled = [("keras", keras_loss, None), ("keras again (A/A control)", keras_again, None)]
    labelled += [(label, loss, TARGET) for label, loss in safe_losses]
    labelled += [(label, loss, None) for label, loss in references]
    if with_counter:
        keras_counted = fresh_copy(keras_loss)
        labelled.append((COUNTER_REFERENCE, keras_counted, None))
    for label, loss, target in labelled:
        def make_run(copy, loss=loss, counter=label == COUNTER_REFERENCE):
            # Each copy its own loss object: a safe loss reports its counters to one model.
            copy_loss = loss if copy == 0 else fresh_copy(loss)
            # The counter reference: a metric that computes nothing, so what it costs is what
            # Keras charges per reported metric (reset, result, log entry) in train_on_batch.
            metrics = [xstable_losses.LossEventCount()] if counter else None
            model = compiled_model(units, activation, weights, copy_loss, metrics)
            return RUNNERS[args.loop](model, x, y, BATCH)

        run = _harness.copies_of(make_run, args.copies)
        variants.append(_harness.Variant(label, run, target, control="control" in label))
    measurement = _harness.measure(
        name, variants, baseline="keras", rounds=args.rounds, block_seconds=args.block_seconds
    )
    _harness.print_measurement(measurement)
    if references:
        _harness.print_paired_ratio(measurement, safe_losses[-1][0], references[0][0])
    if with_counter:
        _harness.print_paired_ratio(measurement, safe_losses[-1][0], COUNTER_REFERENCE)
    if len(safe_losses) == 2:
        _harness.print_paired_ratio(measurement, safe_losses[1][0], safe_losses[0][0])


class ProbabilityFormulaReference(keras.losses.Loss):
    """Keras's torch/JAX cross-entropy on probabilities, in `keras.ops`, on any backend.

    `clip(p, 1e-7, 1 - 1e-7)` after normalizing, then `-sum(t * log p)` (BCE: the two-term
    form): what Keras computes on torch and JAX, where it cannot look behind the softmax or
    sigmoid. On TF it times what any loss defined on the probabilities costs against Keras's
    twin, which swaps in the fused kernel on the logits behind the activation: the part of
    the safe loss's ratio that is the formula's domain, not its safety.
    """

    def __init__(self, kind):
        super().__init__(name=f"probability_formula_{kind}")
        self.kind = kind

    def call(self, y_true, y_pred):
        from keras import ops

        eps = 1e-7
        if self.kind == "bce":
            p = ops.clip(y_pred, eps, 1.0 - eps)
            terms = y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p)
            return -ops.mean(terms, axis=-1)
        if self.kind == "scce":
            y_true = ops.one_hot(ops.cast(y_true, "int32"), y_pred.shape[-1])
        p = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
        p = ops.clip(p, eps, 1.0 - eps)
        return -ops.sum(y_true * ops.log(p), axis=-1)

    def get_config(self):
        return {"kind": self.kind}


def _cases():
    """`{key: (title, keras loss, safe class name, safe args, units, activation, target)}`."""
    rng = np.random.default_rng(1)
    rows = BATCH * POOL_BATCHES
    y_binary = (rng.random((rows, 1)) > 0.5).astype("float32")
    labels = rng.integers(0, 10, rows)
    y_onehot = np.eye(10, dtype="float32")[labels]
    y_sparse = labels.astype("int32")
    y_regression = rng.normal(size=(rows, 1)).astype("float32")
    return {
        "bce": (
            "SafeBinaryCrossentropy / BinaryCrossentropy (sigmoid output)",
            keras.losses.BinaryCrossentropy(),
            "SafeBinaryCrossentropy", (), 1, "sigmoid", y_binary,
        ),
        "cce": (
            "SafeCategoricalCrossentropy / CategoricalCrossentropy (softmax, 10 classes)",
            keras.losses.CategoricalCrossentropy(),
            "SafeCategoricalCrossentropy", (), 10, "softmax", y_onehot,
        ),
        "scce": (
            "SafeSparseCategoricalCrossentropy / SparseCategoricalCrossentropy (softmax, 10)",
            keras.losses.SparseCategoricalCrossentropy(),
            "SafeSparseCategoricalCrossentropy", (), 10, "softmax", y_sparse,
        ),
        "mse": (
            'SafeLoss("mse") / "mse"',
            keras.losses.MeanSquaredError(),
            "SafeLoss", ("mse",), 1, None, y_regression,
        ),
    }


def _selected(only, cases):
    if only is None:
        return list(cases)
    keys = [key.strip() for key in only.split(",") if key.strip()]
    unknown = [key for key in keys if key not in cases]
    if unknown or not keys:
        raise SystemExit(
            f"--only must list some of {', '.join(cases)} (comma-separated). "
            f"Received: --only {only!r}"
        )
    return keys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _harness.add_arguments(parser)
    _harness.add_copies_argument(parser)
    parser.add_argument("--skip-saturation", action="store_true")
    parser.add_argument(
        "--reference-formula",
        action="store_true",
        help="also time Keras's torch/JAX probability-space formula (clip 1e-7, log) as a "
        "reference loss, and the safe loss against it",
    )
    parser.add_argument(
        "--reference-counter",
        action="store_true",
        help="also time the Keras loss with one idle LossEventCount metric compiled in: what "
        "reporting one counter (each safe loss reports one) costs in train_on_batch",
    )
    parser.add_argument(
        "--only", default=None, help="comma-separated subset of bce,cce,scce,mse (default: all)"
    )
    parser.add_argument(
        "--loop",
        choices=sorted(RUNNERS),
        default="train_on_batch",
        help="how the steps run: train_on_batch calls (default; Keras resets, reads and "
        "returns every metric per call) or the steps of one fit epoch per block (metrics "
        "reset once per epoch; fit's setup outside the timing: _harness.fit_step_runner)",
    )
    _xstable_at_revision.add_against_argument(parser, "each safe loss")
    args = parser.parse_args()
    cases = _cases()
    keys = _selected(args.only, cases)
    before = _xstable_at_revision.import_against(args.against)
    _harness.print_header(
        "bench_losses", "" if before is None else f"against {before.__name__}"
    )
    if not args.skip_saturation:
        report_saturation()
    print(f"\n# Training-step cost (MLP 64-256-256-k, batch {BATCH}, Adam, {args.loop})")
    for key in keys:
        title, keras_loss, class_name, loss_args, units, activation, y = cases[key]
        safe_losses = []
        if before is not None:
            old_class = getattr(before.losses, class_name)
            safe_losses.append((f"safe at {args.against}", old_class(*loss_args)))
        safe_losses.append(("safe", getattr(xstable_losses, class_name)(*loss_args)))
        references = []
        if args.reference_formula and key != "mse":
            references.append(("probability formula (reference)", ProbabilityFormulaReference(key)))
        compare(
            title, keras_loss, safe_losses, units, activation, y, args, references,
            with_counter=args.reference_counter,
        )


if __name__ == "__main__":
    main()
