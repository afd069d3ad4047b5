"""XLA's own cost of the JAX training step with AutoScale("robust") and AutoScale("auto").

`bench_auto_scale.py` times the steps; this probe asks XLA what each compiled step computes,
which no machine noise can change: flops, transcendental functions and bytes accessed of the
whole `train_step` (forward, backward, Adam) of the benchmark's MLP (20 -> 64 -> 64 -> 1,
batch 256), from `jax.jit(...).lower(...).compile().cost_analysis()`; and which of the step's
fusions XLA CPU splits into parallel tasks (the `outer_dimension_partitions` its
ParallelTaskAssigner writes into the compiled HLO), with the cost-model inputs of the scaling
layer's own fusion: XLA calls an elementwise fusion compute-bound when its flops exceed its
bytes accessed, prices it at ~10 cycles per byte and splits it into up to one task per core
above 100,000 cycles. JAX only:

    KERAS_BACKEND=jax python benchmarks/probe_auto_scale_xla_cost.py
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["KERAS_BACKEND"] = "jax"

import _harness  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from xstable.layers import AutoScale  # noqa: E402

FEATURES, BATCH = 20, 256


def _data():
    # The data of bench_auto_scale.py: lognormal, five features a million times larger.
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 2, size=(8 * BATCH, FEATURES)).astype("float32")
    x[:, :5] *= 1e6
    return x, rng.normal(size=(len(x), 1)).astype("float32")


def _step_cost(first_layer, x, y):
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            first_layer,
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.train_on_batch(x[:BATCH], y[:BATCH])  # builds the optimizer and metrics
    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    )
    batch = (jax.numpy.asarray(x[:BATCH]), jax.numpy.asarray(y[:BATCH]))
    compiled = jax.jit(model.train_step).lower(state, batch).compile()
    return _cost(compiled), _split_fusions(compiled)


def _cost(compiled):
    cost = compiled.cost_analysis()
    return cost[0] if isinstance(cost, list) else cost


def _split_fusions(compiled):
    """Names of the instructions XLA CPU runs as several parallel tasks."""
    split = re.compile(r'^\s*(?:ROOT )?%?([\w.-]+) = .*"outer_dimension_partitions":\["')
    return [m.group(1) for line in compiled.as_text().splitlines() if (m := split.match(line))]


def _layer_cost(layer, x):
    """The scaling layer alone, its weights as arguments: one elementwise fusion."""
    weights = [v.value for v in layer.non_trainable_variables]
    call = jax.jit(lambda weights, x: layer.stateless_call([], weights, x)[0])
    compiled = call.lower(weights, jax.numpy.asarray(x[:BATCH])).compile()
    return _cost(compiled), _split_fusions(compiled)


def main():
    _harness.print_header("probe_auto_scale_xla_cost")
    x, y = _data()
    normalization = keras.layers.Normalization()
    normalization.adapt(x)
    layers = {"Normalization": normalization}
    for method in ("robust", "auto"):
        layer = AutoScale(method=method)
        layer.adapt(x)
        layers[f"AutoScale({method})"] = layer
    chosen = layers["AutoScale(auto)"].feature_methods
    print(f"AutoScale('auto') chose: {chosen.count('log+robust')} of {len(chosen)} features "
          "log+robust")
    print(f"{'first layer':24s} {'flops':>12s} {'transcendentals':>16s} {'bytes accessed':>15s}")
    splits = {}
    for name, layer in layers.items():
        cost, splits[name] = _step_cost(layer, x, y)
        print(f"{name:24s} {cost.get('flops', float('nan')):12.0f} "
              f"{cost.get('transcendentals', float('nan')):16.0f} "
              f"{cost.get('bytes accessed', float('nan')):15.0f}")
    print(f"\nfusions of the train step split into parallel tasks ({os.cpu_count()} CPUs):")
    for name, names in splits.items():
        print(f"  {name:24s} {len(names)} {names}")
    print(f"\nthe layer alone on a batch of {BATCH} x {FEATURES} values:")
    print(f"{'layer':24s} {'flops/value':>11s} {'bytes':>7s} {'flops/bytes':>11s}  split")
    for name, layer in layers.items():
        cost, names = _layer_cost(layer, x)
        flops, size = cost.get("flops", 0.0), cost.get("bytes accessed", 1.0)
        print(f"{name:24s} {flops / (BATCH * FEATURES):11.2f} {size:7.0f} {flops / size:11.2f}  "
              f"{names or 'no'}")


if __name__ == "__main__":
    main()
