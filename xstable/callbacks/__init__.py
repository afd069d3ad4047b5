"""Keras callbacks that watch training for non-finite values."""

from xstable.callbacks.nan_sentinel import NaNSentinel

__all__ = ["NaNSentinel"]
