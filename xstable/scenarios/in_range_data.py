"""Seed document 002, "Why is the training loss NaN despite all training data being within range?".

Three examples: sigmoid layers on inputs of scale 1000 with binary cross-entropy, an output
bias forced to 10 before binary cross-entropy, and a log-based custom loss with RMSprop. The
document gives each a failure and describes its fix in prose.
"""

import keras
from keras import ops

from xstable.scenarios import _porting as p
from xstable.scenarios import xstable_fixes as fixes
from xstable.scenarios._stress import handwritten_bce_stress
from xstable.scenarios.declaration import Case, DenseStack, FixCase, SeedExample, Setting
from xstable.scenarios.handwritten_bce import handwritten_binary_crossentropy
from xstable.scenarios.preprocessing import standard_scale
from xstable.scenarios.scenario import expect

__all__ = ["DOCUMENT", "TITLE", "EXAMPLES", "log_abs_error_squared"]

DOCUMENT = "002_274eff1696522b9c.txt"
TITLE = "Why is the training loss NaN despite all training data being within range?"
_COMMON = (p.KERAS3, p.INPUT, p.SEEDED_DATA, p.FLOAT32, p.TRY_EXCEPT)
# What diagnose() says for each stress variant.
_SIGMOID_FIX = fixes.XstableFix(
    answers=("learning-rate-too-large", "custom-loss", "saturated-activation"),
    auto_scale={},
    logits=True,
    learning_rate=0.01,
    guard=fixes.GUARD,
)
_BIAS_FIX = fixes.XstableFix(
    answers=("custom-loss", "output-far-from-targets"),
    logits=True,
    start_at_trivial=True,
)
_LABELS = "integer labels `randint(0, 2)` -> float32 (binary cross-entropy takes float targets)"


# Example 1: sigmoid hidden layer, inputs of scale 1000.
def _large_input_data():
    rng = p.rng()
    x = rng.random((100, 10)) * 1000
    y = rng.integers(0, 2, 100)
    return p.float32(x, y)


def _standardized_data():
    x, y = _large_input_data()
    return p.float32(standard_scale(x), y)


_SIGMOID_FAILURE = Setting(
    DenseStack(10, ((100, "sigmoid"), (1, "sigmoid"))),
    _large_input_data,
    epochs=10,
    loss="binary_crossentropy",
)


# Example 2: the output bias forced to 10.
def _unit_data():
    rng = p.rng()
    x = rng.random((100, 10))
    y = rng.integers(0, 2, 100)
    return p.float32(x, y)


def _relu_classifier(output_bias):
    return DenseStack(10, ((10, "relu"), (1, "sigmoid")), output_bias=output_bias)


_BIAS_10 = Setting(_relu_classifier(10.0), _unit_data, epochs=1, loss="binary_crossentropy")


# Example 3: log-based custom loss with RMSprop.
@keras.saving.register_keras_serializable(package="xstable")
def log_abs_error_squared(y_true, y_pred):
    """The document's custom loss, `mean(log(1 + |y_true - y_pred|) ** 2)`, in `keras.ops`.

    Args:
        y_true: tensor of targets.
        y_pred: tensor of predictions, same shape.

    Returns:
        Scalar tensor.

    Formula:

    ```
    loss = mean(log(1 + |y_true - y_pred|) ** 2)
    ```
    """
    return ops.mean(ops.log(1 + ops.abs(y_true - y_pred)) ** 2)


def _linear_data():
    rng = p.rng()
    x = rng.random((100, 10))
    y = rng.random((100, 1))
    return p.float32(x, y)


_LOG_LOSS_RMSPROP = Setting(
    DenseStack(10, ((10, None), (1, None))),
    _linear_data,
    epochs=10,
    optimizer="rmsprop",
    loss=log_abs_error_squared,
)

EXAMPLES = (
    SeedExample(
        id="in_range_data.sigmoid_unscaled",
        number=1,
        claim="Inputs of scale 1000 into sigmoid layers explode the gradients and make "
        "binary cross-entropy training fail; scaling the inputs fixes it.",
        claimed_outcome="nan",
        changes=_COMMON + (_LABELS, p.pinned_fit(10)),
        failure=Case(
            _SIGMOID_FAILURE,
            summary="Dense(100, sigmoid) + Dense(1, sigmoid), Adam, BCE, x in [0, 1000)",
            origin="document",
            expected=expect("ok"),
        ),
        stress=handwritten_bce_stress(
            _SIGMOID_FAILURE, "the failure with a hand-written BCE and Adam(1.0)"
        ),
        document_fix=Case(
            _SIGMOID_FAILURE.replace(data=_standardized_data),
            summary="StandardScaler on x (the fix named in the document's comment)",
            origin="derived",
            expected=expect("ok"),
            changes=(
                "the fix is the document's comment 'Data scaling using StandardScaler' "
                "turned into code (`standard_scale`, checked against scikit-learn)",
            ),
        ),
        xstable_fix=FixCase(_SIGMOID_FIX, changes=(p.stress_adam(1.0),)),
    ),
    SeedExample(
        id="in_range_data.saturated_bias",
        number=2,
        claim="An output bias of 10 saturates the sigmoid and makes binary cross-entropy "
        "take the log of ~0, so training fails.",
        claimed_outcome="nan",
        changes=_COMMON + (_LABELS, p.pinned_fit(1)),
        failure=Case(
            _BIAS_10,
            summary="Dense(10, relu) + Dense(1, sigmoid), output bias assigned 10, "
            "Adam, BCE, 1 epoch",
            origin="document",
            expected=expect("stalled"),
            changes=(
                "the model is built, then its output bias assigned (as the document "
                "does), before its initial weights are taken",
            ),
        ),
        stress=Case(
            _BIAS_10.replace(model=_relu_classifier(20.0), loss=handwritten_binary_crossentropy),
            summary="a hand-written BCE and the output bias forced to 20",
            origin="ours",
            expected=expect("nan"),
            changes=(
                p.STRESS_HANDWRITTEN_BCE,
                "ours: output bias 10 -> 20 (sigmoid(z) rounds to exactly 1.0 in "
                "float32 from z ~ 17; with bias 10 even the hand-written BCE stays "
                "finite, measured at Adam learning rates 0.001 to 1)",
            ),
        ),
        document_fix=Case(
            _BIAS_10.replace(model=_relu_classifier(None)),
            summary="the output bias left at its initial 0 (the cause the document names)",
            origin="derived",
            expected=expect("stalled"),
            changes=(
                "the document gives no fix in code; its commentary names the forced "
                "bias as the cause, so the fix leaves the bias untouched",
            ),
        ),
        xstable_fix=FixCase(
            _BIAS_FIX,
            changes=("ours: output bias forced to 20 as in the stress variant",),
        ),
        xstable_fix_note="`ok` by a narrow margin (0.9999x the prior's loss): the labels are "
        "drawn at random, independent of x, and one epoch is 4 steps, so the best any model can "
        "do is the label prior; the fix starts every row there (zero output kernel, bias at the "
        "prior's logit) and stays there, while the document's fix ends 1.28x above it.",
    ),
    SeedExample(
        id="in_range_data.log_loss_rmsprop",
        number=3,
        claim="A custom loss mean(log(1 + |error|)^2) with RMSprop is numerically unstable "
        "and can make training NaN; switching to Adam helps.",
        claimed_outcome="nan",
        changes=_COMMON,
        failure=Case(
            _LOG_LOSS_RMSPROP,
            summary="Dense(10) + Dense(1), RMSprop, custom log loss",
            origin="document",
            expected=expect("stalled"),
            changes=(
                "`tf.reduce_mean`, `tf.math.log`, `tf.abs` -> `keras.ops.mean`, "
                "`ops.log`, `ops.abs` (same formula, any backend)",
                p.pinned_fit(10),
            ),
        ),
        document_fix=Case(
            _LOG_LOSS_RMSPROP.replace(optimizer="adam"),
            summary="Adam instead of RMSprop (the commentary's first suggestion)",
            origin="derived",
            expected=expect("stalled"),
            changes=(
                "`tf.reduce_mean`, `tf.math.log`, `tf.abs` -> `keras.ops` equivalents",
                p.pinned_fit(10),
                "the document gives no fix in code; its commentary suggests switching "
                "optimizers 'like Adam', so the fix uses 'adam'",
            ),
        ),
        no_stress_reason="None found: the loss log(1 + |e|)^2 is finite for every finite error "
        "and its gradient 2 log(1 + |e|) / (1 + |e|) is at most 0.81, so weights grow at most "
        "polynomially. Searched (torch, NumPy initial weights): RMSprop at learning rates 0.1, "
        "10, 1e3, 1e6 and SGD at 0.01, 10, 1000; every run stayed finite.",
    ),
)
