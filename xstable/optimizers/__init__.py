"""Optimizer wrappers that keep training finite: clipping and skipping of non-finite steps."""

from xstable.optimizers.clipping import (
    adaptive_clip,
    clip_by_global_norm,
    clip_by_norm,
    clip_by_value,
    global_norm,
)
from xstable.optimizers.guard_counters import GuardCounters
from xstable.optimizers.guard_monitor import GuardMonitor
from xstable.optimizers.guarded_optimizer import GuardedOptimizer

__all__ = [
    "GuardedOptimizer",
    "GuardCounters",
    "GuardMonitor",
    "adaptive_clip",
    "clip_by_global_norm",
    "clip_by_norm",
    "clip_by_value",
    "global_norm",
]
