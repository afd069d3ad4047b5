"""GuardedOptimizer: skipping, policies, back-off, clipping, fit, saving and mixed precision."""

import importlib.util
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from tests.helpers import assert_matches_reference, to_numpy
from xstable.callbacks import StabilityMonitor
from xstable.errors import NonFiniteError
from xstable.optimizers import GuardedOptimizer

NAN = float("nan")
INF = float("inf")


def _snapshot(variables):
    return [to_numpy(v).copy() for v in variables]


def _assert_bit_identical(before, variables, what):
    for old, variable in zip(before, variables, strict=True):
        new = to_numpy(variable)
        assert old.dtype == new.dtype and old.tobytes() == new.tobytes(), (
            f"{what}: {variable.path} changed on a skipped step: {old} -> {new}"
        )


def _step(optimizer, variable, grad):
    optimizer.apply([keras.ops.convert_to_tensor(np.asarray(grad, "float32"))], [variable])


def _counters(optimizer):
    stats = optimizer.stats()
    return stats["skipped_steps"], stats["consecutive_skips"], int(to_numpy(optimizer.iterations))


# skip_mode only changes torch's mechanism; both must give the same guarantees.
SKIP_MODES = pytest.mark.parametrize("skip_mode", ["select", "branch"])


@SKIP_MODES
def test_scripted_sequence_like_optax_apply_if_finite(skip_mode):
    weight = keras.Variable(np.array([1.0, -2.0, 3.0], "float32"), name="w")
    optimizer = GuardedOptimizer(
        keras.optimizers.Adam(0.1), max_consecutive_skips=2, skip_mode=skip_mode
    )

    _step(optimizer, weight, [0.5, 0.5, -0.5])  # finite: applied
    assert _counters(optimizer) == (0, 0, 1)
    assert not np.allclose(to_numpy(weight), [1.0, -2.0, 3.0])
    assert optimizer.stats()["grad_norm"] == pytest.approx(np.sqrt(0.75))

    state = [weight] + optimizer.inner_optimizer.variables
    before = _snapshot(state)
    for expected_consecutive, grad in ((1, [NAN, 1.0, 1.0]), (2, [1.0, INF, 1.0])):
        _step(optimizer, weight, grad)  # rejected: weights, moments and iterations untouched
        _assert_bit_identical(before, state, f"skip {expected_consecutive}")
        assert _counters(optimizer) == (expected_consecutive, expected_consecutive, 1)
        assert not optimizer.gave_up()
        optimizer.check()

    _step(optimizer, weight, [-INF, NAN, 0.0])  # third in a row: the give-up step
    _assert_bit_identical(before, state, "give-up step")
    assert _counters(optimizer) == (3, 3, 1)
    assert optimizer.gave_up()
    with pytest.raises(NonFiniteError, match=r"(?s)3 optimizer steps in a row.*What to check"):
        optimizer.check()

    _step(optimizer, weight, [0.1, 0.1, 0.1])  # a finite step resets the run
    assert _counters(optimizer) == (3, 0, 2)
    optimizer.check()


def test_deprecated_accept_policy_still_applies_the_step_after_the_limit():
    weight = keras.Variable(np.ones(2, "float32"))
    with pytest.warns(DeprecationWarning, match=r"(?s)'accept'` is deprecated.*'replace'"):
        optimizer = GuardedOptimizer(
            keras.optimizers.SGD(0.1), max_consecutive_skips=1, on_max_skips="accept"
        )
    _step(optimizer, weight, [NAN, 1.0])
    assert_matches_reference(weight, np.ones(2), "exact", "first NaN step skipped")
    _step(optimizer, weight, [NAN, 1.0])
    assert np.isnan(to_numpy(weight)[0]) and to_numpy(weight)[1] == pytest.approx(0.9)
    assert _counters(optimizer) == (1, 2, 1)
    optimizer.check()  # accept never raises


@pytest.mark.parametrize("policy", ["replace", "backoff"])
def test_replace_policy_lowers_the_learning_rate_and_keeps_skipping(policy):
    weight = keras.Variable(np.ones(1, "float32"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimizer = GuardedOptimizer(
            keras.optimizers.SGD(1.0),
            max_consecutive_skips=2,
            on_max_skips=policy,
            lr_backoff_factor=0.25,
            lr_recovery_steps=None,
        )
    deprecations = [w for w in caught if "on_max_skips" in str(w.message)]
    assert len(deprecations) == (policy == "backoff")
    assert optimizer.on_max_skips == "replace"  # the old name means the same
    for _ in range(3):
        _step(optimizer, weight, [NAN])
    assert optimizer.stats()["lr_scale"] == 0.25
    assert _counters(optimizer) == (3, 0, 0)
    assert not optimizer.gave_up()
    _step(optimizer, weight, [1.0])  # SGD step with the backed-off rate: 1 - 0.25 * 1
    assert_matches_reference(weight, [0.75], "float32", "step at the backed-off rate")
    assert_matches_reference(optimizer.effective_learning_rate, 0.25, "float32", "effective lr")


@pytest.mark.parametrize("policy", ["warn", "count"])
def test_warn_and_count_keep_skipping_past_the_limit(policy):
    weight = keras.Variable(np.ones(2, "float32"))
    optimizer = GuardedOptimizer(
        keras.optimizers.SGD(0.1), max_consecutive_skips=1, on_max_skips=policy
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            _step(optimizer, weight, [NAN, 1.0])
            optimizer.check()  # never raises
    assert_matches_reference(weight, np.ones(2), "exact", "every non-finite step skipped")
    assert _counters(optimizer) == (4, 4, 0)
    given_up = [w for w in caught if "steps in a row" in str(w.message)]
    # "warn": one warning for the run of skips past the limit; "count": none.
    assert len(given_up) == (policy == "warn"), [str(w.message) for w in caught]


@SKIP_MODES
def test_backoff_on_every_skip_recovers_after_good_steps(skip_mode):
    weight = keras.Variable(np.zeros(1, "float32"))
    optimizer = GuardedOptimizer(
        keras.optimizers.SGD(1.0),
        skip_mode=skip_mode,
        lr_backoff_on_skip=True,
        lr_backoff_factor=0.5,
        lr_recovery_steps=2,
    )
    _step(optimizer, weight, [NAN])
    _step(optimizer, weight, [INF])
    assert optimizer.stats()["lr_scale"] == 0.25
    _step(optimizer, weight, [1.0])  # w = 0 - 0.25
    _step(optimizer, weight, [1.0])  # second good step in a row: after it, the scale grows
    assert_matches_reference(weight, [-0.5], "float32", "two steps at 0.25")
    assert optimizer.stats()["lr_scale"] == 0.5
    _step(optimizer, weight, [1.0])
    assert_matches_reference(weight, [-1.0], "float32", "step at 0.5")
    # The inner optimizer's own rate is never modified.
    assert_matches_reference(optimizer.inner_optimizer.learning_rate, 1.0, "exact", "inner lr")


@SKIP_MODES
def test_finite_steps_match_the_plain_inner_optimizer(skip_mode):
    rng = np.random.default_rng(1)
    init = rng.normal(size=(4, 3)).astype("float32")
    plain_weight, guarded_weight = keras.Variable(init), keras.Variable(init)
    plain = keras.optimizers.Adam(0.01)
    guarded = GuardedOptimizer(keras.optimizers.Adam(0.01), skip_mode=skip_mode)
    for _ in range(5):
        grad = rng.normal(size=(4, 3)).astype("float32")
        _step(plain, plain_weight, grad)
        _step(guarded, guarded_weight, grad)
    assert_matches_reference(guarded_weight, to_numpy(plain_weight), "float32", "weights")
    for got, ref in zip(guarded.inner_optimizer.variables, plain.variables, strict=True):
        assert_matches_reference(got, to_numpy(ref), "float32", f"slot {ref.path}")


@pytest.mark.parametrize("clipnorm", [0.1, 1.0, 3.3])
def test_branch_and_select_agree_bit_for_bit_at_the_clip_boundary(clipnorm):
    # torch's CPU branch decides on the host whether the clip scale differs from 1 (norm
    # above the float32 clipnorm); the select path always multiplies by the device scale.
    # At norms just below, at and just above the limit both must give the same weights.
    rng = np.random.default_rng(7)
    init = rng.normal(size=(4, 3)).astype("float32")
    direction = rng.normal(size=(4, 3)).astype("float32")
    limit = float(np.float32(clipnorm))
    for target in (np.nextafter(np.float32(limit), np.float32(0)), limit, limit * (1 + 1e-6)):
        grad = direction * np.float32(target / np.linalg.norm(direction.astype("float64")))
        weights = []
        for skip_mode in ("branch", "select"):
            weight = keras.Variable(init)
            optimizer = GuardedOptimizer(
                keras.optimizers.SGD(1.0), global_clipnorm=clipnorm, skip_mode=skip_mode
            )
            _step(optimizer, weight, grad)
            weights.append(to_numpy(weight))
        assert_matches_reference(weights[0], weights[1], "exact", f"norm {target!r}")


@SKIP_MODES
def test_global_clipnorm_within_the_limit_gives_the_plain_step_exactly(skip_mode):
    # Within the limit the clip scale is exactly 1 (torch's CPU branch skips multiplying by
    # it): steps must equal the plain optimizer's bit for bit, also right after a skipped NaN
    # step, and a gradient above the limit must still be clipped.
    rng = np.random.default_rng(3)
    init = rng.normal(size=(4, 3)).astype("float32")
    plain_weight, guarded_weight = keras.Variable(init), keras.Variable(init)
    plain = keras.optimizers.Adam(0.01)
    guarded = GuardedOptimizer(
        keras.optimizers.Adam(0.01), global_clipnorm=10.0, skip_mode=skip_mode
    )
    for step in range(4):
        grad = rng.normal(size=(4, 3)).astype("float32")
        if step == 2:
            _step(guarded, guarded_weight, np.full((4, 3), NAN, "float32"))
            assert _counters(guarded)[:2] == (1, 1)
        _step(plain, plain_weight, grad)
        _step(guarded, guarded_weight, grad)
        assert_matches_reference(guarded_weight, to_numpy(plain_weight), "exact", "weights")
        assert_matches_reference(
            guarded.stats()["grad_norm"], np.linalg.norm(grad), "float32", "grad_norm"
        )
    assert _counters(guarded) == (1, 0, 4)
    big = (rng.normal(size=(4, 3)) * 100).astype("float32")
    _step(plain, plain_weight, big * (10.0 / np.linalg.norm(big.astype("float64"))))
    _step(guarded, guarded_weight, big)
    assert_matches_reference(guarded_weight, to_numpy(plain_weight), "float32", "clipped step")


@pytest.mark.parametrize(
    "clip_kwargs, reference",
    [
        ({"clipvalue": 0.5}, lambda g, w: [np.clip(x, -0.5, 0.5) for x in g]),
        (
            {"clipnorm": 1.0},
            lambda g, w: [x / max(np.linalg.norm(x), 1.0) for x in g],
        ),
        (
            {"global_clipnorm": 1.0},
            lambda g, w: [x / max(np.sqrt(sum(np.sum(y**2) for y in g)), 1.0) for x in g],
        ),
        (
            {"adaptive_clip": 0.1},
            lambda g, w: [
                np.where(
                    (n := np.linalg.norm(x, axis=0, keepdims=True))
                    > (m := 0.1 * np.maximum(np.linalg.norm(v, axis=0, keepdims=True), 1e-3)),
                    x * m / np.maximum(n, m),
                    x,
                )
                if x.ndim > 1
                else (x * min(1.0, 0.1 * max(np.linalg.norm(v), 1e-3) / np.linalg.norm(x)))
                for x, v in zip(g, w, strict=True)
            ],
        ),
    ],
    ids=["clipvalue", "clipnorm", "global_clipnorm", "adaptive_clip"],
)
def test_every_clip_mode_against_numpy_through_sgd(clip_kwargs, reference):
    rng = np.random.default_rng(2)
    weights = [rng.normal(size=(3, 2)), rng.normal(size=(2,))]
    grads = [rng.normal(size=(3, 2)) * 3, rng.normal(size=(2,)) * 3]
    variables = [keras.Variable(w.astype("float32")) for w in weights]
    optimizer = GuardedOptimizer(keras.optimizers.SGD(1.0), **clip_kwargs)
    optimizer.apply([keras.ops.convert_to_tensor(g.astype("float32")) for g in grads], variables)
    for variable, w, clipped in zip(variables, weights, reference(grads, weights), strict=True):
        assert_matches_reference(variable, w - clipped, "float32", f"{clip_kwargs} update")


def test_string_inner_optimizer_and_forwarded_properties():
    optimizer = GuardedOptimizer("adam")
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.Adam)
    optimizer.learning_rate = 0.05
    assert_matches_reference(optimizer.inner_optimizer.learning_rate, 0.05, "float32", "lr")
    weight = keras.Variable(np.ones(2, "float32"))
    _step(optimizer, weight, [1.0, 1.0])
    assert optimizer.iterations is optimizer.inner_optimizer.iterations
    # State: the inner optimizer's plus scalars (no copy of weights or slots).
    inner_ids = {id(v) for v in optimizer.inner_optimizer.variables}
    own = [v for v in optimizer.variables if id(v) not in inner_ids]
    assert all(tuple(v.shape) == () for v in own), [v.path for v in own]
    assert len(own) == 7


def _data(n=64, nan_row=None):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-1.0], [0.5], [2.0]])).astype("float32")
    if nan_row is not None:
        x[nan_row] = np.nan
    return x, y


def _model():
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )


_TORCH_COMPILE = "jit_compile=True on torch means torch.compile (minutes on CPU); the issue asks for jit on TF and JAX"


@pytest.mark.parametrize(
    "jit_compile",
    ["auto", pytest.param(True, marks=pytest.mark.skip_backend("torch", reason=_TORCH_COMPILE))],
    ids=["default", "jit"],
)
def test_nan_batch_in_real_fit_is_skipped_and_logged(jit_compile):
    x, y = _data(nan_row=20)  # batch 1 of 4 (batch size 16) has a NaN input
    model = _model()
    guard = GuardedOptimizer(keras.optimizers.Adam(0.01), global_clipnorm=5.0)
    model.compile(optimizer=guard, loss="mse", jit_compile=jit_compile)
    history = model.fit(
        x, y, batch_size=16, epochs=3, verbose=0, shuffle=False, callbacks=[StabilityMonitor()]
    )
    assert history.history["skipped_steps"] == [1, 2, 3]
    assert history.history["consecutive_skips"] == [0, 0, 0]
    assert all(np.isfinite(history.history["grad_norm"]))
    assert int(to_numpy(guard.iterations)) == 9
    for weight in model.weights:
        assert np.isfinite(to_numpy(weight)).all(), weight.path
    clean_x, clean_y = _data()
    assert np.isfinite(model.evaluate(clean_x, clean_y, verbose=0))


def test_composes_with_mixed_precision():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x, y = _data(nan_row=20)
        model = _model()
        guard = GuardedOptimizer(keras.optimizers.Adam(0.01), global_clipnorm=5.0)
        model.compile(optimizer=guard, loss="mse")
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.optimizer.inner_optimizer is guard
        history = model.fit(
            x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, callbacks=[StabilityMonitor()]
        )
    finally:
        keras.mixed_precision.set_global_policy(previous)
    # LossScaleOptimizer skips the NaN batch (and any float16 overflow while its scale
    # settles) before the guard sees it; the finite steps pass through the guard to Adam.
    assert history.history["skipped_steps"] == [0, 0]
    assert 4 <= int(to_numpy(guard.iterations)) <= 6
    for weight in model.weights:
        assert np.isfinite(to_numpy(weight)).all(), weight.path


def test_config_round_trip():
    optimizer = GuardedOptimizer(
        keras.optimizers.Adam(0.002),
        adaptive_clip=0.02,
        max_consecutive_skips=4,
        on_max_skips="replace",
        lr_backoff_factor=0.3,
        lr_backoff_on_skip=True,
        lr_recovery_steps=7,
        skip_mode="select",
        name="guard",
    )
    config = optimizer.get_config()
    restored = GuardedOptimizer.from_config(config)
    assert restored.get_config() == config
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, GuardedOptimizer)
    assert restored.get_config() == config


def _trained_model_with_skips():
    x, y = _data(nan_row=20)
    model = _model()
    model.compile(optimizer=GuardedOptimizer(keras.optimizers.Adam(0.01), clipnorm=1.0), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    return model


def test_save_and_load_keras_file_keeps_optimizer_state(tmp_path):
    model = _trained_model_with_skips()
    path = tmp_path / "guarded.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, GuardedOptimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.stats() == model.optimizer.stats()
    assert loaded.optimizer.stats()["skipped_steps"] == 1
    for got, ref in zip(loaded.optimizer.variables, model.optimizer.variables, strict=True):
        assert_matches_reference(got, to_numpy(ref), "exact", ref.path)


_SAVE_SCRIPT = """
import keras, numpy as np
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
from xstable.optimizers import GuardedOptimizer
model.compile(optimizer=GuardedOptimizer(keras.optimizers.Adam(0.01), clipnorm=1.0), loss="mse")
variables = model.trainable_variables
for fill in (0.5, float("nan"), -0.25):  # a finite step, a skipped one, a finite one
    model.optimizer.apply([keras.ops.full(v.shape, fill) for v in variables], variables)
model.save({path!r})
np.savez({ref!r}, *[keras.ops.convert_to_numpy(v) for v in model.optimizer.variables])
"""


def test_keras_file_loads_across_backends(tmp_path, backend):
    installed = [
        b
        for b in ("tensorflow", "torch", "jax")
        if b != backend and importlib.util.find_spec(b) is not None
    ]
    if not installed:
        pytest.skip(
            "saving on another backend needs that backend installed; the per-backend nox "
            "environments hold one (run in an environment with all three, backends/all-cpu.txt)"
        )
    source = installed[0]
    path, ref = str(tmp_path / "other.keras"), str(tmp_path / "ref.npz")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run(
        [sys.executable, "-c", _SAVE_SCRIPT.format(path=path, ref=ref)],
        check=True,
        env={**os.environ, "KERAS_BACKEND": source, "PYTHONPATH": root},
        capture_output=True,
        timeout=300,
    )
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, GuardedOptimizer)
    saved = np.load(ref)
    for i, variable in enumerate(loaded.optimizer.variables):
        assert_matches_reference(
            variable, saved[f"arr_{i}"], "exact", f"{variable.path} from {source}"
        )
    x, y = _data(nan_row=3)
    assert loaded.optimizer.stats()["skipped_steps"] == 1
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    assert loaded.optimizer.stats()["skipped_steps"] == 2
    assert int(to_numpy(loaded.optimizer.iterations)) == 2 + 3


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"clipnorm": 1.0, "global_clipnorm": 1.0}, ValueError, "Only one of"),
        ({"clipvalue": 1.0, "adaptive_clip": 0.1}, ValueError, "Only one of"),
        ({"global_clipnorm": -1.0}, ValueError, r"global_clipnorm=-1\.0"),
        ({"clipnorm": 0.0}, ValueError, r"clipnorm=0\.0"),
        ({"clipvalue": float("nan")}, ValueError, "clipvalue=nan"),
        ({"clipnorm": "1"}, TypeError, "clipnorm='1'"),
        ({"adaptive_clip_eps": 0.0}, ValueError, "adaptive_clip_eps"),
        ({"max_consecutive_skips": 0}, ValueError, "max_consecutive_skips=0"),
        ({"max_consecutive_skips": True}, TypeError, "max_consecutive_skips=True"),
        ({"on_max_skips": "ignore"}, ValueError, "'raise', 'warn', 'replace', 'count'"),
        ({"on_max_skips": 1}, TypeError, "on_max_skips=1"),
        ({"lr_backoff_factor": 1.5}, ValueError, r"lr_backoff_factor=1\.5"),
        ({"lr_backoff_on_skip": 1}, TypeError, "lr_backoff_on_skip=1"),
        ({"lr_recovery_steps": 2.5}, TypeError, r"lr_recovery_steps=2\.5"),
        ({"learning_rate": 0.1}, ValueError, "learning_rate"),
        ({"skip_mode": "cond"}, ValueError, "skip_mode='cond'"),
    ],
)
def test_bad_arguments_give_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        GuardedOptimizer(keras.optimizers.SGD(), **kwargs)


@pytest.mark.parametrize(
    "inner, error, message",
    [
        (keras.optimizers.Adam(clipnorm=1.0), ValueError, "Set `clipnorm` on the GuardedOptimizer"),
        ("not-an-optimizer", ValueError, "names no Keras optimizer"),
        (3, TypeError, "inner_optimizer=3"),
        (keras.optimizers.SGD(gradient_accumulation_steps=2), ValueError, "accumulation"),
        (keras.optimizers.SGD(float("nan")), ValueError, r"learning_rate=nan"),
        (keras.optimizers.Adam(float("inf")), ValueError, r"learning_rate=inf"),
        (keras.optimizers.SGD(-0.1), ValueError, r"learning_rate=-0\.1"),
    ],
)
def test_bad_inner_optimizers_give_clear_errors(inner, error, message):
    with pytest.raises(error, match=message):
        GuardedOptimizer(inner)


def test_wrapping_order_with_loss_scale_optimizer_is_explained():
    with pytest.raises(ValueError, match=r"LossScaleOptimizer\(GuardedOptimizer"):
        GuardedOptimizer(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()))
