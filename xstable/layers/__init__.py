"""Keras layers for numerically stable models."""

from xstable.layers.auto_scale import AutoScale
from xstable.layers.finite_check import FiniteCheck, FiniteCheckMonitor
from xstable.layers.insert_checks import insert_finite_checks

__all__ = [
    "AutoScale",
    "FiniteCheck",
    "FiniteCheckMonitor",
    "insert_finite_checks",
]
