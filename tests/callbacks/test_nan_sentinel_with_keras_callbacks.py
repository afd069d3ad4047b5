"""NaNSentinel next to Keras's BackupAndRestore and ModelCheckpoint: checkpoints stay finite."""

import json
import os

import keras
import numpy as np
import pytest

import xstable
from tests.callbacks.test_nan_sentinel import (
    BATCH,
    PoisonWeights,
    StateRecorder,
    _assert_bit_identical,
    _data,
    _model,
    _numpy_copies,
)
from xstable.callbacks import NaNSentinel

pytestmark = pytest.mark.filterwarnings("ignore:`xstable.callbacks.NaNSentinel` is deprecated")


def _weights_in_file(path):
    model = _model()
    model.optimizer.build(model.trainable_variables)  # so the saved optimizer state loads too
    model.load_weights(path)
    return _numpy_copies(model.weights)


@pytest.mark.parametrize("sentinel_first", [True, False])
def test_epoch_checkpoint_after_a_nan_holds_the_restored_finite_weights(tmp_path, sentinel_first):
    # Epoch-end saving works whichever order the callbacks are in: the sentinel restores at
    # the end of the failing batch, before any epoch-end callback runs.
    x, y = _data()
    model = _model()
    path = str(tmp_path / "epoch{epoch}.weights.h5")
    checkpoint = keras.callbacks.ModelCheckpoint(path, save_weights_only=True)
    sentinel = NaNSentinel(report_dir=None, verbose=0)
    recorder = StateRecorder()
    callbacks = [sentinel, checkpoint] if sentinel_first else [checkpoint, sentinel]
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[recorder, *callbacks, PoisonWeights(epoch=1, batch=2)],
    )
    assert sentinel.triggered
    saved = _weights_in_file(str(tmp_path / "epoch2.weights.h5"))  # epoch 1, 1-based name
    assert all(np.isfinite(w).all() for w in saved)
    _assert_bit_identical(saved, recorder.before[(1, 2)][0], "checkpoint of the failing epoch")
    assert not os.path.exists(tmp_path / "epoch3.weights.h5"), "training went on"


def test_best_only_checkpoint_ignores_the_nan_epoch(tmp_path):
    x, y = _data()
    model = _model()
    path = str(tmp_path / "best.weights.h5")
    checkpoint = keras.callbacks.ModelCheckpoint(
        path, save_weights_only=True, save_best_only=True, monitor="loss"
    )
    recorder = StateRecorder()
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[
            recorder,
            NaNSentinel(report_dir=None, verbose=0),
            checkpoint,
            PoisonWeights(epoch=1, batch=2),
        ],
    )
    # Epoch 0 was the only finite epoch: the best checkpoint is its end state.
    _assert_bit_identical(_weights_in_file(path), recorder.before[(1, 0)][0], "best checkpoint")


def test_backup_and_restore_resumes_from_finite_backup_after_raise(tmp_path):
    x, y = _data()
    backup_dir = str(tmp_path / "backup")
    model = _model()
    recorder = StateRecorder()
    with pytest.raises(xstable.NonFiniteError):
        model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=3,
            shuffle=False,
            verbose=0,
            callbacks=[
                keras.callbacks.BackupAndRestore(backup_dir),
                recorder,
                NaNSentinel(report_dir=None, on_nonfinite="raise", verbose=0),
                PoisonWeights(epoch=1, batch=1),
            ],
        )
    # The backup survives the exception (BackupAndRestore deletes it only on success) and
    # holds the finite end-of-epoch-0 state.
    with open(os.path.join(backup_dir, "training_metadata.json")) as handle:
        assert json.load(handle)["epoch"] == 1
    end_of_epoch_0 = recorder.before[(1, 0)][0]
    _assert_bit_identical(
        _weights_in_file(os.path.join(backup_dir, "latest.weights.h5")), end_of_epoch_0, "backup"
    )

    # A fresh run resumes at epoch 1 from that backup and finishes with finite weights.
    resumed = _model()
    resumed_recorder = StateRecorder()
    history = resumed.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[
            keras.callbacks.BackupAndRestore(backup_dir),
            resumed_recorder,
            NaNSentinel(report_dir=None, verbose=0),
        ],
    )
    assert len(history.history["loss"]) == 2
    _assert_bit_identical(resumed_recorder.before[(1, 0)][0], end_of_epoch_0, "resumed weights")
    assert all(np.isfinite(w).all() for w in _numpy_copies(resumed.weights))
    assert not os.path.exists(backup_dir), "a finished run deletes its backup"


def test_batch_frequency_backup_listed_after_the_sentinel_never_holds_nan(tmp_path):
    x, y = _data()
    backup_dir = str(tmp_path / "backup")
    model = _model()
    recorder = StateRecorder()
    with pytest.raises(xstable.NonFiniteError):
        model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=2,
            shuffle=False,
            verbose=0,
            callbacks=[
                recorder,
                NaNSentinel(report_dir=None, on_nonfinite="raise", verbose=0),
                keras.callbacks.BackupAndRestore(backup_dir, save_freq=1),
                PoisonWeights(epoch=0, batch=2),
            ],
        )
    # The last backup was written after batch 1, i.e. the state before batch 2, which is
    # exactly the state the sentinel restored.
    _assert_bit_identical(
        _weights_in_file(os.path.join(backup_dir, "latest.weights.h5")),
        recorder.before[(0, 2)][0],
        "batch-level backup",
    )
    _assert_bit_identical(_numpy_copies(model.weights), recorder.before[(0, 2)][0], "model")
