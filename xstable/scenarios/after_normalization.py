"""Seed document 003, "Why are NaN values appearing in Keras output and loss, even after normalization?".

Three examples: a tanh MLP on inputs of scale 100 (claimed to explode), sigmoid layers with
binary cross-entropy on soft targets near 0 and 1, and the tanh MLP again with Adam's
`clipnorm=1.0` (the fix).
"""

import numpy as np

from xstable.scenarios import _porting as p
from xstable.scenarios import xstable_fixes as fixes
from xstable.scenarios._stress import handwritten_bce_stress, sgd_stress
from xstable.scenarios.declaration import Case, DenseStack, FixCase, SeedExample, Setting
from xstable.scenarios.scenario import expect

__all__ = ["DOCUMENT", "TITLE", "EXAMPLES"]

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


def _mlp(activation):
    return DenseStack(10, ((128, activation), (64, activation), (1, None)))


# Example 1's failure is example 3 without its fix, and both examples share one stress
# setting and its xstable fix: each trained once.
_TANH_FAILURE = Setting(
    _mlp("tanh"), _large_input_data, epochs=10, name="after_normalization.tanh_large_inputs.failure"
)
_TANH_STRESS = sgd_stress(
    _TANH_FAILURE,
    0.1,
    "the tanh MLP with SGD(0.1) instead of Adam",
    name="after_normalization.tanh_large_inputs.stress",
)
_TANH_XSTABLE_FIX = FixCase(_TANH_FIX, changes=(p.stress_sgd(0.1),))


# Example 2: binary cross-entropy on soft targets in [0.01, 0.99].
def _soft_target_data():
    rng = p.rng()
    x = rng.random((100, 10))
    y = np.clip(rng.random((100, 1)), 0.01, 0.99)
    return p.float32(x, y)


_SOFT_FAILURE = Setting(
    DenseStack(10, ((64, "sigmoid"), (1, "sigmoid"))),
    _soft_target_data,
    epochs=10,
    loss="binary_crossentropy",
)

_TANH_EXAMPLE = SeedExample(
    id="after_normalization.tanh_large_inputs",
    number=1,
    claim="A tanh MLP on inputs of scale 100 is highly susceptible to exploding "
    "gradients and a NaN loss; ReLU instead of tanh mitigates it.",
    claimed_outcome="nan",
    changes=_COMMON + (p.TRY_EXCEPT,),
    failure=Case(
        _TANH_FAILURE,
        summary="Dense(128, tanh) + Dense(64, tanh) + Dense(1), Adam, MSE, x in [0, 100)",
        origin="document",
        expected=expect("ok"),
    ),
    stress=_TANH_STRESS,
    document_fix=Case(
        _TANH_FAILURE.replace(model=_mlp("relu")),
        summary="ReLU instead of tanh (the commentary's first suggestion)",
        origin="derived",
        expected=expect("stalled"),
        changes=(
            "the commentary says 'Replacing tanh with ReLU ... can help'; the fix "
            "does that (its other suggestion, clipping, is example 3)",
        ),
    ),
    xstable_fix=_TANH_XSTABLE_FIX,
)

_SOFT_EXAMPLE = SeedExample(
    id="after_normalization.bce_soft_targets",
    number=2,
    claim="Binary cross-entropy on targets close to 0 or 1 (clipped to [0.01, 0.99]) "
    "can still cause numerical issues; another loss may be required.",
    claimed_outcome="unstable",
    changes=_COMMON,
    failure=Case(
        _SOFT_FAILURE,
        summary="Dense(64, sigmoid) + Dense(1, sigmoid), Adam, BCE, y clipped to [0.01, 0.99]",
        origin="document",
        expected=expect("stalled"),
    ),
    stress=handwritten_bce_stress(_SOFT_FAILURE, "a hand-written BCE and Adam(1.0)"),
    document_fix=Case(
        _SOFT_FAILURE.replace(loss="mse"),
        summary="MSE instead of BCE (the commentary's 'a different loss function')",
        origin="derived",
        expected=expect("stalled"),
        changes=(
            "the document gives no fix in code; its commentary says 'using a "
            "different loss function ... may be required', so the fix uses MSE",
        ),
    ),
    xstable_fix=FixCase(_SOFT_FIX, changes=(p.stress_adam(1.0),)),
)

_CLIPNORM_EXAMPLE = SeedExample(
    id="after_normalization.gradient_clipping",
    number=3,
    claim="Adam(clipnorm=1.0) prevents the exploding gradients of the tanh MLP on "
    "inputs of scale 100.",
    claimed_outcome="ok",
    changes=_COMMON + (p.TRY_EXCEPT,),
    failure=Case(
        _TANH_FAILURE,
        summary="example 3 without clipnorm, i.e. example 1's code",
        origin="derived",
        expected=expect("ok"),
        changes=(
            "example 3 is a fix; its failure is its code without `clipnorm`, which is example 1",
        ),
    ),
    stress=_TANH_STRESS,
    document_fix=Case(
        _TANH_FAILURE.replace(optimizer=("Adam", {"clipnorm": 1.0})),
        summary="Adam(clipnorm=1.0)",
        origin="document",
        expected=expect("ok"),
    ),
    xstable_fix=_TANH_XSTABLE_FIX,
    xstable_fix_note="Above the document's fix: the targets are drawn at random, "
    "independent of x, and the document's Adam(clipnorm=1.0) memorises them through tanh "
    "units saturated by inputs of scale 100 (their signs act as random features). "
    "diagnose() flags that saturation and the fix scales the inputs, which leaves SGD(0.1) "
    "10 epochs too few to memorise noise; no fix diagnose() recommends gets to 0.0156.",
)

# In the document's order: examples 1, 2, 3.
EXAMPLES = (_TANH_EXAMPLE, _SOFT_EXAMPLE, _CLIPNORM_EXAMPLE)
