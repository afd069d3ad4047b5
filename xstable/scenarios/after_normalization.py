"""Seed document 003, "Why are NaN values appearing in Keras output and loss, even after normalization?".

Three examples: a tanh MLP on inputs of scale 100 (claimed to explode), sigmoid layers with
binary cross-entropy on soft targets near 0 and 1, and the tanh MLP again with Adam's
`clipnorm=1.0` (the fix).
"""

import functools

import keras
import numpy as np

from xstable.scenarios import _porting as p
from xstable.scenarios import xstable_fixes as fixes
from xstable.scenarios.handwritten_bce import handwritten_binary_crossentropy
from xstable.scenarios.scenario import Scenario, Variant, expect

__all__ = ["DOCUMENT", "TITLE", "scenarios"]

DOCUMENT = "003_c52b4ecd4f715f77.txt"
TITLE = "Why are NaN values appearing in Keras output and loss, even after normalization?"
# What diagnose() says for each stress variant. Once the inputs are scaled, SGD(0.1) is
# below its stability limit, so the learning rate stays.
_TANH_FIX = fixes.XstableFix(
    answers=("sgd-step-too-large", "saturated-activation", "output-far-from-targets"),
    auto_scale={},
    start_at_trivial=True,
    guard=fixes.GUARD,
)
_SOFT_FIX = fixes.XstableFix(
    answers=("learning-rate-too-large", "custom-loss"),
    logits=True,
    learning_rate=0.01,
    guard=fixes.GUARD,
)
_COMMON = (p.KERAS3, p.INPUT, p.SEEDED_DATA, p.FLOAT32, p.pinned_fit(10))


# Examples 1 and 3: tanh MLP on inputs in [0, 100).
def _large_input_data():
    rng = p.rng()
    x = rng.random((100, 10)) * 100
    y = rng.random((100, 1))
    return p.float32(x, y)


def _tanh_mlp(activation="tanh"):
    return p.sequential(
        10,
        keras.layers.Dense(128, activation=activation),
        keras.layers.Dense(64, activation=activation),
        keras.layers.Dense(1),
    )


def _tanh_spec(name, activation="tanh", optimizer=lambda: "adam"):
    return p.spec(
        f"after_normalization.{name}",
        functools.partial(_tanh_mlp, activation),
        _large_input_data,
        lambda: {"optimizer": optimizer(), "loss": "mse"},
        epochs=10,
    )


def _sgd(learning_rate):
    return lambda: keras.optimizers.SGD(learning_rate=learning_rate)


def _tanh_stress():
    """The stress variant of examples 1 and 3 (one spec, trained once for both)."""
    return Variant(
        kind="stress",
        make_spec=lambda: _tanh_spec("tanh_large_inputs.stress", optimizer=_sgd(0.1)),
        summary="the tanh MLP with SGD(0.1) instead of Adam",
        origin="ours",
        changes=_COMMON + (p.TRY_EXCEPT, p.stress_sgd(0.1)),
        expected=expect("nan"),
    )


def _tanh_xstable_fix():
    """The xstable fix of examples 1 and 3: their stress variant with diagnose()'s fixes."""
    return fixes.fix_variant(
        "after_normalization.tanh_large_inputs",
        lambda: _tanh_spec("tanh_large_inputs.stress", optimizer=_sgd(0.1)),
        _TANH_FIX,
        _COMMON + (p.TRY_EXCEPT, p.stress_sgd(0.1)),
    )


def _tanh_scenario():
    return Scenario(
        id="after_normalization.tanh_large_inputs",
        document=DOCUMENT,
        title=TITLE,
        example=1,
        claim="A tanh MLP on inputs of scale 100 is highly susceptible to exploding "
        "gradients and a NaN loss; ReLU instead of tanh mitigates it.",
        claimed_outcome="nan",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _tanh_spec("tanh_large_inputs.failure"),
                summary="Dense(128, tanh) + Dense(64, tanh) + Dense(1), Adam, MSE, x in [0, 100)",
                origin="document",
                changes=_COMMON + (p.TRY_EXCEPT,),
                expected=expect("ok"),
            ),
            "stress": _tanh_stress(),
            "document_fix": Variant(
                kind="document_fix",
                make_spec=lambda: _tanh_spec("tanh_large_inputs.document_fix", "relu"),
                summary="ReLU instead of tanh (the commentary's first suggestion)",
                origin="derived",
                changes=_COMMON
                + (
                    p.TRY_EXCEPT,
                    "the commentary says 'Replacing tanh with ReLU ... can help'; the fix "
                    "does that (its other suggestion, clipping, is example 3)",
                ),
                expected=expect("stalled"),
            ),
            "xstable_fix": _tanh_xstable_fix(),
        },
    )


def _clipnorm_scenario():
    return Scenario(
        id="after_normalization.gradient_clipping",
        document=DOCUMENT,
        title=TITLE,
        example=3,
        claim="Adam(clipnorm=1.0) prevents the exploding gradients of the tanh MLP on "
        "inputs of scale 100.",
        claimed_outcome="ok",
        xstable_fix_note="Above the document's fix: the targets are drawn at random, "
        "independent of x, and the document's Adam(clipnorm=1.0) memorises them through tanh "
        "units saturated by inputs of scale 100 (their signs act as random features). "
        "diagnose() flags that saturation and the fix scales the inputs, which leaves SGD(0.1) "
        "10 epochs too few to memorise noise; no fix diagnose() recommends gets to 0.0156.",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _tanh_spec("tanh_large_inputs.failure"),
                summary="example 3 without clipnorm, i.e. example 1's code",
                origin="derived",
                changes=_COMMON
                + (
                    p.TRY_EXCEPT,
                    "example 3 is a fix; its failure is its code without `clipnorm`, which "
                    "is example 1",
                ),
                expected=expect("ok"),
            ),
            "stress": _tanh_stress(),
            "document_fix": Variant(
                kind="document_fix",
                make_spec=lambda: _tanh_spec(
                    "gradient_clipping.document_fix",
                    optimizer=lambda: keras.optimizers.Adam(clipnorm=1.0),
                ),
                summary="Adam(clipnorm=1.0)",
                origin="document",
                changes=_COMMON + (p.TRY_EXCEPT,),
                expected=expect("ok"),
            ),
            "xstable_fix": _tanh_xstable_fix(),
        },
    )


# Example 2: binary cross-entropy on soft targets in [0.01, 0.99].
def _soft_target_data():
    rng = p.rng()
    x = rng.random((100, 10))
    y = np.clip(rng.random((100, 1)), 0.01, 0.99)
    return p.float32(x, y)


def _sigmoid_mlp():
    return p.sequential(
        10,
        keras.layers.Dense(64, activation="sigmoid"),
        keras.layers.Dense(1, activation="sigmoid"),
    )


def _soft_spec(name, loss, optimizer=lambda: "adam"):
    return p.spec(
        f"after_normalization.bce_soft_targets.{name}",
        _sigmoid_mlp,
        _soft_target_data,
        lambda: {"optimizer": optimizer(), "loss": loss},
        epochs=10,
    )


def _soft_scenario():
    return Scenario(
        id="after_normalization.bce_soft_targets",
        document=DOCUMENT,
        title=TITLE,
        example=2,
        claim="Binary cross-entropy on targets close to 0 or 1 (clipped to [0.01, 0.99]) "
        "can still cause numerical issues; another loss may be required.",
        claimed_outcome="unstable",
        variants={
            "failure": Variant(
                kind="failure",
                make_spec=lambda: _soft_spec("failure", "binary_crossentropy"),
                summary="Dense(64, sigmoid) + Dense(1, sigmoid), Adam, BCE, y clipped to "
                "[0.01, 0.99]",
                origin="document",
                changes=_COMMON,
                expected=expect("stalled"),
            ),
            "stress": Variant(
                kind="stress",
                make_spec=lambda: _soft_spec(
                    "stress",
                    handwritten_binary_crossentropy,
                    lambda: keras.optimizers.Adam(learning_rate=1.0),
                ),
                summary="a hand-written BCE and Adam(1.0)",
                origin="ours",
                changes=_COMMON + (p.STRESS_HANDWRITTEN_BCE, p.stress_adam(1.0)),
                expected=expect("nan"),
            ),
            "document_fix": Variant(
                kind="document_fix",
                make_spec=lambda: _soft_spec("document_fix", "mse"),
                summary="MSE instead of BCE (the commentary's 'a different loss function')",
                origin="derived",
                changes=_COMMON
                + (
                    "the document gives no fix in code; its commentary says 'using a "
                    "different loss function ... may be required', so the fix uses MSE",
                ),
                expected=expect("stalled"),
            ),
            "xstable_fix": fixes.fix_variant(
                "after_normalization.bce_soft_targets",
                lambda: _soft_spec(
                    "stress",
                    handwritten_binary_crossentropy,
                    lambda: keras.optimizers.Adam(learning_rate=1.0),
                ),
                _SOFT_FIX,
                _COMMON + (p.stress_adam(1.0),),
            ),
        },
    )


def scenarios():
    """Returns this document's scenarios, in the document's order (examples 1, 2, 3)."""
    return [_tanh_scenario(), _soft_scenario(), _clipnorm_scenario()]
