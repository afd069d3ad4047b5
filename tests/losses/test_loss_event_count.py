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
