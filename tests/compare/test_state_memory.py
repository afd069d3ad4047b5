"""The compare worker's state recording stays within its memory budget, however long the run.

The worker trains a target with a `StateRecorder` as `run_spec`'s `before_step` hook. Every
state it takes is counted while alive (weights, optimizer variables and batch of one step):
within `state_budget_bytes` the recorder may keep every step, past it only the latest two, so
at most `S + max(budget, S)` bytes of states (S: one state's size) are alive at any time,
two states once the budget is spent (docs/compare.md, "Memory").
"""

import os
import weakref

import keras
import numpy as np
import pytest

from xstable.compare import inspection
from xstable.compare.targets import target_slug
from xstable.compare.worker import _Worker
from xstable.training import TrainingSpec

STEPS = 50


def tiny_spec():
    def build_model():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                 keras.layers.Dense(1)])

    def make_data():
        x = np.random.default_rng(0).normal(size=(STEPS * 4, 4)).astype("float32")
        return x, x[:, :1] * 0.5

    return TrainingSpec(
        "tiny_state_memory",
        build_model,
        make_data,
        lambda: {"optimizer": keras.optimizers.Adam(1e-3), "loss": "mse"},
        epochs=1,
        batch_size=4,
    )


class _State(dict):
    """A recorded state that can be watched with a weak reference."""


class _Sink:
    def __init__(self):
        self.events = []

    def send(self, event, **fields):
        self.events.append({"event": event, **fields})


def _record(monkeypatch, tmp_path, budget_bytes):
    """Runs the worker's training of `tiny_spec` and watches every state it takes."""
    alive = weakref.WeakValueDictionary()
    peak = {"count": 0, "bytes": 0, "taken": 0}
    snapshot = inspection._snapshot

    def watched_snapshot(*args):
        state = _State(snapshot(*args))
        alive[peak["taken"]] = state
        peak["taken"] += 1
        states = list(alive.values())
        peak["count"] = max(peak["count"], len(states))
        peak["bytes"] = max(peak["bytes"], sum(inspection._nbytes(s) for s in states))
        return state

    monkeypatch.setattr(inspection, "_snapshot", watched_snapshot)
    tmp_path.mkdir(parents=True, exist_ok=True)
    target = f"{os.path.abspath(__file__)}:tiny_spec"
    slug = target_slug(target)
    plan = {"backend": keras.config.backend(), "weights_dir": str(tmp_path),
            "targets": [[target, slug]], "state_budget_bytes": budget_bytes}
    sink = _Sink()
    worker = _Worker(plan, sink)
    worker.build_weights()
    worker.run_target(target, slug)
    done = [e for e in sink.events if e["event"] == "done"][-1]
    assert done["status"] == "completed", done["record"].get("error")
    assert len(done["record"]["result"]["losses"]) == STEPS
    recorder = worker.recorders[target]
    assert peak["taken"] == STEPS
    return recorder, peak, inspection._nbytes(recorder.latest)


def test_past_its_budget_the_recorder_keeps_two_states_whatever_the_steps(
        monkeypatch, tmp_path):
    # Budget 0: the workers other than the reference's.
    recorder, peak, _ = _record(monkeypatch, tmp_path, 0)
    assert not recorder.complete and recorder.states == {}
    assert peak["count"] <= 2, peak
    assert recorder.state_at(STEPS - 1)["step"] == STEPS - 1
    assert recorder.state_at(STEPS - 2)["step"] == STEPS - 2
    assert recorder.state_at(STEPS - 3) is None


@pytest.mark.parametrize("states_in_budget", [3, 2 * STEPS])
def test_the_states_alive_stay_within_the_budget(monkeypatch, tmp_path, states_in_budget):
    # The state of step 0 has no optimizer variables yet; the later ones all have one size.
    state_bytes = _record(monkeypatch, tmp_path / "probe", 0)[2]
    budget = states_in_budget * state_bytes
    recorder, peak, _ = _record(monkeypatch, tmp_path / "run", budget)
    assert peak["bytes"] <= state_bytes + max(budget, state_bytes), peak
    kept = sum(inspection._nbytes(s) for s in recorder.states.values())
    assert kept <= budget
    if states_in_budget < STEPS:  # The budget ran out: two states left, whatever the steps.
        assert not recorder.complete and recorder.states == {} and peak["count"] <= 4
    else:  # Everything fits: every step is kept for the per-layer comparison.
        assert recorder.complete and sorted(recorder.states) == list(range(STEPS))
