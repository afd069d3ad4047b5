"""Assertions for users' test suites: does a model behave the same on several Keras backends?

```python
from xstable.testing import assert_backends_agree

def test_model_migrates():
    assert_backends_agree("my_project.specs:small_mlp", backends=["tensorflow", "jax"])
    assert_backends_agree("model.keras", data="data.npz", mode="predict")
```
"""

import tempfile

__all__ = ["assert_backends_agree"]

_ALL_BACKENDS = ("tensorflow", "torch", "jax")


def _failure_text(report, out_dir):
    from xstable.compare.report import render_verdict

    lines = [line for line in render_verdict(report) if line and not line.startswith("|")]
    fail_on = report["summary"]["fail_on"]
    for target in report["targets"]:
        for finding in target["findings"]:
            if finding["kind"] in fail_on:
                lines.append(f"- {target['target']}: {finding['kind']} on {finding['backend']}: "
                             f"{finding['message']}")
    lines.append(f"Full report: {out_dir}/report.md")
    return "\n".join(lines)


def assert_backends_agree(target, backends=_ALL_BACKENDS, *, mode="train", data=None,
                          fail_on=None, out_dir=None, **compare_kwargs):
    """Runs `xstable.compare.compare` and raises `AssertionError` unless the backends agree.

    Each backend runs in its own subprocess, so this works from a pytest process of any
    backend (the compared backends must be installed in this environment, or named with
    `python={backend: interpreter}`).

    Args:
        target: str or list of str: `module:function` specs, `file.py:function`, seed
            scenario ids or saved models `path/model.keras` (with `data`).
        backends: backends to compare; the first is the reference.
        mode: `"train"` (predictions from the shared weights, then training) or `"predict"`.
        data: `.npz` with `x` and `y` (`x` alone to predict) for saved-model targets.
        fail_on: finding kinds that fail the assertion (default: `compare`'s default,
            `prediction,stochastic,divergence,error`).
        out_dir: report folder; default: a new temporary folder (its path is in the message).
        **compare_kwargs: passed to `xstable.compare.compare` (e.g. `tolerances`, `seeds`,
            `epochs`, `batch_size`, `imports`, `timeout_s`).

    Returns:
        The report dict, when the backends agree.

    Raises:
        AssertionError: With the report's verdict and every failing finding, when a finding
            in `fail_on` occurred.
        TypeError, ValueError: As `compare` does, for invalid arguments.
    """
    from xstable.compare import DEFAULT_FAIL_ON, compare

    targets = [target] if isinstance(target, str) else list(target)
    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="xstable-agree-")
    compare_kwargs.setdefault("progress", None)
    compare_kwargs.setdefault("plots", False)
    report = compare(
        targets,
        backends=list(backends),
        out_dir=out_dir,
        fail_on=DEFAULT_FAIL_ON if fail_on is None else fail_on,
        mode=mode,
        data=data,
        **compare_kwargs,
    )
    if report["summary"]["exit_status"] != 0:
        raise AssertionError(_failure_text(report, out_dir))
    return report
