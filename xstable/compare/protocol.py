"""The line protocol between the compare orchestrator and its per-backend worker processes.

The worker writes one JSON event per line to its event stream (its original stdout; anything
else the process prints goes to stderr, i.e. the backend's log file). The orchestrator writes
one JSON command per line to the worker's stdin. A target's result travels inside its `done`
event; states and inspections (arrays) travel as data-only `.npz` files
(`xstable.compare.exchange`) in the run's private folder, whose paths the messages name.

Events: `ready`, `weights`, `weights_done`, `start`, `done`, `trained`, `captured`,
`inspected`. Commands: `capture`, `inspect`, `exit`.
"""

import json
import os

__all__ = [
    "EVENT_PREFIX",
    "encode",
    "decode",
    "initial_weights_path",
    "weights_unavailable_path",
]

EVENT_PREFIX = "@@xstable-compare "


def encode(message):
    """Returns one protocol line for a JSON-serializable dict."""
    return EVENT_PREFIX + json.dumps(message) + "\n"


def decode(line):
    """Returns the dict of a protocol line, or `None` for any other output."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        return json.loads(line[len(EVENT_PREFIX) :])
    except json.JSONDecodeError:
        return None


def initial_weights_path(weights_dir, slug):
    """Returns where the shared initial weights of a target are stored (`.npz`)."""
    return os.path.join(weights_dir, f"{slug}.npz")


def weights_unavailable_path(weights_dir, slug):
    """Returns the marker file saying the shared initial weights of a target will not come."""
    return os.path.join(weights_dir, f"{slug}.unavailable")
