"""What each way of counting NaN/Inf costs in jitted JAX code on CPU (FiniteCheck's count).

    python benchmarks/probe_jax_count_forms.py

One 256x512 float32 activation (a 3x512 MLP layer's output at batch 256), each form jitted
alone, microseconds per call (best of 5 blocks of 2000 dispatches, then one wait):

- `sum(x)`: FiniteCheck's probe: finite exactly when every entry is (or a false alarm when a
  sum of huge finite values overflows);
- the exact count, `sum(cast(!isfinite(x), float32))`, which FiniteCheck used in compiled
  code until 2026-12-03;
- `lax.cond(isfinite(sum(x)), 0, exact count)`: what it uses now (`_count_nonfinite_after_probe`);
- for context: `sum(x * 0)` (the half-precision probe), `max(|x|)` and an almost empty call.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ["KERAS_BACKEND"] = "jax"  # print_header reads the versions through keras

import _harness  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _exact_count(x):
    return jnp.sum((~jnp.isfinite(x)).astype(jnp.float32))


def _count_after_probe(x):
    return jax.lax.cond(
        jnp.isfinite(jnp.sum(x)), lambda x: jnp.zeros((), jnp.float32), _exact_count, x
    )


FORMS = {
    "probe sum(x)": lambda x: jnp.sum(x),
    "exact count sum(cast(!isfinite(x)))": _exact_count,
    "cond(isfinite(sum(x)), 0, exact count)": _count_after_probe,
    "sum(x * 0)": lambda x: jnp.sum(x * 0),
    "max(|x|)": lambda x: jnp.max(jnp.abs(x)),
    "x[0, 0] (dispatch alone)": lambda x: x[0, 0],
}


def per_call_us(fn, x, calls=2000, blocks=5):
    jax.block_until_ready(fn(x))
    best = float("inf")
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            result = fn(x)
        jax.block_until_ready(result)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main():
    _harness.print_header("probe_jax_count_forms", "jax only; 256x512 float32")
    clean = jnp.asarray(np.random.default_rng(0).normal(size=(256, 512)).astype("float32"))
    dirty = clean.at[3, 7].set(jnp.nan)
    for name, form in FORMS.items():
        fn = jax.jit(form)
        print(
            f"  {name:42s} clean {per_call_us(fn, clean):7.1f} us   "
            f"one NaN {per_call_us(fn, dirty):7.1f} us"
        )
    counted = jax.jit(_count_after_probe)
    print(f"  cond form counts: clean {float(counted(clean))}, one NaN {float(counted(dirty))}")


if __name__ == "__main__":
    main()
