"""AutoScale's robust and auto transforms in a raw JAX training step, without Keras.

`bench_auto_scale.py` finds AutoScale("auto") ~11 % dearer than "robust" in a JAX
`train_on_batch` step, and XLA's cost analysis (`probe_auto_scale_xla_cost.py`) finds only the
batch's `log1p` extra. This probe rebuilds the step in plain JAX (the same formulas as
`AutoScale.call`: NaN imputation, centre and scale, signed log1p where the mask says so, clip;
then a 20 -> 64 -> 64 -> 1 MLP, MSE, a gradient step; jitted with the parameters donated, as
Keras's JAX trainer does), so Keras and xstable's Python code are out of the picture. Two
copies of each variant, interleaved; median microseconds per step. Five reformulations of
"auto" are timed too, two variants with `jax.lax.optimization_barrier`s meant to cut the
fusion in pieces (XLA CPU drops the barriers and fuses the transform whole all the same), and two variants that are not AutoScale's transform (without NaN
imputation, as `impute=None` computes it; without the sign): they do fewer than the 8.06
elementwise flops per value below which XLA CPU's cost model calls the transform's fusion
memory-bound and leaves it in one piece. Each line says whether XLA split the transform's
fusion into parallel tasks (`probe_auto_scale_xla_cost.py` explains the cost model).
`--one-cpu` pins the process to one CPU first (the split's tasks then queue behind each
other on the same core instead of waking a second one). JAX only:

    python benchmarks/probe_auto_scale_jax_step.py [--one-cpu]
"""

import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["KERAS_BACKEND"] = "jax"  # print_header reads the versions through keras

import _harness  # noqa: E402

_harness.limit_threads_from_argv()  # --one-cpu, before jax sizes its CPU client

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

FEATURES, BATCH, LIMIT = 20, 256, 5.0


def _layer_state():
    """The layer's state, passed into every jitted function as arguments the way Keras's JAX
    trainer passes variables: as closure constants XLA would fold the all-ones mask away."""
    return {
        "center": jnp.ones(FEATURES),
        "inv_scale": jnp.full(FEATURES, 0.5),
        "log_inv_scale": jnp.full(FEATURES, 0.3),
        "log_mask": jnp.ones(FEATURES),  # every feature log-transformed, as in the benchmark
    }


def _transforms():
    def robust(x, p):
        x = jnp.where(jnp.isnan(x), p["center"], x)
        return jnp.clip((x - p["center"]) * p["inv_scale"], -LIMIT, LIMIT)

    def signed_log(values, p):
        return jnp.sign(values) * jnp.log1p(jnp.abs(values)) * p["log_inv_scale"]

    def choose(p, logged, scaled):
        return jnp.clip(jnp.where(p["log_mask"] != 0, logged, scaled), -LIMIT, LIMIT)

    def auto(x, p):
        x = jnp.where(jnp.isnan(x), p["center"], x)
        scaled = (x - p["center"]) * p["inv_scale"]
        return choose(p, signed_log(scaled, p), scaled)

    def auto_log(x, p):  # log(1 + |s|) instead of log1p
        x = jnp.where(jnp.isnan(x), p["center"], x)
        scaled = (x - p["center"]) * p["inv_scale"]
        logged = jnp.sign(scaled) * jnp.log(1.0 + jnp.abs(scaled)) * p["log_inv_scale"]
        return choose(p, logged, scaled)

    def auto_imputed_after(x, p):  # the NaN rows get the transformed centre at the end
        def transform(values):
            scaled = (values - p["center"]) * p["inv_scale"]
            return choose(p, signed_log(scaled, p), scaled)

        return jnp.where(jnp.isnan(x), transform(p["center"][None, :]), transform(x))

    def auto_log_then_scale(x, p):  # the signed log on the raw value, then centre and scale
        x = jnp.where(jnp.isnan(x), p["center"], x)
        logged = jnp.sign(x) * jnp.log1p(jnp.abs(x))
        chosen = jnp.where(p["log_mask"] != 0, logged, x)
        return jnp.clip((chosen - p["center"]) * p["inv_scale"], -LIMIT, LIMIT)

    def auto_arcsinh(x, p):  # arcsinh as the signed log
        x = jnp.where(jnp.isnan(x), p["center"], x)
        scaled = (x - p["center"]) * p["inv_scale"]
        return choose(p, jnp.arcsinh(scaled) * p["log_inv_scale"], scaled)

    def auto_without_imputation(x, p):  # AutoScale(impute=None): NaN would pass through
        scaled = (x - p["center"]) * p["inv_scale"]
        return choose(p, signed_log(scaled, p), scaled)

    def auto_without_sign(x, p):  # not AutoScale's transform: loses the sign below the centre
        x = jnp.where(jnp.isnan(x), p["center"], x)
        scaled = (x - p["center"]) * p["inv_scale"]
        return choose(p, jnp.log1p(jnp.abs(scaled)) * p["log_inv_scale"], scaled)

    def auto_barrier(x, p):  # AutoScale's transform, an optimization barrier after scaling
        x = jnp.where(jnp.isnan(x), p["center"], x)
        scaled = jax.lax.optimization_barrier((x - p["center"]) * p["inv_scale"])
        return choose(p, signed_log(scaled, p), scaled)

    def auto_barriers(x, p):  # the same, and a second barrier after the signed log
        x = jnp.where(jnp.isnan(x), p["center"], x)
        scaled = jax.lax.optimization_barrier((x - p["center"]) * p["inv_scale"])
        logged = jax.lax.optimization_barrier(signed_log(scaled, p))
        return choose(p, logged, scaled)

    return {
        "robust": robust,
        "auto, barrier after scaling": auto_barrier,
        "auto, barriers after scaling and log": auto_barriers,
        "auto": auto,
        "auto, log(1+|s|)": auto_log,
        "auto, imputed after": auto_imputed_after,
        "auto, log then scale": auto_log_then_scale,
        "auto, arcsinh": auto_arcsinh,
        "auto, no imputation": auto_without_imputation,
        "auto, no sign": auto_without_sign,
    }


def _step(transform):
    def step(weights, x, y, layer_state):
        def loss(weights):
            hidden = transform(x, layer_state)
            for index, w in enumerate(weights):
                hidden = hidden @ w
                if index < len(weights) - 1:
                    hidden = jax.nn.relu(hidden)
            return jnp.mean((hidden - y) ** 2)

        value, grads = jax.value_and_grad(loss)(weights)
        return value, [w - 1e-3 * g for w, g in zip(weights, grads, strict=True)]

    return jax.jit(step, donate_argnums=0)


def _split(transform, x, layer_state):
    """Whether XLA CPU runs the transform's fusion as several parallel tasks, and flops/value."""
    compiled = jax.jit(transform).lower(x, layer_state).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    split = re.search(r'"outer_dimension_partitions":\["', compiled.as_text()) is not None
    return split, cost.get("flops", 0.0) / x.size


def _weights():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    shapes = [(FEATURES, 64), (64, 64), (64, 1)]
    return [0.1 * jax.random.normal(k, s) for k, s in zip(keys, shapes, strict=True)]


def main():
    _harness.print_header("probe_auto_scale_jax_step", "jax only, no Keras in the step")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.lognormal(0, 2, size=(BATCH, FEATURES)).astype("float32"))
    y = jnp.asarray(rng.normal(size=(BATCH, 1)).astype("float32"))
    layer_state = _layer_state()
    steps, splits = {}, {}
    for name, transform in _transforms().items():
        splits[name] = _split(transform, x, layer_state)
        for copy in ("", " (copy)"):
            steps[name + copy] = _step(transform)
    state = {name: _weights() for name in steps}
    for name, step in steps.items():
        for _ in range(20):
            _, state[name] = step(state[name], x, y, layer_state)
    times = {name: [] for name in steps}
    for _ in range(15):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(300):
                value, state[name] = step(state[name], x, y, layer_state)
            float(value)
            times[name].append((time.perf_counter() - start) / 300 * 1e6)
    print(f"  {'variant':30s} {'us/step':>7s}  {'flops/value':>11s}  transform split")
    for name, values in times.items():
        split, flops = splits[name.removesuffix(" (copy)")]
        print(f"  {name:30s} {statistics.median(values):7.1f}  {flops:11.2f}  "
              f"{'yes' if split else 'no'}")


if __name__ == "__main__":
    main()
