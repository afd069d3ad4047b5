import json
import math

import keras
import numpy as np
import pytest

from xstable.training import RunResult, TrainingSpec, batch_order, run_spec


def _linear_spec(learning_rate=0.05, scale=1.0, epochs=3, **kwargs):
    def build_model():
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    def make_data():
        rng = np.random.default_rng(0)
        x = (rng.normal(size=(40, 2)) * scale).astype("float32")
        y = (x @ np.array([[2.0], [-1.0]])).astype("float32")
        return x, y

    def make_compile_args():
        return {"optimizer": keras.optimizers.SGD(learning_rate), "loss": "mse"}

    return TrainingSpec(
        "linear", build_model, make_data, make_compile_args, epochs=epochs, batch_size=16, **kwargs
    )


def test_batch_order_is_fixed_by_seed_and_covers_every_row():
    order = batch_order(10, 4, epochs=2, seed=3)
    assert [len(b) for b in order[0]] == [4, 4, 2]
    for epoch in order:
        assert sorted(np.concatenate(epoch).tolist()) == list(range(10))
    again = batch_order(10, 4, epochs=2, seed=3)
    assert all(np.array_equal(a, b) for e1, e2 in zip(order, again) for a, b in zip(e1, e2))
    assert not np.array_equal(order[0][0], order[1][0])
    assert np.array_equal(batch_order(5, 5, 1, shuffle=False)[0][0], np.arange(5))


def test_healthy_run_is_ok_and_learns():
    result = run_spec(_linear_spec())
    assert result.outcome == "ok" and result.final_loss < result.trivial_loss
    assert len(result.losses) == 3 * 3 and result.steps_per_epoch == [3, 3, 3]
    assert result.losses[-1] < result.losses[0]
    assert result.first_nonfinite_step is None and result.weights_finite
    assert result.backend == keras.config.backend()


def test_exploding_run_reports_first_nonfinite_step():
    result = run_spec(_linear_spec(learning_rate=1.0, scale=1e3, epochs=5))
    assert result.outcome == "nan", result.losses
    step = result.first_nonfinite_step
    assert step is not None and not math.isfinite(result.losses[step])
    assert all(math.isfinite(v) for v in result.losses[:step])
    assert step == result.first_nonfinite_epoch * 3 + result.first_nonfinite_batch
    assert result.stopped_early and len(result.losses) == step + 1


def test_same_initial_weights_give_the_same_losses():
    spec = _linear_spec()
    weights = [np.full(w.shape, 0.25, "float32") for w in spec.build_model().weights]
    first = run_spec(spec, initial_weights=weights)
    second = run_spec(_linear_spec(seed=99), initial_weights=weights)
    assert first.losses == run_spec(spec, initial_weights=weights).losses
    # Another seed draws another batch order from the same start, so the losses differ.
    assert second.losses != first.losses


def test_result_round_trips_through_json():
    result = run_spec(_linear_spec(learning_rate=1.0, scale=1e3, epochs=5))
    data = json.loads(json.dumps(result.to_dict()))
    back = RunResult.from_dict(data)
    assert math.isnan(back.losses[-1]) or math.isinf(back.losses[-1])
    assert back.first_nonfinite_step == result.first_nonfinite_step
    assert back.outcome == "nan" and isinstance(back.outcome, str)


def test_before_step_sees_every_step():
    seen = []
    run_spec(
        _linear_spec(epochs=1), before_step=lambda s, e, b, m, xb, yb: seen.append((s, len(xb)))
    )
    assert seen == [(0, 16), (1, 16), (2, 8)]


def test_bad_specs_give_clear_errors():
    with pytest.raises(TypeError, match="`build_model` must be a callable"):
        TrainingSpec("x", None, lambda: None, dict)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        TrainingSpec("x", dict, dict, dict, batch_size=0)
    with pytest.raises(TypeError, match="must return a `keras.Model`"):
        run_spec(TrainingSpec("x", lambda: 3, dict, dict))
    with pytest.raises(ValueError, match="`initial_weights` do not fit"):
        run_spec(_linear_spec(), initial_weights=[np.zeros((3, 3))])
    with pytest.raises(TypeError, match="`spec` must be"):
        run_spec("linear")
