"""Cross-backend comparison: does a model train the same on TensorFlow, PyTorch and JAX?

`compare()` (and the command `xstable compare`) trains each target in one subprocess per
backend, from the same initial weights and batch order with TF32 off, compares the per-step
losses with a reference backend, names the layer, loss or update where backends part ways,
locates NaN onsets, and writes `report.md`, `report.html`, `report.json` and loss plots. It
also compares saved models (`path/model.keras` with a `.npz` of data), their predictions
(`mode="predict"`, and step 0 of every training comparison), models with dropout or noise
statistically over several seeds, and mixed precision (`dtype_policy`). See docs/compare.md;
`xstable.testing.assert_backends_agree` wraps it for test suites.

It is safe to run in shared folders and CI: the processes exchange data only (JSON, `.npz`
without pickle) in a private folder, every file under the report folder is written atomically
without following symlinks, and SIGINT/SIGTERM stop every worker and leave a partial report.
"""

from xstable.compare.api import DTYPE_POLICIES, compare
from xstable.compare.divergence import (
    localize_divergence,
    loss_divergence,
    prediction_parity,
    stochastic_comparison,
)
from xstable.compare.findings import DEFAULT_FAIL_ON, FINDING_KINDS, parse_fail_on
from xstable.compare.report_schema import REPORT_SCHEMA, validate_report
from xstable.compare.targets import SavedModelOptions, load_spec, spec_from_dict
from xstable.compare.tolerances import DEFAULT_TOLERANCES, Tolerances

__all__ = [
    "compare",
    "DTYPE_POLICIES",
    "SavedModelOptions",
    "prediction_parity",
    "stochastic_comparison",
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
