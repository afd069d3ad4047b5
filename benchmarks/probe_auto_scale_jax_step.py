"""AutoScale's robust and auto transforms in a raw JAX training step, without Keras.

`bench_auto_scale.py` finds AutoScale("auto") ~11 % dearer than "robust" in a JAX
`train_on_batch` step, and XLA's cost analysis (`probe_auto_scale_xla_cost.py`) finds only the
batch's `log1p` extra. This probe rebuilds the step in plain JAX (the same formulas as
`AutoScale.call`: NaN imputation, centre and scale, signed log1p where the mask says so, clip;
then a 20 -> 64 -> 64 -> 1 MLP, MSE, a gradient step; jitted with the parameters donated, as
Keras's JAX trainer does), so Keras and xstable's Python code are out of the picture. Two
copies of each variant, interleaved; median microseconds per step. Three reformulations of
"auto" are timed too (the last, without NaN imputation, is not what AutoScale does: it shows
what the imputation costs next to the log). JAX only:

    python benchmarks/probe_auto_scale_jax_step.py
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["KERAS_BACKEND"] = "jax"  # print_header reads the versions through keras

import _harness  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

FEATURES, BATCH, LIMIT = 20, 256, 5.0


def _transforms():
    center = jnp.ones(FEATURES)
    inv_scale = jnp.full(FEATURES, 0.5)
    log_inv_scale = jnp.full(FEATURES, 0.3)
    log_mask = jnp.ones(FEATURES)  # every feature log-transformed, as in the benchmark

    def robust(x):
        x = jnp.where(jnp.isnan(x), center, x)
        return jnp.clip((x - center) * inv_scale, -LIMIT, LIMIT)

    def auto(x):
        x = jnp.where(jnp.isnan(x), center, x)
        scaled = (x - center) * inv_scale
        logged = jnp.sign(scaled) * jnp.log1p(jnp.abs(scaled)) * log_inv_scale
        return jnp.clip(jnp.where(log_mask != 0, logged, scaled), -LIMIT, LIMIT)

    def auto_log(x):  # log(1 + |s|) instead of log1p
        x = jnp.where(jnp.isnan(x), center, x)
        scaled = (x - center) * inv_scale
        logged = jnp.sign(scaled) * jnp.log(1.0 + jnp.abs(scaled)) * log_inv_scale
        return jnp.clip(jnp.where(log_mask != 0, logged, scaled), -LIMIT, LIMIT)

    def auto_imputed_after(x):  # the NaN rows get the transformed centre at the end
        def transform(values):
            scaled = (values - center) * inv_scale
            logged = jnp.sign(scaled) * jnp.log1p(jnp.abs(scaled)) * log_inv_scale
            return jnp.clip(jnp.where(log_mask != 0, logged, scaled), -LIMIT, LIMIT)

        return jnp.where(jnp.isnan(x), transform(center[None, :]), transform(x))

    def auto_without_imputation(x):  # not AutoScale's behaviour: NaN would pass through
        scaled = (x - center) * inv_scale
        logged = jnp.sign(scaled) * jnp.log1p(jnp.abs(scaled)) * log_inv_scale
        return jnp.clip(jnp.where(log_mask != 0, logged, scaled), -LIMIT, LIMIT)

    return {
        "robust": robust,
        "auto": auto,
        "auto, log(1+|s|)": auto_log,
        "auto, imputed after": auto_imputed_after,
        "auto, no imputation": auto_without_imputation,
    }


def _step(transform):
    def step(weights, x, y):
        def loss(weights):
            hidden = transform(x)
            for index, w in enumerate(weights):
                hidden = hidden @ w
                if index < len(weights) - 1:
                    hidden = jax.nn.relu(hidden)
            return jnp.mean((hidden - y) ** 2)

        value, grads = jax.value_and_grad(loss)(weights)
        return value, [w - 1e-3 * g for w, g in zip(weights, grads, strict=True)]

    return jax.jit(step, donate_argnums=0)


def _weights():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    shapes = [(FEATURES, 64), (64, 64), (64, 1)]
    return [0.1 * jax.random.normal(k, s) for k, s in zip(keys, shapes, strict=True)]


def main():
    _harness.print_header("probe_auto_scale_jax_step", "jax only, no Keras in the step")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.lognormal(0, 2, size=(BATCH, FEATURES)).astype("float32"))
    y = jnp.asarray(rng.normal(size=(BATCH, 1)).astype("float32"))
    steps = {}
    for name, transform in _transforms().items():
        for copy in ("", " (copy)"):
            steps[name + copy] = _step(transform)
    state = {name: _weights() for name in steps}
    for name, step in steps.items():
        for _ in range(20):
            _, state[name] = step(state[name], x, y)
    times = {name: [] for name in steps}
    for _ in range(15):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(300):
                value, state[name] = step(state[name], x, y)
            float(value)
            times[name].append((time.perf_counter() - start) / 300 * 1e6)
    for name, values in times.items():
        print(f"  {name:30s} {statistics.median(values):7.1f} us per step")


if __name__ == "__main__":
    main()
