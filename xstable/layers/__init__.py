"""Keras layers for numerically stable models."""

from xstable.layers.auto_scale import AutoScale

__all__ = [
    "AutoScale",
]
