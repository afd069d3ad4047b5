"""Seed document 003, "Why do NaN values appear even after normalization?": its failures and fixes on this backend.

Runs every variant (failure, stress, document_fix, xstable_fix) of the document's scenarios
with pinned data, initial weights and batch order, and prints what happened. Usage:

    KERAS_BACKEND=jax python examples/after_normalization.py
    KERAS_BACKEND=torch python examples/after_normalization.py --variant failure --variant document_fix
"""

import argparse
import sys

from xstable import active_backend
from xstable.scenarios import after_normalization, run_all
from xstable.scenarios.claims_table import render_run_table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", help="variant kind (repeatable)")
    args = parser.parse_args(argv)
    results = run_all(after_normalization.scenarios(), variants=args.variant)
    print(f"Seed document {after_normalization.DOCUMENT} on {active_backend()}:\n")
    print(render_run_table(results))
    for result in results:
        location = result.extra["nan_location"]
        if location:
            print(f"\n{result.extra['scenario']} {result.extra['variant']}: {location['detail']}")
    return 0 if all(r.extra["matches_expected"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
