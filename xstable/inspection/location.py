"""The answer of `first_nonfinite` and `locate_nonfinite`: where the first NaN/Inf arose."""

import dataclasses

__all__ = ["NonFiniteLocation"]

STAGES = ("input", "target", "forward", "loss", "backward", "update")


@dataclasses.dataclass
class NonFiniteLocation:
    """Where the first non-finite value of a training step arose.

    Attributes:
        stage: `"input"`, `"target"`, `"forward"`, `"loss"`, `"backward"` or `"update"`.
        layer_path: Path of the responsible layer from the outermost model down, e.g.
            `"outer_model/inner_block/dense_2"`; `None` for the data and the loss function.
        tensor: Which tensor holds the value: `"input"`, `"target"`, `"sample_weight"`,
            `"output"`, `"weight"`, `"gradient"`, `"loss"` or `"update"`.
        rows: Batch rows responsible, where that can be determined (else empty).
        count: Number of non-finite values in that tensor.
        last_finite_magnitudes: `(path, max_abs)` pairs for the last finite tensors leading
            up to it (layer outputs in the forward pass, gradients in the backward pass).
        fix: One-line suggestion of what fixes it.
        detail: One sentence with specifics (which input key, which variable, which op kind).
    """

    stage: str
    layer_path: str | None
    tensor: str
    rows: list = dataclasses.field(default_factory=list)
    count: int = 0
    last_finite_magnitudes: list = dataclasses.field(default_factory=list)
    fix: str = ""
    detail: str = ""

    def to_dict(self):
        """Returns a JSON-serializable dict of every attribute."""
        return {
            "stage": self.stage,
            "layer_path": self.layer_path,
            "tensor": self.tensor,
            "rows": [int(r) for r in self.rows],
            "count": int(self.count),
            "last_finite_magnitudes": [
                [str(path), float(value)] for path, value in self.last_finite_magnitudes
            ],
            "fix": self.fix,
            "detail": self.detail,
        }

    def __str__(self):
        where = f" in `{self.layer_path}`" if self.layer_path else ""
        lines = [
            f"First non-finite value: stage={self.stage}{where}, tensor={self.tensor}, "
            f"{self.count} non-finite value(s)."
        ]
        if self.detail:
            lines.append(f"  {self.detail}")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:20])
            more = f" (+{len(self.rows) - 20} more)" if len(self.rows) > 20 else ""
            lines.append(f"  Batch rows: {shown}{more}")
        if self.last_finite_magnitudes:
            lines.append("  Last finite magnitudes (max |value|) leading up to it:")
            for path, value in self.last_finite_magnitudes:
                lines.append(f"    {path}: {value:.4g}")
        if self.fix:
            lines.append(f"  Fix: {self.fix}")
        return "\n".join(lines)
