"""Keras callbacks that watch training for non-finite values and recover from them."""

from xstable.callbacks.nan_sentinel import NaNSentinel
from xstable.callbacks.stability_monitor import StabilityMonitor

__all__ = ["StabilityMonitor", "NaNSentinel"]
