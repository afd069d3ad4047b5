"""Reproducible training runs: one spec, trained the same way on any Keras backend.

A `TrainingSpec` says how to build the model, make the data and compile; `run_spec` trains it
with a batch order fixed by NumPy (not by the backend's shuffling), records every step's loss
and says whether the model learned (`classify_outcome`: `ok`, `stalled`, `exploded`, `nan`,
against the loss of the trivial predictor, `trivial_loss`). The scenarios
(`xstable.scenarios`) and the cross-backend comparison (`xstable compare`) are built on it.
"""

from xstable.training.batch_order import batch_order
from xstable.training.outcome import EXPLODED_FACTOR, OUTCOMES, classify_outcome, trivial_loss
from xstable.training.run_result import RunResult
from xstable.training.run_spec import run_spec
from xstable.training.training_spec import TrainingSpec

__all__ = [
    "EXPLODED_FACTOR",
    "OUTCOMES",
    "TrainingSpec",
    "RunResult",
    "batch_order",
    "classify_outcome",
    "run_spec",
    "trivial_loss",
]
