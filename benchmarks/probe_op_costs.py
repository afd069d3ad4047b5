"""Microsecond probes behind numbers quoted in docs: single ops and single layer calls.

Not a paired benchmark (no baseline model, no A/A control): each probe times one callable in a
loop after a warm-up and prints microseconds per call. Quoted in docs/finite-check.md,
docs/auto-scale.md and docs/safe-losses.md; absolute times depend on the machine, the ratios
between lines are what the docs use. One process per backend, one thread:

    KERAS_BACKEND=torch python benchmarks/probe_op_costs.py     # count forms, FiniteCheck call,
                                                               # keras.ops vs operators and
                                                               # vs torch (_kernel_ops.py)
    KERAS_BACKEND=tensorflow python benchmarks/probe_op_costs.py  # counter reset
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
    probe_form = jitted(lambda: ops.sum(ops.stop_gradient(x) * 0.0))
    print(f"  probe sum(x * 0) (0 or NaN):       {per_call_us(probe_form):8.1f} us")
    sum_form = jitted(lambda: ops.sum(ops.stop_gradient(x)))
    print(f"  probe sum(x) (float32 FiniteCheck): {per_call_us(sum_form):7.1f} us")
    if backend == "torch":
        grad_x = x.clone().requires_grad_(True)
        checks = {"raise": FiniteCheck("raise"), "count": FiniteCheck("count")}
        print("one FiniteCheck layer call on a 256x512 input that requires grad (eager torch):")
        for policy, layer in checks.items():
            print(f"  FiniteCheck({policy!r})(x):          {per_call_us(lambda layer=layer: layer(grad_x)):8.1f} us")
        for policy, layer in checks.items():
            # The same call through Keras's full Layer.__call__ (what FiniteCheck's eager fast
            # path skips for a clean input).
            full_call = lambda layer=layer: keras.layers.Layer.__call__(layer, grad_x)  # noqa: E731
            print(f"  ... via keras Layer.__call__ ({policy!r}): {per_call_us(full_call):6.1f} us")
        identity = keras.layers.Identity()
        print(f"  Identity()(x), Keras's layer-call cost: {per_call_us(lambda: identity(grad_x)):5.1f} us")
    print("resetting a scalar counter variable (eager; what train_on_batch does per metric):")
    counter = keras.Variable(0.0, dtype="float32", trainable=False)  # as counters are
    cached_zero = ops.zeros((), dtype="float32")
    print(f"  assign(ops.zeros(())):             {per_call_us(lambda: counter.assign(ops.zeros((), dtype='float32'))):8.1f} us")
    print(f"  assign(a zero created once):       {per_call_us(lambda: counter.assign(cached_zero)):8.1f} us")
    print(f"  float(counter.value), a read:      {per_call_us(lambda: float(counter.value)):8.1f} us")
    p = ops.convert_to_tensor(np.random.default_rng(1).random((512, 10)).astype("float32"))
    labels = ops.convert_to_tensor(np.random.default_rng(2).integers(0, 10, 512).astype("int32"))
    mask = p > 0.5
    print("single calls on a 512x10 float32 tensor, keras.ops vs Python operators (eager):")
    for name, fn in (
        ("ops.greater_equal(p, 0.0)", lambda: ops.greater_equal(p, 0.0)),
        ("p >= 0.0", lambda: p >= 0.0),
        ("ops.where(mask, p, 0 * p)", lambda: ops.where(mask, p, p * 0.0)),
        ("ops.size(p)", lambda: ops.convert_to_tensor(ops.size(p))),
        ("ops.divide_no_nan(p, 3.0)", lambda: ops.divide_no_nan(p, 3.0)),
        ("p / 3.0", lambda: p / 3.0),
        ("p + p", lambda: p + p),
        ("ops.one_hot(labels, 10)", lambda: ops.one_hot(labels, 10, dtype="float32")),
        (
            "cast(equal(labels[:, None], arange))",
            lambda: ops.cast(
                ops.equal(ops.expand_dims(labels, -1), ops.arange(10, dtype="int32")), "float32"
            ),
        ),
    ):
        print(f"  {name:36s} {per_call_us(fn):8.1f} us")
    if backend == "torch":
        import torch

        below = p < 0.5
        print("keras.ops against the torch function it calls (xstable/losses/_kernel_ops.py):")
        for name, fn in (
            ("ops.maximum(p, 1e-38)", lambda: ops.maximum(p, 1e-38)),
            ("torch.clamp_min(p, 1e-38)", lambda: torch.clamp_min(p, 1e-38)),
            ("ops.clip(p, 0.0, 1.0)", lambda: ops.clip(p, 0.0, 1.0)),
            ("torch.clamp(p, 0.0, 1.0)", lambda: torch.clamp(p, 0.0, 1.0)),
            ("ops.sum(p, axis=-1, keepdims=True)", lambda: ops.sum(p, axis=-1, keepdims=True)),
            ("torch.sum(p, dim=-1, keepdim=True)", lambda: torch.sum(p, dim=-1, keepdim=True)),
            ("ops.where(below, 1.0, p)", lambda: ops.where(below, 1.0, p)),
            ("torch.where(below, 1.0, p)", lambda: torch.where(below, 1.0, p)),
            ("ops.log(p)", lambda: ops.log(p)),
            ("torch.log(p)", lambda: torch.log(p)),
            ("ops.isfinite(p)", lambda: ops.isfinite(p)),
            ("torch.isfinite(p)", lambda: torch.isfinite(p)),
            ("p * 0.0 == 0.0 (_kernel_ops.isfinite)", lambda: p * 0.0 == 0.0),
        ):
            print(f"  {name:36s} {per_call_us(fn):8.1f} us")
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
