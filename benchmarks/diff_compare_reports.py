"""Says whether two `xstable compare` report.json files hold the same results.

Used to check that a speed change to `xstable compare` leaves what it measures untouched:
every target's per-backend outcome, loss curve (bit for bit), first non-finite step, NaN
onset (stage and layer), final loss, compile mode, loss divergence, per-layer localization and
findings must be identical. Only what depends on the clock or the output folder is ignored
(wall times, timings, log and result paths).

Usage:
    python benchmarks/diff_compare_reports.py OLD/report.json NEW/report.json
Exit status 0 when identical, 1 otherwise (the differences are printed).
"""

import argparse
import json
import os
import sys

_IGNORED_KEYS = {"wall_time_s", "timings_s", "log", "result_path", "path"}


def _normalise(value, out_dir):
    if isinstance(value, dict):
        return {k: _normalise(v, out_dir) for k, v in value.items() if k not in _IGNORED_KEYS}
    if isinstance(value, list):
        return [_normalise(v, out_dir) for v in value]
    if isinstance(value, str):
        return value.replace(out_dir, "<out>")
    return value


def _differences(old, new, where=""):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if key not in old or key not in new:
                yield f"{where}/{key}: only in {'new' if key in new else 'old'}"
            else:
                yield from _differences(old[key], new[key], f"{where}/{key}")
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new)):
            yield from _differences(a, b, f"{where}[{index}]")
    elif old != new:
        yield f"{where}: {str(old)[:120]} != {str(new)[:120]}"


def _load(path):
    with open(path) as f:
        report = json.load(f)
    report = _normalise(report, os.path.dirname(os.path.abspath(path)))
    targets = {entry["target"]: entry for entry in report.pop("targets")}
    return report, targets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    args = parser.parse_args(argv)
    old_report, old_targets = _load(args.old)
    new_report, new_targets = _load(args.new)
    differences = []
    for side, missing in (("new", set(old_targets) - set(new_targets)),
                          ("old", set(new_targets) - set(old_targets))):
        differences += [f"target {t}: missing in {side}" for t in sorted(missing)]
    compared = 0
    for target in old_targets:
        if target in new_targets:
            compared += 1
            differences += [f"{target}{d}" for d in
                            _differences(old_targets[target], new_targets[target])]
    differences += [f"report{d}" for d in _differences(old_report["summary"],
                                                      new_report["summary"])]
    for line in differences:
        print(line)
    runs = sum(len(entry["runs"]) for entry in old_targets.values())
    print(f"{compared} targets ({runs} runs) compared: "
          f"{'identical' if not differences else f'{len(differences)} differences'}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
