"""The report `StabilityMonitor` writes at a failure: what, where, what was restored, which rows."""

import datetime
import json
import math
import os

import keras
import numpy as np

from xstable.callbacks._atomic_write import atomic_write_text
from xstable.runtime import library_versions

__all__ = [
    "REPORT_JSON_NAME",
    "REPORT_TEXT_NAME",
    "format_report_text",
    "locate_in_data",
    "new_report",
    "offending_rows",
    "write_report",
]

REPORT_JSON_NAME = "nonfinite_report.json"
REPORT_TEXT_NAME = "nonfinite_report.txt"

_LOCATE_UNAVAILABLE = (
    "Pass `data=(x, y)` (and the `batch_size` given to `fit`) to StabilityMonitor so that it "
    "can replay the offending batch with `xstable.diagnosis.locate_nonfinite`."
)


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf": JSON has no literal for them.
    return value


def jsonable(obj):
    """`obj` with NumPy scalars and arrays as Python values and non-finite floats as strings."""
    if isinstance(obj, dict):
        return {str(key): jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(value) for value in obj]
    if isinstance(obj, (np.floating, float)):
        return _json_number(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def log_value(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def new_report(trigger, what, logs, action):
    """The report's fields known at the failure; the caller fills in the restore and rows."""
    return {
        "report": "xstable.callbacks.StabilityMonitor",
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "trigger": trigger,
        "what": what,
        "logs": {key: log_value(value) for key, value in (logs or {}).items()},
        "restored": {"done": False, "why": "the policy keeps no state"},
        "action": action,
        "offending_batch": None,
        "data_nonfinite_rows": None,
        "locate_nonfinite": None,
        "environment": library_versions(),
    }


def _num_rows(x):
    leaves = keras.tree.flatten(x)
    return int(np.shape(leaves[0])[0]) if leaves else 0


def _slice_rows(part, start, stop):
    if part is None:
        return None
    return keras.tree.map_structure(lambda array: array[start:stop], part)


def offending_rows(epoch, first_batch, last_batch, data, batch_size):
    """The failing batches, numbered as Keras numbers them, and their rows in `data`."""
    description = {
        "epoch": epoch,
        "first_batch": first_batch,
        "last_batch": last_batch,
        "rows": None,
        "rows_valid_only_if": "fit(..., shuffle=False) with the same batch_size",
    }
    if data is not None and batch_size is not None:
        start = first_batch * batch_size
        stop = (last_batch + 1) * batch_size
        n = _num_rows(data[0])
        description["rows"] = [start, min(stop, n)] if start < n else None
    return description


def nonfinite_rows(data, limit=20):
    """Rows of the training data holding NaN or Inf, per part (x, y, sample_weight)."""
    found = {}
    for name, part in zip(("x", "y", "sample_weight"), data, strict=False):
        if part is None:
            continue
        bad_rows = None
        for leaf in keras.tree.flatten(part):
            array = np.asarray(leaf)
            if not np.issubdtype(array.dtype, np.floating):
                continue
            rows = ~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
            bad_rows = rows if bad_rows is None else (bad_rows | rows)
        if bad_rows is not None and bad_rows.any():
            indices = np.flatnonzero(bad_rows)
            found[name] = {"count": int(indices.size), "first_rows": indices[:limit].tolist()}
    return found


def locate_in_data(model, data, offending_batch):
    """Replays the offending batch with `locate_nonfinite` from the model's current state."""
    if data is None:
        return {"skipped": _LOCATE_UNAVAILABLE}
    if offending_batch is None:
        return {"skipped": "the offending batch is not known: the failure was found at epoch end"}
    if offending_batch["rows"] is None:
        return {"skipped": "the offending batch lies outside `data`"}
    start, stop = offending_batch["rows"]
    pieces = [_slice_rows(part, start, stop) for part in data]
    sample_weight = pieces[2] if len(pieces) == 3 else None
    from xstable.diagnosis import locate_nonfinite

    try:
        location = locate_nonfinite(model, pieces[0], pieces[1], sample_weight=sample_weight)
    except Exception as error:  # The report must still be written.
        return {"error": f"{type(error).__name__}: {error}"}
    if location is None:
        return {
            "found": False,
            "why": "one training step on this batch from the restored weights is finite; "
            "the failure needs the steps between the kept state and the failure, or the "
            "batch was shuffled (use snapshot_every=1 and fit(shuffle=False) to replay "
            "it exactly)",
        }
    data_rows = [start + int(row) for row in getattr(location, "rows", [])]
    return {
        "found": True,
        "location": location.to_dict(),
        "data_rows": data_rows,
        "summary": str(location),
    }


def write_report(report_dir, report, text):
    """Writes the JSON and text reports atomically; returns their paths."""
    json_path = atomic_write_text(
        os.path.join(report_dir, REPORT_JSON_NAME),
        json.dumps(report, indent=2, allow_nan=False) + "\n",
    )
    text_path = atomic_write_text(os.path.join(report_dir, REPORT_TEXT_NAME), text)
    return {"json": json_path, "text": text_path}


def format_report_text(report):
    """Renders a report dict as readable text."""
    trigger = report["trigger"]
    lines = ["StabilityMonitor report", "=" * 23, ""]
    where = f"epoch {trigger['epoch']}"
    if trigger["batch"] is not None:
        where += f", batch {trigger['batch']} (global step {trigger['global_step']})"
    else:
        where += " (end of epoch)"
    lines.append(f"What:   non-finite {trigger['kind']} `{trigger['name']}` = {trigger['value']}")
    lines.append(f"        ({report['what']})")
    lines.append(f"When:   {where}")
    lines.append(f"Action: training {report['action']}")
    restored = report["restored"]
    if restored["done"]:
        exact = (
            "exactly the state before the failing step"
            if restored["exact_state_before_failing_step"]
            else "an older state"
        )
        lines.append(
            f"Restored: weights and optimizer state from before global step "
            f"{restored['snapshot_before_global_step']}; {exact}; "
            f"{restored['model_variables']} model and {restored['optimizer_variables']} "
            f"optimizer variables."
        )
    else:
        lines.append(f"Restored: nothing ({restored['why']})")
    logged = ", ".join(f"{key}={value}" for key, value in sorted(report["logs"].items()))
    lines.append(f"Logs:   {logged or '(none)'}")
    batch = report.get("offending_batch")
    if batch:
        rows = batch["rows"]
        rows_text = (
            f"rows {rows[0]}..{rows[1] - 1} of `data` (valid only with "
            f"{batch['rows_valid_only_if']})"
            if rows
            else "rows unknown (no `data` given)"
        )
        lines.append(
            f"Offending batch: epoch {batch['epoch']}, batches {batch['first_batch']}.."
            f"{batch['last_batch']}: {rows_text}"
        )
    found = report.get("data_nonfinite_rows")
    if found:
        for part, info in found.items():
            lines.append(
                f"Training data: `{part}` has {info['count']} row(s) with NaN/Inf, first: "
                f"{info['first_rows']}"
            )
    elif found == {}:
        lines.append("Training data: no NaN/Inf anywhere in `data`.")
    locate = report.get("locate_nonfinite") or {}
    lines.append("")
    lines.append("locate_nonfinite on the offending batch:")
    if locate.get("found"):
        lines.extend("  " + line for line in str(locate["summary"]).splitlines())
        if locate.get("data_rows"):
            lines.append(f"  Those batch rows are rows {locate['data_rows'][:20]} of `data`.")
    elif "skipped" in locate:
        lines.append(f"  skipped: {locate['skipped']}")
    elif "error" in locate:
        lines.append(f"  failed: {locate['error']}")
    else:
        lines.append(f"  nothing non-finite: {locate.get('why', '')}")
    env = report["environment"]
    lines.append("")
    lines.append(
        f"Environment: keras {env['keras']}, {env['backend']} {env['backend_version']}, "
        f"numpy {env['numpy']}, python {env['python']}; written {report['time_utc']}"
    )
    return "\n".join(lines) + "\n"
