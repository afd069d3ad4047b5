"""Seed-document failure cases trained with and without AutoScale as the first layer.

Each case is the model and data of a seed document (/work/shared/seeds) whose failure it blames on
unscaled features or outliers: 000 examples 1-2, 001 examples 1 and 3, 002 example 1, 003
example 1. Every case trains full-batch for `STEPS` steps with plain Adam and with plain SGD (no
clipping, no schedule), once with AutoScale first and once without, at the same learning rate.

`baseline` is the loss of the best constant prediction (variance of y for MSE, the label entropy
for BCE). The thresholds below were set from runs on JAX, PyTorch and TensorFlow (CPU) with margin;
docs/auto-scale.md has the measured table. Where plain Keras 3 does NOT fail (Adam copes with
000 example 2; 002 and 003 have random targets), the test asserts that, instead of pretending.
"""

import math

import keras
import numpy as np
import pytest

from xstable.layers import AutoScale

STEPS = 400


def _case(name, rng):
    dense = keras.layers.Dense
    if name == "000-1":  # one 1e10 outlier in a single feature
        x = rng.random((100, 1)) * 10
        y = 2 * x + 1 + rng.standard_normal((100, 1))
        x[0, 0] = 1e10
        return x, y, [dense(10, activation="relu"), dense(1)], "mse"
    if name == "000-2":  # features at 1 and 1000
        x = np.concatenate([rng.random((100, 1)), rng.random((100, 1)) * 1000], axis=1)
        y = (x[:, 0] + x[:, 1] + rng.standard_normal(100))[:, None]
        return x, y, [dense(10, activation="relu"), dense(1)], "mse"
    if name == "001-1":  # features at 1 and 1e6
        x = np.array([[1, 1e6], [2, 2e6], [3, 3e6]])
        y = np.array([[10.0], [20.0], [30.0]])
        return x, y, [dense(1)], "mse"
    if name == "001-3":  # one 1e6 outlier
        x = np.array([[1, 10], [2, 20], [3, 30], [4, 1e6]])
        y = np.array([[10.0], [20.0], [30.0], [40.0]])
        return x, y, [dense(1)], "mse"
    if name == "002-1":  # inputs up to 1000 into sigmoid units, random labels
        x = rng.random((100, 10)) * 1000
        y = rng.integers(0, 2, (100, 1)).astype(float)
        return x, y, [dense(100, activation="sigmoid"), dense(1, activation="sigmoid")], "bce"
    if name == "003-1":  # inputs up to 100 into tanh units, random targets
        x = rng.random((100, 10)) * 100
        y = rng.random((100, 1))
        layers = [dense(128, activation="tanh"), dense(64, activation="tanh"), dense(1)]
        return x, y, layers, "mse"
    raise KeyError(name)


OPTIMIZERS = {
    # Same learning rate with and without AutoScale; chosen so the scaled model converges.
    "000-1": {"adam": 0.1, "sgd": 0.01},
    "000-2": {"adam": 0.1, "sgd": 0.001},
    "001-1": {"adam": 0.1, "sgd": 0.01},
    "001-3": {"adam": 0.1, "sgd": 0.1},
    "002-1": {"adam": 0.1, "sgd": 0.1},
    "003-1": {"adam": 0.1, "sgd": 0.1},
}

_RESULTS = {}


def train(name, optimizer, scaled):
    """Final full-batch loss after STEPS steps, whether any step was non-finite, and baseline."""
    key = (name, optimizer, scaled)
    if key in _RESULTS:
        return _RESULTS[key]
    keras.utils.set_random_seed(0)
    x, y, layers, loss = _case(name, np.random.default_rng(0))
    x, y = x.astype("float32"), y.astype("float32")
    first = []
    if scaled:
        first = [AutoScale()]
        first[0].adapt(x)
    model = keras.Sequential([keras.Input((x.shape[1],)), *first, *layers])
    learning_rate = OPTIMIZERS[name][optimizer]
    opt = (keras.optimizers.Adam if optimizer == "adam" else keras.optimizers.SGD)(learning_rate)
    model.compile(opt, "binary_crossentropy" if loss == "bce" else "mse")
    # One epoch of STEPS - 1 full batches (cheaper than STEPS epochs), then one more step whose
    # returned loss is the full-batch loss at the final weights.
    history = model.fit(
        np.tile(x, (STEPS - 1, 1)),
        np.tile(y, (STEPS - 1, 1)),
        batch_size=len(x),
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    final = float(np.asarray(model.train_on_batch(x, y)).reshape(-1)[0])
    went_nonfinite = not math.isfinite(history.history["loss"][0]) or not math.isfinite(final)
    if loss == "mse":
        baseline = float(np.var(y))
    else:
        p = float(y.mean())
        baseline = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    _RESULTS[key] = (final, went_nonfinite, baseline)
    return _RESULTS[key]


def _describe(name, optimizer):
    rows = []
    for scaled in (False, True):
        final, nonfinite, baseline = train(name, optimizer, scaled)
        rows.append(
            f"{'with' if scaled else 'without'} AutoScale: final={final:.4g} "
            f"(x baseline {final / baseline:.3g}), non-finite={nonfinite}"
        )
    return f"{name} {optimizer}: " + "; ".join(rows)


# (case, optimizer) -> (max final/baseline WITH AutoScale, what happens WITHOUT it), from the
# measured table in docs/auto-scale.md. ("diverges", r): the unscaled run hits NaN/Inf or ends
# above r x baseline. ("above", r): it stays finite but ends above r x baseline (stuck or slow).
# ("below", r): plain Keras 3 copes as well (ends below r x baseline); asserted, not hidden.
EXPECTED = {
    ("000-1", "adam"): (0.5, ("above", 2.0)),
    ("000-1", "sgd"): (0.25, ("diverges", 100.0)),
    ("000-2", "adam"): (0.01, ("below", 0.01)),
    ("000-2", "sgd"): (0.6, ("above", 1.0)),
    ("001-1", "adam"): (0.01, ("below", 0.01)),
    ("001-1", "sgd"): (0.01, ("diverges", 100.0)),
    ("001-3", "adam"): (0.25, ("above", 1.0)),
    ("001-3", "sgd"): (0.01, ("diverges", 100.0)),
    ("002-1", "adam"): (0.5, ("above", 0.9)),
    ("002-1", "sgd"): (1.05, ("below", 1.05)),
    ("003-1", "adam"): (0.5, ("above", 0.9)),
    ("003-1", "sgd"): (0.75, ("diverges", 100.0)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name, optimizer", sorted(EXPECTED))
def test_seed_case_with_and_without_auto_scale(name, optimizer):
    max_ratio, without = EXPECTED[(name, optimizer)]
    scaled_final, scaled_nonfinite, baseline = train(name, optimizer, scaled=True)
    plain_final, plain_nonfinite, _ = train(name, optimizer, scaled=False)
    message = _describe(name, optimizer)
    assert not scaled_nonfinite, message
    assert scaled_final <= max_ratio * baseline, message
    direction, ratio = without
    if direction == "diverges":
        assert plain_nonfinite or plain_final > ratio * baseline, message
        return
    assert not plain_nonfinite, message
    if direction == "above":
        assert plain_final > ratio * baseline, message
    else:
        assert plain_final <= ratio * baseline, message
