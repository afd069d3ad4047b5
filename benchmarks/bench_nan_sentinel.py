"""Cost of NaNSentinel in `fit`, next to plain Keras (no callback, and TerminateOnNaN).

Usage: KERAS_BACKEND=jax python benchmarks/bench_nan_sentinel.py [--repeats 5] [--steps 40]

MLP 256 -> 3x512 -> 1, batch 256, Adam, all-finite data. Every variant trains the same model
for the same number of steps in one process; variants are interleaved and each is timed
`--repeats` times (after one warm-up epoch each); the median time per epoch is reported as a
ratio to plain `fit` without callbacks.
"""

import argparse
import statistics
import tempfile
import time

import keras
import numpy as np

from xstable.callbacks import NaNSentinel


def build_model():
    model = keras.Sequential(
        [keras.Input((256,))]
        + [keras.layers.Dense(512, activation="relu") for _ in range(3)]
        + [keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    batch = 256
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * args.steps, 256)).astype("float32")
    y = rng.normal(size=(batch * args.steps, 1)).astype("float32")
    report_dir = tempfile.mkdtemp()
    variants = {
        "plain fit": lambda: [],
        "TerminateOnNaN (Keras)": lambda: [keras.callbacks.TerminateOnNaN()],
        "NaNSentinel device, every step": lambda: [NaNSentinel(report_dir, verbose=0)],
        "NaNSentinel host, every step": lambda: [
            NaNSentinel(report_dir, keep_last_good="host", verbose=0)
        ],
        "NaNSentinel host, every 20 steps": lambda: [
            NaNSentinel(report_dir, keep_last_good="host", snapshot_every=20, verbose=0)
        ],
    }
    models = {name: build_model() for name in variants}
    initial = models["plain fit"].get_weights()
    for name, model in models.items():
        model.set_weights(initial)
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=variants[name]())
    times = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, model in models.items():
            callbacks = variants[name]()
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks)
            times[name].append(time.perf_counter() - start)
    baseline = statistics.median(times["plain fit"])
    print(
        f"backend={keras.config.backend()} steps/epoch={args.steps} batch={batch} "
        f"repeats={args.repeats}"
    )
    print(f"{'variant':36s} {'median s/epoch':>15s} {'ratio to plain':>15s}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:36s} {median:15.4f} {median / baseline:15.3f}")


if __name__ == "__main__":
    main()
