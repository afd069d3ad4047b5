"""XLA's view of the benchmarks' JAX training steps: cost, and fusions split across CPUs.

For the models of `bench_optimizers.py` (every variant) and `bench_finite_check.py` (plain,
`raise`, `count`), this compiles Keras's `train_step` with `jax.jit` and prints what XLA says
it computes: flops, bytes accessed (from `cost_analysis()`), how many full copies of a
buffer it makes (`copy` instructions), and how many fusions XLA CPU's
ParallelTaskAssigner splits into parallel tasks (`outer_dimension_partitions` in the compiled
HLO; `probe_auto_scale_xla_cost.py` explains the cost model). No timing: these numbers do not
move with machine noise, so they show structural differences the benchmarks' ratios cannot
resolve (e.g. a gradient written out in full where Keras fuses it into the update). JAX only:

    python benchmarks/probe_jax_step_fusions.py
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["KERAS_BACKEND"] = "jax"

import _harness  # noqa: E402
import bench_finite_check  # noqa: E402
import bench_optimizers  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from xstable.layers import insert_finite_checks  # noqa: E402

_COPY = re.compile(r"= \S+ copy\(")
_SPLIT = re.compile(r'^\s*(?:ROOT )?%?([\w.-]+) = .*"outer_dimension_partitions":\["')


def _compiled_step(model, x, y):
    model.train_on_batch(x, y)  # builds the optimizer and the metrics
    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    )
    batch = (jax.numpy.asarray(x), jax.numpy.asarray(y))
    # Donated, as Keras's JAX trainer jits it: outputs may then reuse the state's buffers.
    return jax.jit(model.train_step, donate_argnums=0).lower(state, batch).compile()


def _row(name, compiled):
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    lines = compiled.as_text().splitlines()
    split = [m.group(1) for line in lines if (m := _SPLIT.match(line))]
    copies = sum(1 for line in lines if _COPY.search(line))
    print(f"  {name:36s} {cost.get('flops', 0):12.0f} {cost.get('bytes accessed', 0):14.0f} "
          f"{copies:6d} {len(split):6d}")


def _header(title):
    print(f"\n{title}\n  {'variant':36s} {'flops':>12s} {'bytes accessed':>14s} {'copies':>6s} {'split':>6s}")


def main():
    _harness.print_header("probe_jax_step_fusions", f"{os.cpu_count()} CPUs allowed to XLA")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 256)).astype("float32")
    y = rng.normal(size=(256, 1)).astype("float32")
    weights = bench_optimizers.make_model().get_weights()
    _header("bench_optimizers.py: MLP 256-3x512-1, batch 256, MSE")
    for name, make_optimizer, _ in bench_optimizers.variants():
        model = bench_optimizers.make_model(weights)
        model.compile(optimizer=make_optimizer(), loss="mse")
        _row(name, _compiled_step(model, x, y))
    x = rng.normal(size=(256, 512)).astype("float32")
    y = rng.normal(size=(256, 10)).astype("float32")
    _header("bench_finite_check.py: MLP 512-3x512-10, batch 256, Adam, MSE")
    for policy in (None, "raise", "count"):
        model = bench_finite_check.mlp(512, 3, 512, 10, "probe")
        if policy is not None:
            model = insert_finite_checks(model, policy=policy)
        model.compile(optimizer="adam", loss="mse")
        _row("plain" if policy is None else f"FiniteCheck, {policy}", _compiled_step(model, x, y))


if __name__ == "__main__":
    main()
