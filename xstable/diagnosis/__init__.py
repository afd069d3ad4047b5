"""Finding where NaN and Inf come from: `locate_nonfinite` and its `NonFiniteLocation`."""

from xstable.diagnosis.locate import NonFiniteLocation, locate_nonfinite

__all__ = ["NonFiniteLocation", "locate_nonfinite"]
