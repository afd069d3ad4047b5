"""diagnose() and the scenarios' xstable fixes agree: each fix is what diagnose recommends.

For every scenario with an `xstable_fix`, the warnings and errors diagnose() gives for the
setting it starts from (the stress variant) are the findings the fix declares it answers, and
once the fix is applied diagnose() no longer gives them.
"""

import keras
import numpy as np
import pytest

from xstable.diagnosis._model_checks import suggested_learning_rate
from xstable.diagnosis.diagnose import diagnose
from xstable.scenarios import all_scenarios
from xstable.scenarios.initial_weights import portable_weights_for_spec

FIXED = [s for s in all_scenarios() if "xstable_fix" in s.variants]
# With 4 rows, the robust z-score of a value clipped to 5 robust units is still above 10, and
# that value times the initial kernel moves the rescaled output of one row of four far from
# the targets' mean.
STILL_FLAGGED = {"linear_fit.robust_scaler_sgd": {"input-outlier", "output-far-from-targets"}}


def _problems(spec):
    # The weights the scenario runs start from, the same on every backend.
    weights = portable_weights_for_spec(spec)
    model = spec.build_model()
    model.set_weights(weights)
    x, y = spec.make_data()
    model.compile(**spec.make_compile_args())
    report = diagnose(model, x, y, training_step=False)
    return report, {f.code for f in report.findings if f.severity in ("warning", "error")}


def _fix(scenario):
    return set(scenario.variant("xstable_fix").fix.answers)


@pytest.mark.parametrize("scenario", FIXED, ids=[s.id for s in FIXED])
def test_the_xstable_fix_answers_what_diagnose_finds_and_clears_it(scenario):
    report, found = _problems(scenario.variant("stress").spec())
    answers = _fix(scenario)
    assert found == answers, f"{scenario.id}: diagnose finds {found}, the fix answers {answers}"
    _, left = _problems(scenario.variant("xstable_fix").spec())
    assert left <= STILL_FLAGGED.get(scenario.id, set()), f"{scenario.id}: still {left}"


@pytest.mark.parametrize("scenario", FIXED, ids=[s.id for s in FIXED])
def test_the_fix_uses_the_learning_rate_diagnose_suggests(scenario):
    report, _ = _problems(scenario.variant("stress").spec())
    suggested = {
        f.evidence["suggested_learning_rate"]
        for f in report.findings
        if f.code == "learning-rate-too-large"
    }
    changes = " ".join(scenario.variant("xstable_fix").changes)
    for rate in suggested:
        assert f"learning rate -> {rate:g}" in changes, (scenario.id, rate)


def test_suggested_learning_rate_is_a_tenth_rounded_down_to_1_2_5():
    assert suggested_learning_rate(0.28) == 0.02
    assert suggested_learning_rate(1.0) == 0.1
    assert suggested_learning_rate(0.117) == 0.01
    assert suggested_learning_rate(3.0) == 0.2
    assert suggested_learning_rate(0.0) is None


def test_output_far_from_targets_recommends_rescaling_or_the_prior_logit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    y = 500.0 + 100.0 * x[:, :1]
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.layers[0].kernel.assign(np.full((3, 1), 0.5))  # the same start on every backend
    model.compile(optimizer="adam", loss="mse")
    finding = diagnose(model, x, y, training_step=False).by_code("output-far-from-targets")[0]
    assert finding.fix == "keras.layers.Rescaling"
    np.testing.assert_allclose(finding.evidence["trivial_loss"], np.var(y), rtol=1e-4)
    model.add(keras.layers.Rescaling(float(np.std(y)), float(np.mean(y))))
    model.compile(optimizer="adam", loss="mse")
    report = diagnose(model, x, y, training_step=False)
    assert "output-far-from-targets" not in report.codes

    labels = (rng.random((64, 1)) < 0.25).astype("float32")
    classifier = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    classifier.layers[-1].bias.assign([20.0])
    classifier.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
    finding = diagnose(classifier, x, labels, training_step=False).by_code(
        "output-far-from-targets"
    )[0]
    p = labels.mean()
    np.testing.assert_allclose(finding.evidence["prior_logit"], np.log(p / (1 - p)), rtol=1e-5)
    assert finding.fix == "output kernel = 0, output bias = logit of the label prior"
    # Applied as it says, every row starts at the prior and the finding is gone.
    output = classifier.layers[-1]
    output.kernel.assign(keras.ops.zeros(output.kernel.shape))
    output.bias.assign([finding.evidence["prior_logit"]])
    report = diagnose(classifier, x, labels, training_step=False)
    assert "output-far-from-targets" not in report.codes
