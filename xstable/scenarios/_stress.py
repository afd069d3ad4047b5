"""The stress cases the seed examples share: the nearest setting that does go non-finite.

Where a document's code stays finite on Keras 3, its `stress` variant changes as little as
it takes to make it go non-finite. Two changes serve several examples, each declared here once:
a large SGD step, and a hand-written binary cross-entropy with Adam at 1.0.
"""

from xstable.scenarios import _porting as p
from xstable.scenarios.declaration import Case
from xstable.scenarios.handwritten_bce import handwritten_binary_crossentropy
from xstable.scenarios.scenario import expect

__all__ = ["handwritten_bce_stress", "sgd_stress"]


def sgd_stress(failure, learning_rate, summary, name=None):
    """The failure's setting with `SGD(learning_rate)`: a `Case` expected to go NaN.

    Args:
        failure: `Setting` of the example's failure.
        learning_rate: float, the smallest rate found to make it non-finite.
        summary: str, one line saying what the variant does.
        name: str or `None`, the spec's name where two examples share this stress case.
    """
    return Case(
        failure.replace(optimizer=("SGD", {"learning_rate": learning_rate}), name=name),
        summary=summary,
        origin="ours",
        expected=expect("nan"),
        changes=(p.stress_sgd(learning_rate),),
    )


def handwritten_bce_stress(failure, summary):
    """The failure's setting with a hand-written BCE and `Adam(1.0)`: a `Case` going NaN.

    Args:
        failure: `Setting` of the example's failure (a sigmoid output).
        summary: str, one line saying what the variant does.
    """
    return Case(
        failure.replace(
            optimizer=("Adam", {"learning_rate": 1.0}), loss=handwritten_binary_crossentropy
        ),
        summary=summary,
        origin="ours",
        expected=expect("nan"),
        changes=(p.STRESS_HANDWRITTEN_BCE, p.stress_adam(1.0)),
    )
