"""Seed document 003, "Why do NaN values appear even after normalization?": its failures and fixes on this backend.

Runs every variant (failure, stress, document_fix, xstable_fix) of the document's scenarios
with pinned data, initial weights and batch order, and prints what happened. Usage:

    KERAS_BACKEND=jax python examples/after_normalization.py
    KERAS_BACKEND=torch python examples/after_normalization.py --variant failure --variant document_fix
"""

import sys

from xstable.scenarios import after_normalization
from xstable.scenarios.document_example import run_document_example


def main(argv=None):
    return run_document_example(after_normalization, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
