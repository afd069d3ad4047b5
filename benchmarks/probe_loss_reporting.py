"""What reporting a safe loss's counter to the model costs in `train_on_batch` (docs/safe-losses.md).

Three models with the same weights and data, timed in paired rounds in one process: Keras's
BinaryCrossentropy, SafeBinaryCrossentropy with its counter reported to the model (the default),
and SafeBinaryCrossentropy with reporting switched off (ModelReporter.report patched to do
nothing while that model builds). `train_on_batch` resets every metric on every call, so the
reported counter costs one eager variable assign per call; `fit` resets once per epoch.

    KERAS_BACKEND=tensorflow python benchmarks/probe_loss_reporting.py --threads 1 --rounds 25
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

_harness.limit_threads_from_argv()

import argparse  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable import _model_reporting  # noqa: E402
from xstable.losses import SafeBinaryCrossentropy  # noqa: E402


def _model():
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _harness.add_arguments(parser, rounds=25)
    args = parser.parse_args()
    _harness.print_header("probe_loss_reporting")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8 * 512, 64)).astype("float32")
    y = (rng.random((len(x), 1)) > 0.5).astype("float32")
    weights = _model().get_weights()
    variants = []
    for name, loss, report in (
        ("keras BCE", keras.losses.BinaryCrossentropy(), True),
        ("safe BCE, counter reported", SafeBinaryCrossentropy(), True),
        ("safe BCE, reporting off", SafeBinaryCrossentropy(), False),
    ):
        model = _model()
        model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
        original = _model_reporting.ModelReporter.report
        if not report:
            _model_reporting.ModelReporter.report = lambda self: None
        try:
            model.train_on_batch(x[:512], y[:512])  # builds the model (and reports, or not)
        finally:
            _model_reporting.ModelReporter.report = original
        print(f"{name}: model.metrics = {[m.name for m in model.metrics]}")
        variants.append(_harness.Variant(name, _harness.train_step_runner(model, x, y, 512)))
    measurement = _harness.measure(
        "reported vs unreported loss counter, MLP 64-256-256-1, batch 512, train_on_batch",
        variants,
        baseline="keras BCE",
        rounds=args.rounds,
        block_seconds=args.block_seconds,
    )
    _harness.print_measurement(measurement)


if __name__ == "__main__":
    main()
