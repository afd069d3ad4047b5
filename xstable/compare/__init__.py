"""Cross-backend comparison: does a model train the same on TensorFlow, PyTorch and JAX?

`compare()` (and the command `xstable compare`) trains each target in one subprocess per
backend, from the same initial weights and batch order with TF32 off, compares the per-step
losses with a reference backend, names the layer, loss or update where backends part ways,
locates NaN onsets, and writes `report.md`, `report.json` and loss plots. See docs/compare.md.

It is safe to run in shared folders and CI: the processes exchange data only (JSON, `.npz`
without pickle) in a private folder, every file under the report folder is written atomically
without following symlinks, and SIGINT/SIGTERM stop every worker and leave a partial report.
"""

from xstable.compare.api import compare
from xstable.compare.divergence import localize_divergence, loss_divergence
from xstable.compare.findings import DEFAULT_FAIL_ON, FINDING_KINDS, parse_fail_on
from xstable.compare.report_schema import REPORT_SCHEMA, validate_report
from xstable.compare.targets import load_spec, spec_from_dict
from xstable.compare.tolerances import DEFAULT_TOLERANCES, Tolerances

__all__ = [
    "compare",
    "load_spec",
    "spec_from_dict",
    "loss_divergence",
    "localize_divergence",
    "Tolerances",
    "DEFAULT_TOLERANCES",
    "DEFAULT_FAIL_ON",
    "FINDING_KINDS",
    "parse_fail_on",
    "REPORT_SCHEMA",
    "validate_report",
]
