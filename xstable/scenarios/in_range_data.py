"""Seed document 002, "Why is the training loss NaN despite all training data being within range?".

Three examples: sigmoid layers on inputs of scale 1000 with binary cross-entropy, an output
bias forced to 10 before binary cross-entropy, and a log-based custom loss with RMSprop. The
document gives each a failure and describes its fix in prose.
"""

import functools

import keras
from keras import ops

from xstable.scenarios import _porting as p
from xstable.scenarios import xstable_fixes as fixes
from xstable.scenarios.handwritten_bce import handwritten_binary_crossentropy
from xstable.scenarios.preprocessing import standard_scale
from xstable.scenarios.scenario import Scenario, Variant, expect

__all__ = ["DOCUMENT", "TITLE", "log_abs_error_squared", "scenarios"]

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


def _compile(optimizer, loss):
    # A string names a fresh optimizer; a callable builds one (optimizers hold state).
    return lambda: {
        "optimizer": optimizer if isinstance(optimizer, str) else optimizer(),
        "loss": loss,
    }


# Example 1: sigmoid hidden layer, inputs of scale 1000.
def _large_input_data():
    rng = p.rng()
    x = rng.random((100, 10)) * 1000
    y = rng.integers(0, 2, 100)
    return p.float32(x, y)


def _standardized_data():
    x, y = _large_input_data()
    return p.float32(standard_scale(x), y)


def _sigmoid_classifier():
    return p.sequential(
        10,
        keras.layers.Dense(100, activation="sigmoid"),
        keras.layers.Dense(1, activation="sigmoid"),
    )


def _sigmoid_spec(name, make_data, optimizer="adam", loss="binary_crossentropy"):
    return p.spec(
        f"in_range_data.sigmoid_unscaled.{name}",
        _sigmoid_classifier,
        make_data,
        _compile(optimizer, loss),
        epochs=10,
    )


def _sigmoid_scenario():
    return Scenario(
        id="in_range_data.sigmoid_unscaled",
        document=DOCUMENT,
        title=TITLE,
        example=1,
        claim="Inputs of scale 1000 into sigmoid layers explode the gradients and make "
        "binary cross-entropy training fail; scaling the inputs fixes it.",
        claimed_outcome="nan",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _sigmoid_spec("failure", _large_input_data),
                summary="Dense(100, sigmoid) + Dense(1, sigmoid), Adam, BCE, x in [0, 1000)",
                origin="document",
                changes=_COMMON + (_LABELS, p.pinned_fit(10)),
                expected=expect("ok"),
            ),
            "stress": Variant(
                kind="stress",
                make_spec=lambda: _sigmoid_spec(
                    "stress",
                    _large_input_data,
                    lambda: keras.optimizers.Adam(learning_rate=1.0),
                    handwritten_binary_crossentropy,
                ),
                summary="the failure with a hand-written BCE and Adam(1.0)",
                origin="ours",
                changes=_COMMON
                + (_LABELS, p.pinned_fit(10), p.STRESS_HANDWRITTEN_BCE, p.stress_adam(1.0)),
                expected=expect("nan"),
            ),
            "document_fix": Variant(
                kind="document_fix",
                make_spec=lambda: _sigmoid_spec("document_fix", _standardized_data),
                summary="StandardScaler on x (the fix named in the document's comment)",
                origin="derived",
                changes=_COMMON
                + (
                    _LABELS,
                    p.pinned_fit(10),
                    "the fix is the document's comment 'Data scaling using StandardScaler' "
                    "turned into code (`standard_scale`, checked against scikit-learn)",
                ),
                expected=expect("ok"),
            ),
            "xstable_fix": fixes.fix_variant(
                "in_range_data.sigmoid_unscaled",
                lambda: _sigmoid_spec(
                    "stress",
                    _large_input_data,
                    lambda: keras.optimizers.Adam(learning_rate=1.0),
                    handwritten_binary_crossentropy,
                ),
                _SIGMOID_FIX,
                _COMMON + (_LABELS, p.pinned_fit(10), p.stress_adam(1.0)),
            ),
        },
    )


# Example 2: the output bias forced to 10.
def _unit_data():
    rng = p.rng()
    x = rng.random((100, 10))
    y = rng.integers(0, 2, 100)
    return p.float32(x, y)


def _relu_classifier(output_bias=None):
    model = p.sequential(
        10,
        keras.layers.Dense(10, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    )
    if output_bias is not None:
        model.layers[-1].bias.assign([output_bias])
    return model


def _bias_spec(name, output_bias, loss="binary_crossentropy"):
    return p.spec(
        f"in_range_data.saturated_bias.{name}",
        functools.partial(_relu_classifier, output_bias),
        _unit_data,
        _compile("adam", loss),
        epochs=1,
    )


def _bias_scenario():
    return Scenario(
        id="in_range_data.saturated_bias",
        document=DOCUMENT,
        title=TITLE,
        example=2,
        claim="An output bias of 10 saturates the sigmoid and makes binary cross-entropy "
        "take the log of ~0, so training fails.",
        claimed_outcome="nan",
        xstable_fix_note="Not `ok`: one epoch is 4 steps on labels drawn at random, independent "
        "of x; starting from the prior's logit and training on logits, the fix ends closest to "
        "the prior's loss, but no variant (the document's fix included) gets below it.",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _bias_spec("failure", 10.0),
                summary="Dense(10, relu) + Dense(1, sigmoid), output bias assigned 10, "
                "Adam, BCE, 1 epoch",
                origin="document",
                changes=_COMMON
                + (
                    _LABELS,
                    p.pinned_fit(1),
                    "the model is built, then its output bias assigned (as the document "
                    "does), before its initial weights are taken",
                ),
                expected=expect("stalled"),
            ),
            "stress": Variant(
                kind="stress",
                make_spec=lambda: _bias_spec("stress", 20.0, handwritten_binary_crossentropy),
                summary="a hand-written BCE and the output bias forced to 20",
                origin="ours",
                changes=_COMMON
                + (
                    _LABELS,
                    p.pinned_fit(1),
                    p.STRESS_HANDWRITTEN_BCE,
                    "ours: output bias 10 -> 20 (sigmoid(z) rounds to exactly 1.0 in "
                    "float32 from z ~ 17; with bias 10 even the hand-written BCE stays "
                    "finite, measured at Adam learning rates 0.001 to 1)",
                ),
                expected=expect("nan"),
            ),
            "document_fix": Variant(
                kind="document_fix",
                make_spec=lambda: _bias_spec("document_fix", None),
                summary="the output bias left at its initial 0 (the cause the document names)",
                origin="derived",
                changes=_COMMON
                + (
                    _LABELS,
                    p.pinned_fit(1),
                    "the document gives no fix in code; its commentary names the forced "
                    "bias as the cause, so the fix leaves the bias untouched",
                ),
                expected=expect("stalled"),
            ),
            "xstable_fix": fixes.fix_variant(
                "in_range_data.saturated_bias",
                lambda: _bias_spec("stress", 20.0, handwritten_binary_crossentropy),
                _BIAS_FIX,
                _COMMON
                + (
                    _LABELS,
                    p.pinned_fit(1),
                    "ours: output bias forced to 20 as in the stress variant",
                ),
                expected=expect("stalled"),
            ),
        },
    )


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


def _linear_stack():
    return p.sequential(10, keras.layers.Dense(10), keras.layers.Dense(1))


def _log_loss_spec(name, optimizer):
    return p.spec(
        f"in_range_data.log_loss_rmsprop.{name}",
        _linear_stack,
        _linear_data,
        _compile(optimizer, log_abs_error_squared),
        epochs=10,
    )


def _log_loss_scenario():
    return Scenario(
        id="in_range_data.log_loss_rmsprop",
        document=DOCUMENT,
        title=TITLE,
        example=3,
        claim="A custom loss mean(log(1 + |error|)^2) with RMSprop is numerically unstable "
        "and can make training NaN; switching to Adam helps.",
        claimed_outcome="nan",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _log_loss_spec("failure", "rmsprop"),
                summary="Dense(10) + Dense(1), RMSprop, custom log loss",
                origin="document",
                changes=_COMMON
                + (
                    "`tf.reduce_mean`, `tf.math.log`, `tf.abs` -> `keras.ops.mean`, "
                    "`ops.log`, `ops.abs` (same formula, any backend)",
                    p.pinned_fit(10),
                ),
                expected=expect("stalled"),
            ),
            "document_fix": Variant(
                kind="document_fix",
                make_spec=lambda: _log_loss_spec("document_fix", "adam"),
                summary="Adam instead of RMSprop (the commentary's first suggestion)",
                origin="derived",
                changes=_COMMON
                + (
                    "`tf.reduce_mean`, `tf.math.log`, `tf.abs` -> `keras.ops` equivalents",
                    p.pinned_fit(10),
                    "the document gives no fix in code; its commentary suggests switching "
                    "optimizers 'like Adam', so the fix uses 'adam'",
                ),
                expected=expect("stalled"),
            ),
        },
        no_stress_reason="None found: the loss log(1 + |e|)^2 is finite for every finite error "
        "and its gradient 2 log(1 + |e|) / (1 + |e|) is at most 0.81, so weights grow at most "
        "polynomially. Searched (torch, NumPy initial weights): RMSprop at learning rates 0.1, "
        "10, 1e3, 1e6 and SGD at 0.01, 10, 1000; every run stayed finite.",
    )


def scenarios():
    """Returns this document's scenarios, in the document's order."""
    return [_sigmoid_scenario(), _bias_scenario(), _log_loss_scenario()]
