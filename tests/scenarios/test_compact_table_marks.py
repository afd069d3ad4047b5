"""README's compact table says when an xstable fix ends above its document fix."""

import keras

from xstable.scenarios.summary_table import render_compact_table
from xstable.training import RunResult


def _result(variant, final_loss, backend, outcome="ok"):
    return RunResult(
        name=f"s.{variant}",
        losses=[final_loss],
        steps_per_epoch=[1],
        first_nonfinite_step=None,
        first_nonfinite_epoch=None,
        first_nonfinite_batch=None,
        final_loss=final_loss,
        weights_finite=True,
        outcome=outcome,
        trivial_loss=1.0,
        backend=backend,
        device="cpu",
        versions={},
        seed=0,
        jit_compile=False,
        wall_time_s=0.0,
        stopped_early=False,
        extra={"scenario": "s", "variant": variant},
    )


def _row(document, mine_by_backend):
    results = [_result("failure", 5.0, b, "stalled") for b in mine_by_backend]
    results += [_result("document_fix", document, b) for b in mine_by_backend]
    results += [_result("xstable_fix", loss, b) for b, loss in mine_by_backend.items()]
    return render_compact_table(results).splitlines()[-1]


def test_an_xstable_fix_above_the_document_fix_is_marked():
    backend = keras.config.backend()
    assert _row(0.2, {backend: 0.9}).endswith("| **ok 0.9 (0.9x)** (above the document fix) |")
    # Within the noise margin, or below: no mark.
    assert _row(0.9, {backend: 0.93}).endswith("| **ok 0.93 (0.93x)** |")
    assert _row(0.9, {backend: 0.5}).endswith("| **ok 0.5 (0.5x)** |")


def test_the_mark_names_the_backends_when_not_all():
    row = _row(0.5, {"tensorflow": 0.4, "torch": 0.9, "jax": 0.4})
    assert row.endswith("(above the document fix on PyTorch) |"), row
