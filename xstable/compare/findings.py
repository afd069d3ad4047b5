"""Findings of a comparison and which of them fail the command (`--fail-on`)."""

__all__ = ["FINDING_KINDS", "DEFAULT_FAIL_ON", "parse_fail_on", "exit_status"]

FINDING_KINDS = {
    "prediction": "from the shared weights and identical inputs, a backend's model outputs "
    "differ from the reference's beyond the tensor tolerance (the first layer that differs "
    "is named)",
    "stochastic": "a model with dropout or noise layers trains measurably differently on a "
    "backend: its repeated runs (several generator seeds) differ from the reference's by a "
    "permutation test",
    "divergence": "a backend's loss parts from the reference beyond the tolerance, and the "
    "per-layer check names where (or could not run)",
    "drift": "a backend's loss parts from the reference beyond the tolerance, but from "
    "identical state the step agrees: float32 rounding amplified by the training, no op to blame",
    "nan": "a backend's run hit a non-finite loss or weight",
    "error": "the spec raised, the worker crashed, or a target timed out",
    "unavailable": "a backend is not installed or its worker could not start, or a run was "
    "not compared because it could not start from the shared initial weights",
}
DEFAULT_FAIL_ON = ("prediction", "stochastic", "divergence", "error")


def parse_fail_on(value):
    """Parses a `--fail-on` value into a tuple of finding kinds.

    Args:
        value: str, comma-separated kinds from `FINDING_KINDS`, or `"none"` or `"any"`; or an
            iterable of kinds.

    Returns:
        A tuple of kinds (empty for `"none"`).

    Raises:
        ValueError: If a kind is unknown.

    Example:

    >>> parse_fail_on("divergence,nan")
    ('divergence', 'nan')
    """
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    else:
        items = list(value)
    if items == ["none"]:
        return ()
    if items == ["any"]:
        return tuple(FINDING_KINDS)
    unknown = [v for v in items if v not in FINDING_KINDS]
    if unknown:
        raise ValueError(
            f"`fail_on` has unknown kinds {unknown}. Use a comma-separated subset of "
            f"{sorted(FINDING_KINDS)}, or `none` or `any`. Received: fail_on={value!r}."
        )
    return tuple(dict.fromkeys(items))


def exit_status(findings, fail_on):
    """Returns 1 if any finding's kind is in `fail_on`, else 0.

    (`xstable compare` exits with 2 for usage and tool errors and 130/143 when interrupted;
    those never come from findings.)
    """
    return 1 if any(f["kind"] in fail_on for f in findings) else 0
