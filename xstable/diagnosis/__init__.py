"""Finding where NaN and Inf come from: `locate_nonfinite` and its `NonFiniteLocation`."""

from xstable.diagnosis.diagnose import diagnose
from xstable.diagnosis.findings import DiagnosisReport, Finding
from xstable.diagnosis.locate import NonFiniteLocation, locate_nonfinite

__all__ = ["NonFiniteLocation", "locate_nonfinite", "diagnose", "DiagnosisReport", "Finding"]
