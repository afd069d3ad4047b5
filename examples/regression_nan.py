"""Seed document 000, "Why is the loss NaN when training a Keras regression model?": its failures and fixes on this backend.

Runs every variant (failure, stress, document_fix, xstable_fix) of the document's scenarios
with pinned data, initial weights and batch order, and prints what happened. Usage:

    KERAS_BACKEND=jax python examples/regression_nan.py
    KERAS_BACKEND=torch python examples/regression_nan.py --variant failure --variant document_fix
"""

import sys

from xstable.scenarios import regression_nan
from xstable.scenarios.document_example import run_document_example


def main(argv=None):
    return run_document_example(regression_nan, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
