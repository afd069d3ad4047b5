"""Worker-side logic on every backend: replaying a state and taking a step apart."""

import keras
import numpy as np
import pytest

from tests.compare import specs
from xstable.compare.inspection import (
    StateRecorder,
    capture_state,
    inspect_model,
    inspect_state,
    layer_of_variable,
    locate_nonfinite,
)
from xstable.training import TrainingSpec, run_spec


@pytest.fixture(scope="module")
def batchnorm_step():
    spec = specs.batchnorm_large_mean()
    state = capture_state(spec, None, specs.BATCHNORM_STEP)
    return spec, state, inspect_state(spec, state, include_update=False)


def test_capture_replays_the_run_to_the_requested_step(batchnorm_step):
    spec, state, _ = batchnorm_step
    assert state["step"] == specs.BATCHNORM_STEP and state["batch"] == specs.BATCHNORM_STEP
    x, _ = spec.make_data()
    rows = slice(8 * specs.BATCHNORM_STEP, 8 * specs.BATCHNORM_STEP + 8)
    np.testing.assert_array_equal(state["x"], x[rows])
    assert len(state["optimizer_variables"]) > 0  # SGD's iteration count, at least.
    with pytest.raises(ValueError, match="past the end of the run"):
        capture_state(spec, None, 10_000)


def test_inspection_records_every_layer_and_gradient(batchnorm_step, backend):
    spec, state, inspection = batchnorm_step
    assert [r["name"] for r in inspection["layers"]] == ["hidden", "batchnorm", "head"]
    assert [g["layer"] for g in inspection["gradients"]] == [
        "hidden", "hidden", "batchnorm", "batchnorm", "head", "head"
    ]
    assert inspection["train_loss"] is None and inspection["updated_weights"] == []
    onset = locate_nonfinite(inspection, specs.BATCHNORM_STEP)
    if backend == "torch":
        # BACKEND-NOTES 5: torch's one-pass variance cancels for a large-mean batch.
        assert (onset["stage"], onset["layer"]) == ("forward", "batchnorm"), onset
    else:
        assert onset["stage"] == "none", onset


def test_saturated_cross_entropy_per_backend(backend):
    spec = specs.saturated_bce()
    state = capture_state(spec, None, specs.SATURATION_STEP)
    inspection = inspect_state(spec, state, include_update=False)
    gradient = inspection["gradients"][0]["value"]
    if backend == "tensorflow":
        # BACKEND-NOTES 2: TF recovers the logits: exact loss (about 100 per row) and gradient.
        assert inspection["loss"] > 90 and np.abs(gradient).max() > 1
    else:
        # torch and JAX clip probabilities: loss -log(1e-7) = 16.1, gradient exactly zero.
        assert inspection["loss"] == pytest.approx(16.03, abs=0.05)
        assert np.abs(gradient).max() == 0.0


def _overflowing_update_spec():
    return TrainingSpec(
        "overflow",
        lambda: keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, name="dense")]),
        lambda: (np.ones((4, 1), "float32"), np.full((4, 1), 10.0, "float32")),
        lambda: {"optimizer": keras.optimizers.SGD(1e38), "loss": "mse"},
        epochs=3,
        batch_size=4,
    )


def test_nan_from_an_overflowing_update_is_located_in_the_update():
    spec = _overflowing_update_spec()
    result = run_spec(spec)
    step = result.first_nonfinite_step
    assert step == 1, result.losses
    onset = locate_nonfinite(inspect_state(spec, capture_state(spec, None, step)), step)
    assert (onset["stage"], onset["layer"], onset["step"]) == ("update", "dense", 0), onset


def test_layer_of_variable():
    assert layer_of_variable("functional/dense_1/kernel") == "dense_1"
    assert layer_of_variable("bias") == "bias"


@pytest.fixture(scope="module")
def benign_run():
    spec = specs.benign_mlp()
    recorder = StateRecorder()
    result = run_spec(spec, before_step=recorder)
    return spec, recorder, result


def test_recorded_states_match_a_replay_and_the_trained_model_inspects_alike(benign_run):
    spec, recorder, result = benign_run
    assert recorder.complete and sorted(recorder.states) == list(range(24))
    recorded, replayed = recorder.state_at(5), capture_state(spec, None, 5)
    for a, b in zip(recorded["weights"] + recorded["optimizer_variables"],
                    replayed["weights"] + replayed["optimizer_variables"]):
        np.testing.assert_array_equal(a, b)
    on_trained = inspect_model(recorder.model, recorded)
    again = inspect_model(recorder.model, recorded)  # The inspection changed nothing it uses.
    on_fresh = inspect_state(spec, replayed)
    assert on_trained["loss"] == again["loss"] == on_fresh["loss"]
    np.testing.assert_array_equal(on_trained["layers"][0]["outputs"][0],
                                  again["layers"][0]["outputs"][0])
    # The eager loss and the compiled step's loss are the loss the run recorded at step 5.
    assert on_trained["loss"] == pytest.approx(result.losses[5], rel=1e-5)
    assert on_trained["train_loss"] == pytest.approx(result.losses[5], rel=1e-5)
    for a, b in zip(on_trained["updated_weights"], on_fresh["updated_weights"]):
        np.testing.assert_allclose(a["value"], b["value"], rtol=1e-6)


def test_recorder_keeps_only_the_latest_states_past_its_budget(benign_run):
    _, trained, _ = benign_run
    recorder = StateRecorder(budget_bytes=0)
    x = np.zeros((2, 4), "float32")
    for step in range(4):
        recorder(step, 0, step, trained.model, x, x[:, :1])
    assert not recorder.complete and recorder.states == {}
    assert recorder.state_at(3)["step"] == 3 and recorder.state_at(2)["step"] == 2
    assert recorder.state_at(1) is None


def test_inspecting_a_model_again_uses_the_new_state(benign_run):
    # The probe and (on JAX) the compiled function are built once per model; a later
    # inspection of another step must still see that step's weights and batch.
    spec, recorder, _ = benign_run
    first = inspect_model(recorder.model, recorder.state_at(3))
    later = inspect_model(recorder.model, recorder.state_at(12))
    fresh = inspect_state(spec, recorder.state_at(12))
    assert later["loss"] == fresh["loss"] != first["loss"]
    for a, b in zip(later["gradients"], fresh["gradients"]):
        np.testing.assert_array_equal(a["value"], b["value"])


def test_a_sequential_without_input_still_gets_per_layer_outputs():
    # Seed documents build `Sequential([Dense(...), ...])` without `keras.Input`: such a model
    # has no symbolic graph, so the layers are run one after the other.
    def build_model():
        return keras.Sequential(
            [keras.layers.Dense(8, activation="relu", name="hidden"),
             keras.layers.Dense(1, name="head")]
        )

    def make_data():
        x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
        return x, x[:, :1] * 2.0

    spec = TrainingSpec(
        "sequential_without_input",
        build_model,
        make_data,
        lambda: {"optimizer": keras.optimizers.SGD(1e-2), "loss": "mse"},
        epochs=1,
        batch_size=8,
    )
    recorder = StateRecorder()
    run_spec(spec, before_step=recorder)
    state = recorder.state_at(2)
    inspection = inspect_model(recorder.model, state, include_update=False)
    assert [r["name"] for r in inspection["layers"]] == ["hidden", "head"]
    assert not any("unavailable" in note for note in inspection["notes"])
    # The last layer's output is the model's prediction: its loss is the inspected loss.
    prediction = inspection["layers"][-1]["outputs"][0]
    assert np.mean((prediction - state["y"]) ** 2) == pytest.approx(inspection["loss"], rel=1e-5)
