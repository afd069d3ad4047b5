"""What counting NaN/Inf after a layer costs in a TensorFlow graph (FiniteCheck's count).

A 256x512 relu layer (`relu(x @ W)`, W 512x512), compiled as one `tf.function`, without and
with XLA (`jit_compile`), returning the layer's output and:

- nothing (a constant 0);
- the exact count `sum(cast(!isfinite(h), float32))`, what FiniteCheck computed in TF graphs
  until 2026-12-03;
- `cond(isfinite(sum(h)), 0, exact count)`, what it computes now
  (`_count_nonfinite_after_probe`): a clean batch pays for the sum alone.

Microseconds per call, best of 7 blocks of 1000 calls (each block waits for its last
result), two measurements per variant, the lower kept. TensorFlow only:

    KERAS_BACKEND=tensorflow python benchmarks/probe_tf_count_forms.py
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ["KERAS_BACKEND"] = "tensorflow"  # print_header reads the versions through keras

import _harness  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _exact_count(h):
    return tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(h)), tf.float32))


def _count_after_probe(h):
    return tf.cond(
        tf.math.is_finite(tf.reduce_sum(h)),
        lambda: tf.zeros((), tf.float32),
        lambda: _exact_count(h),
    )


def _per_call_us(fn, x, calls=1000, blocks=7):
    fn(x)
    best = float("inf")
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            result = fn(x)
        result[1].numpy()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main():
    _harness.print_header("probe_tf_count_forms", "tensorflow only; relu(x @ W), 256x512")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(256, 512)).astype("float32"))
    w = tf.constant(rng.normal(size=(512, 512)).astype("float32") * 0.01)
    forms = {
        "layer alone": lambda h: tf.zeros((), tf.float32),
        "+ exact count": _exact_count,
        "+ cond(isfinite(sum), 0, exact count)": _count_after_probe,
    }
    for jit_compile in (False, True):
        print(f"  jit_compile={jit_compile}:")
        base = None
        for name, form in forms.items():

            def layer(x, form=form):
                h = tf.nn.relu(x @ w)
                return h, form(h)

            fn = tf.function(layer, jit_compile=jit_compile, autograph=False)
            us = min(_per_call_us(fn, x), _per_call_us(fn, x))
            base = us if base is None else base
            print(f"    {name:40s} {us:8.1f} us  ({us - base:+6.1f})")
    dirty = tf.tensor_scatter_nd_update(x, [[3, 7]], [np.nan])
    counted = tf.function(lambda h: _count_after_probe(h * 1.0), autograph=False)
    print(f"  cond form counts: clean {float(counted(x))}, one NaN {float(counted(dirty))}")


if __name__ == "__main__":
    main()
