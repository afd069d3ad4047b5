"""Microsecond probes behind numbers quoted in docs: single ops and single layer calls.

Not a paired benchmark (no baseline model, no A/A control): each probe times one callable in a
loop after a warm-up and prints microseconds per call. Quoted in docs/finite-check.md and
docs/auto-scale.md; absolute times depend on the machine, the ratios between lines are what the
docs use. One process per backend, one thread:

    KERAS_BACKEND=torch python benchmarks/probe_op_costs.py     # count forms, FiniteCheck call
    KERAS_BACKEND=jax python benchmarks/probe_op_costs.py       # also AutoScale robust vs auto
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

_harness.limit_threads_from_argv(["--threads", "1"])

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from xstable.layers import AutoScale, FiniteCheck  # noqa: E402


def per_call_us(fn, calls=1000, warmup=50):
    for _ in range(warmup):
        result = fn()
    keras.ops.convert_to_numpy(keras.tree.flatten(result)[0])
    start = time.perf_counter()
    for _ in range(calls):
        result = fn()
    keras.ops.convert_to_numpy(keras.tree.flatten(result)[0])  # JAX dispatches asynchronously
    return (time.perf_counter() - start) / calls * 1e6


def jitted(fn):
    if keras.config.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def main():
    backend = keras.config.backend()
    _harness.print_header("probe_op_costs")
    x = ops.convert_to_tensor(np.random.default_rng(0).normal(size=(256, 512)).astype("float32"))
    print("non-finite count of a 256x512 float32 tensor, through keras.ops:")
    isfinite_form = jitted(lambda: ops.sum(ops.cast(ops.logical_not(ops.isfinite(x)), "float32")))
    float_form = jitted(lambda: ops.sum(ops.nan_to_num(ops.stop_gradient(x) * 0.0, nan=1.0)))
    print(f"  sum(not isfinite(x)):              {per_call_us(isfinite_form):8.1f} us")
    print(f"  sum(nan_to_num(x * 0, nan=1)):     {per_call_us(float_form):8.1f} us")
    print(f"  sum(x), for scale:                 {per_call_us(jitted(lambda: ops.sum(x))):8.1f} us")
    if backend == "torch":
        grad_x = x.clone().requires_grad_(True)
        checks = {"raise": FiniteCheck("raise"), "count": FiniteCheck("count")}
        print("one FiniteCheck layer call on a 256x512 input that requires grad (eager torch):")
        for policy, layer in checks.items():
            print(f"  FiniteCheck({policy!r})(x):          {per_call_us(lambda layer=layer: layer(grad_x)):8.1f} us")
        identity = keras.layers.Identity()
        print(f"  Identity()(x), Keras's layer-call cost: {per_call_us(lambda: identity(grad_x)):5.1f} us")
    rng = np.random.default_rng(0)
    features = rng.lognormal(0, 2, size=(2048, 20)).astype("float32")
    batch = ops.convert_to_tensor(features[:256])
    print("AutoScale layer alone on a 256x20 lognormal batch (jitted on JAX):")
    for method in ("robust", "auto"):
        layer = AutoScale(method=method)
        layer.adapt(features)
        print(f"  AutoScale({method!r}):                {per_call_us(jitted(lambda layer=layer: layer(batch))):8.1f} us")


if __name__ == "__main__":
    main()
