"""Seed document 002, "Why is the training loss NaN although the data are in range?": its failures and fixes on this backend.

Runs every variant (failure, stress, document_fix, xstable_fix) of the document's scenarios
with pinned data, initial weights and batch order, and prints what happened. Usage:

    KERAS_BACKEND=jax python examples/in_range_data.py
    KERAS_BACKEND=torch python examples/in_range_data.py --variant failure --variant document_fix
"""

import sys

from xstable.scenarios import in_range_data
from xstable.scenarios.document_example import run_document_example


def main(argv=None):
    return run_document_example(in_range_data, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
