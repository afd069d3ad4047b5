"""One training step taken apart: `record_step` records it, `first_nonfinite` reads it.

The recording (`StepRecording`) holds every layer call of the forward pass, the loss, the
gradients and the update as names and arrays, so it can cross a process boundary.
`xstable.diagnosis.locate_nonfinite` and `diagnose`, and `xstable compare`'s per-layer
localization all read recordings.
"""

from xstable.inspection.first_nonfinite import first_nonfinite
from xstable.inspection.location import NonFiniteLocation
from xstable.inspection.record import record_step
from xstable.inspection.recording import LayerCall, StepRecording, VariableRecord

__all__ = [
    "LayerCall",
    "NonFiniteLocation",
    "StepRecording",
    "VariableRecord",
    "first_nonfinite",
    "record_step",
]
