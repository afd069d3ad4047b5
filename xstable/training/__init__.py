"""Reproducible training runs: one spec, trained the same way on any Keras backend.

A `TrainingSpec` says how to build the model, make the data and compile; `run_spec` trains it
with a batch order fixed by NumPy (not by the backend's shuffling) and records every step's loss.
The scenarios (`xstable.scenarios`) and the cross-backend comparison (`xstable compare`) are
built on it.
"""

from xstable.training.batch_order import batch_order
from xstable.training.run_result import RunResult
from xstable.training.run_spec import run_spec
from xstable.training.training_spec import TrainingSpec

__all__ = ["TrainingSpec", "RunResult", "batch_order", "run_spec"]
