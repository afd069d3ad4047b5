"""Layers that guard numerics inside a model."""

from xstable.layers.finite_check import FiniteCheck, FiniteCheckMonitor
from xstable.layers.insert_checks import insert_finite_checks

__all__ = ["FiniteCheck", "FiniteCheckMonitor", "insert_finite_checks"]
