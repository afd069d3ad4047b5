"""Seed document 001, "Why does a simple linear fit produce a NaN loss?": its failures and fixes on this backend.

Runs every variant (failure, stress, document_fix, xstable_fix) of the document's scenarios
with pinned data, initial weights and batch order, and prints what happened. Usage:

    KERAS_BACKEND=jax python examples/linear_fit.py
    KERAS_BACKEND=torch python examples/linear_fit.py --variant failure --variant document_fix
"""

import sys

from xstable.scenarios import linear_fit
from xstable.scenarios.document_example import run_document_example


def main(argv=None):
    return run_document_example(linear_fit, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
