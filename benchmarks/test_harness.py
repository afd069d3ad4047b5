"""benchmarks/_harness.py: the confidence interval behind every benchmark verdict."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402


@pytest.mark.parametrize("n", [6, 9, 15, 16, 31, 41, 100])
def test_median_interval_has_at_least_95_percent_coverage_and_is_the_tightest(n):
    low, high = _harness.median_confidence_interval(list(range(1, n + 1)))
    k = low  # values are 1..n, so the bounds are the order-statistic ranks
    assert high == n - k + 1

    def coverage(k):
        # P(x_(k) <= median <= x_(n-k+1)) = 1 - 2 P(B(n, 1/2) < k)
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n

    assert coverage(k) >= 0.95
    assert k + 1 > (n + 1) / 2 or coverage(k + 1) < 0.95


def test_median_interval_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        sample = rng.lognormal(mean=0.0, sigma=0.1, size=15)  # true median exp(0) = 1
        low, high = _harness.median_confidence_interval(sample.tolist())
        hits += low <= 1.0 <= high
    assert 0.95 <= hits / 2000 <= 0.99  # 96.5% for n = 15


def test_verdicts_follow_the_interval():
    assert _harness.verdict([1.00] * 10 + [1.01] * 5, 1.05).startswith("met")
    assert _harness.verdict([1.10] * 10 + [1.12] * 5, 1.05).startswith("missed")
    assert _harness.verdict(np.linspace(0.95, 1.15, 15).tolist(), 1.05) == "undecided at this load"
    assert _harness.verdict([1.0], None) == ""


def test_round_orders_vary_first_place_and_neighbours_and_repeat_for_a_seed():
    names = ["baseline", "control", "a", "b"]
    orders = _harness.round_orders(names, 31)
    assert all(sorted(order) == sorted(names) for order in orders)
    assert {order[0] for order in orders} == set(names)
    # Unlike a rotation, every variant follows more than one neighbour (within a round).
    for name in names:
        before = {order[order.index(name) - 1] for order in orders if order.index(name) > 0}
        assert len(before) > 1, name
    assert _harness.round_orders(names, 31) == orders
    assert _harness.round_orders(names, 31, seed=1) != orders


def test_one_cpu_pins_the_process_and_threads_set_every_pool():
    # In a child process: pinning the test process itself would slow every later test.
    script = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); import _harness;"
        "n = _harness.limit_threads_from_argv(['bench', '--one-cpu', '--threads', '1']);"
        "print(len(os.sched_getaffinity(0)), n, os.environ['OMP_NUM_THREADS'],"
        " 'xla_cpu_multi_thread_eigen=false' in os.environ['XLA_FLAGS'])"
    )
    benchmarks = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks")
    result = subprocess.run(
        [sys.executable, "-c", script, benchmarks], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["1", "1", "1", "True"]


def test_copies_time_each_copy_in_turn_and_measure_warms_every_copy():
    calls = {name: [] for name in ("a", "b", "c")}

    def run_of(name):
        return lambda steps: calls[name].append(steps)

    copies = _harness.Copies([run_of("a"), run_of("b"), run_of("c")])
    baseline = _harness.Variant("baseline", lambda steps: None)
    measurement = _harness.measure(
        "copies",
        [baseline, _harness.Variant("v", copies)],
        "baseline",
        rounds=6,
        steps_per_block=3,
    )
    assert measurement.copies == 3
    # Warm-up: two 2-step blocks per copy; then one untimed block and two timed rounds each.
    for name in calls:
        assert calls[name] == [2, 2, 3, 3, 3], (name, calls[name])


def test_copies_need_at_least_one_run():
    with pytest.raises(ValueError, match="runs"):
        _harness.Copies([])


def test_copies_of_builds_each_copy_and_returns_one_run_directly():
    built = []

    def make_run(i):
        built.append(i)
        return lambda steps: None

    single = _harness.copies_of(make_run, 1)
    assert not isinstance(single, _harness.Copies) and built == [0]
    assert len(_harness.copies_of(make_run, 3)) == 3 and built == [0, 0, 1, 2]


def _result(wall_ratios, control=True):
    return _harness.VariantResult(
        name="adam again",
        target=None,
        control=control,
        wall_ratios=wall_ratios,
        cpu_ratios=wall_ratios,
        wall_seconds=[1.0] * len(wall_ratios),
        cpu_seconds=[1.0] * len(wall_ratios),
    )


def test_a_control_off_by_more_than_a_percent_asks_for_more_copies():
    assert _harness.control_warning(_result([0.99, 1.0, 1.009])) is None
    assert _harness.control_warning(_result([0.995, 1.016, 1.03]), tolerance=0.02) is None
    warning = _harness.control_warning(_result([1.0, 1.016, 1.03]))
    assert "1.016" in warning and "--copies" in warning
    assert "0.980" in _harness.control_warning(_result([0.97, 0.98, 0.99]))
    # Only controls are judged: a variant's ratio is what is being measured.
    assert _harness.control_warning(_result([1.2, 1.2, 1.2], control=False)) is None


def test_measure_uses_the_times_a_runner_reports_for_its_own_steps():
    # A runner that times its steps itself (fit_step_runner) returns (wall, cpu) of them;
    # the harness records those, not the call's own duration.
    reported = _harness.Variant("self-timed", lambda steps: (steps * 2.0, steps * 3.0))
    baseline = _harness.Variant("baseline", lambda steps: (steps * 1.0, steps * 1.0))
    measurement = _harness.measure(
        "self-timed", [baseline, reported], "baseline", rounds=4, steps_per_block=5
    )
    by_name = {r.name: r for r in measurement.results}
    assert by_name["self-timed"].wall_seconds == [10.0] * 4
    assert by_name["self-timed"].cpu_seconds == [15.0] * 4
    assert by_name["self-timed"].wall_ratios == [2.0] * 4
    assert by_name["self-timed"].cpu_ratios == [3.0] * 4


def test_fit_step_runner_runs_one_more_step_than_it_times_and_times_inside_fit():
    import time

    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)).astype("float32")
    y = rng.normal(size=(12, 1)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    run = _harness.fit_step_runner(model, x, y, batch_size=4)
    for steps in (1, 5, 5):
        before = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        start = time.perf_counter()
        wall, cpu = run(steps)
        whole = time.perf_counter() - start
        after = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        # steps + 1 batches trained (batch 0 runs before the clock starts) ...
        assert after - before == steps + 1
        # ... and the window lies inside the fit call.
        assert 0.0 < wall < whole
        assert cpu >= 0.0
    assert model.history.history["loss"], "fit ran no epoch"
