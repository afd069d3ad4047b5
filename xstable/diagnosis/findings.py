"""The report `xstable.diagnose` returns: findings with severity, evidence and a fix."""

import dataclasses
import json
import math

import numpy as np

__all__ = ["Finding", "DiagnosisReport", "SEVERITIES"]

# Ordered from most to least severe.
SEVERITIES = ("error", "warning", "info")


def _plain(value):
    """Converts NumPy scalars/arrays and non-finite floats to JSON-safe Python values."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, (str, int)):
        return value
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    return str(value)


def _format_number(value):
    if isinstance(value, float):
        if value == 0 or not math.isfinite(value):
            return str(value)
        if 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def _format_evidence(evidence):
    parts = []
    for key, value in evidence.items():
        if isinstance(value, list):
            shown = ", ".join(_format_number(item) for item in value[:8])
            value = f"[{shown}{', ...' if len(value) > 8 else ''}]"
        elif isinstance(value, dict):
            value = json.dumps(value)
        else:
            value = _format_number(value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem `xstable.diagnose` found, with the numbers that show it and its fix.

    Args:
        code: str. Stable identifier of the kind of problem, e.g. `"feature-scale-spread"`;
            the full list is in `docs/diagnose.md`.
        severity: str. `"error"` (training will almost surely produce NaN/Inf or wrong
            results), `"warning"` (a known cause of NaN or divergence) or `"info"`.
        title: str. One line saying what is wrong, with the key number.
        evidence: dict. The measured numbers behind the finding (counts, magnitudes, rows).
        fix: str. The component that fixes it, e.g. `"xstable.layers.AutoScale"`.
        example: str. One line of code using that component.
        why: str. A sentence on why this leads to NaN or divergence.
    """

    code: str
    severity: str
    title: str
    evidence: dict
    fix: str
    example: str
    why: str = ""

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"`severity` must be one of {SEVERITIES}. Received: severity={self.severity!r}"
            )

    def to_dict(self):
        """Returns the finding as a JSON-serializable dict."""
        return {
            "code": self.code,
            "severity": self.severity,
            "title": self.title,
            "evidence": _plain(self.evidence),
            "fix": self.fix,
            "example": self.example,
            "why": self.why,
        }

    def __str__(self):
        lines = [f"[{self.severity.upper()}] {self.code}: {self.title}"]
        if self.evidence:
            lines.append(f"    numbers: {_format_evidence(_plain(self.evidence))}")
        if self.why:
            lines.append(f"    why:     {self.why}")
        lines.append(f"    fix:     {self.fix}")
        lines.append(f"    example: {self.example}")
        return "\n".join(lines)


class DiagnosisReport:
    """What `xstable.diagnose` found: a list of findings plus what was examined.

    Printing it gives a report for people; `to_dict()` gives the same content for machines
    (JSON-serializable: non-finite numbers become the strings `"nan"`, `"inf"`, `"-inf"`).

    Args:
        findings: list of `Finding`. Sorted by severity (errors first) on construction.
        summary: dict. What was examined: backend, model, data shape, loss, optimizer.
        training_step: dict. Outcome of the one instrumented training step
            (`xstable.diagnosis.locate_nonfinite`): `{"ran": bool, "finite": bool, ...}`.
    """

    def __init__(self, findings, summary, training_step):
        order = {severity: rank for rank, severity in enumerate(SEVERITIES)}
        self.findings = sorted(findings, key=lambda finding: order[finding.severity])
        self.summary = summary
        self.training_step = training_step

    @property
    def codes(self):
        """The codes of all findings, most severe first."""
        return [finding.code for finding in self.findings]

    def by_code(self, code):
        """Returns the findings with this code (a list, possibly empty)."""
        return [finding for finding in self.findings if finding.code == code]

    def count(self, severity):
        """Number of findings of the given severity."""
        return sum(finding.severity == severity for finding in self.findings)

    @property
    def ok(self):
        """True when there are no errors and no warnings."""
        return self.count("error") == 0 and self.count("warning") == 0

    def to_dict(self):
        """Returns the whole report as a JSON-serializable dict."""
        return {
            "summary": _plain(self.summary),
            "counts": {severity: self.count(severity) for severity in SEVERITIES},
            "findings": [finding.to_dict() for finding in self.findings],
            "training_step": _plain(self.training_step),
        }

    def __iter__(self):
        return iter(self.findings)

    def __len__(self):
        return len(self.findings)

    def __str__(self):
        summary = self.summary
        lines = [
            f"xstable.diagnose: {summary.get('model', '?')} on {summary.get('backend', '?')}, "
            f"{summary.get('rows', '?')} rows; loss {summary.get('loss', '?')}, "
            f"optimizer {summary.get('optimizer', '?')}",
            ", ".join(
                f"{self.count(s)} {s}{'s' if self.count(s) != 1 else ''}" for s in SEVERITIES
            ),
            "",
        ]
        if not self.findings:
            lines.append("No problems found.")
        lines.extend(str(finding) + "\n" for finding in self.findings)
        step = self.training_step
        rows = step.get("rows") or []
        if len(rows) > 8:
            rows = f"{len(rows)} rows ({', '.join(str(r) for r in rows[:8])}, ...)"
        else:
            rows = f"rows {rows}"
        if step.get("ran"):
            if step.get("finite"):
                lines.append(f"One instrumented training step on {rows} was finite.")
            else:
                lines.append(
                    f"One instrumented training step on {rows} was "
                    "NOT finite (see the nonfinite-training-step finding)."
                )
        else:
            lines.append(f"Instrumented training step not run: {step.get('why', '')}")
        for note in summary.get("notes", []):
            lines.append(f"Note: {note}")
        return "\n".join(lines).rstrip() + "\n"

    def __repr__(self):
        return (
            f"<DiagnosisReport errors={self.count('error')} warnings={self.count('warning')} "
            f"info={self.count('info')} codes={self.codes}>"
        )
