"""Seed document 002, "Why is the training loss NaN although the data are in range?": its failures and fixes on this backend.

Runs every variant (failure, stress, document_fix, xstable_fix) of the document's scenarios
with pinned data, initial weights and batch order, and prints what happened. Usage:

    KERAS_BACKEND=jax python examples/in_range_data.py
    KERAS_BACKEND=torch python examples/in_range_data.py --variant failure --variant document_fix
"""

import argparse
import sys

from xstable import active_backend
from xstable.scenarios import in_range_data, run_all
from xstable.scenarios.claims_table import render_run_table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", help="variant kind (repeatable)")
    args = parser.parse_args(argv)
    results = run_all(in_range_data.scenarios(), variants=args.variant)
    print(f"Seed document {in_range_data.DOCUMENT} on {active_backend()}:\n")
    print(render_run_table(results))
    for result in results:
        location = result.extra["nan_location"]
        if location:
            print(f"\n{result.extra['scenario']} {result.extra['variant']}: {location['detail']}")
    return 0 if all(r.extra["matches_expected"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
