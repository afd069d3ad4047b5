import keras
import numpy as np

from tests.helpers import to_numpy
from xstable.losses import LossEventCount


def test_records_resets_and_ignores_update_state():
    counter = LossEventCount(name="events")
    counter.record(3)
    counter.update_state(np.ones(2), np.ones(2))
    assert float(to_numpy(counter.result())) == 3.0
    counter.reset_state()
    assert float(to_numpy(counter.result())) == 0.0


def test_config_round_trip():
    counter = LossEventCount(name="events")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(counter))
    assert isinstance(restored, LossEventCount) and restored.name == "events"


def test_counts_survive_repeated_resets_between_compiled_steps():
    """train_on_batch resets every metric on every call; the reset must keep working after
    compiled steps (Keras's JAX trainer donates, i.e. deletes, the state arrays it is given)
    and each call's logs hold that call's count only."""
    from xstable.losses import SafeLoss

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    loss = SafeLoss("mse")
    model.compile(optimizer="adam", loss=loss, metrics=loss.counters)
    x = np.random.default_rng(0).random((8, 4)).astype("float32")
    y = np.zeros((8, 1), "float32")
    y[:3] = np.nan  # three non-finite per-sample losses: left out and counted
    key = model.loss.nonfinite_counter.name
    for _ in range(3):
        assert model.train_on_batch(x, y, return_dict=True)[key] == 3.0
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert history.history[key] == [3.0, 3.0]
    assert model.train_on_batch(x, y, return_dict=True)[key] == 3.0
    assert model.test_on_batch(x, y, return_dict=True)[key] == 3.0
    assert np.isfinite(model.get_weights()[0]).all()


def test_a_result_already_read_keeps_its_value_when_the_count_moves_on():
    # On torch the variable is updated in place: a result that aliased its storage would
    # change under the caller (TF and JAX return new values anyway).
    counter = LossEventCount(name="events")
    counter.record(3)
    first = counter.result()
    counter.record(2)
    assert float(to_numpy(first)) == 3.0
    assert float(to_numpy(counter.result())) == 5.0
    counter.reset_state()
    assert float(to_numpy(first)) == 3.0
