"""The body of every `examples/<document>.py` script: one document's variants, as a table."""

import argparse

from xstable.runtime import active_backend
from xstable.scenarios.claims_table import render_run_table
from xstable.scenarios.registry import document_scenarios
from xstable.scenarios.run import run_all

__all__ = ["run_document_example"]


def run_document_example(document_module, description, argv=None):
    """Runs one seed document's scenarios on the current backend and prints what happened.

    Args:
        document_module: One of the `xstable.scenarios` document modules (it declares
            `DOCUMENT`, `TITLE` and `EXAMPLES`).
        description: One line for `--help`.
        argv: Command-line arguments (`--variant KIND`, repeatable); `None` reads `sys.argv`.

    Returns:
        0 when every outcome matches the one recorded in its scenario, else 1.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--variant", action="append", help="variant kind (repeatable)")
    args = parser.parse_args(argv)
    results = run_all(document_scenarios(document_module), variants=args.variant)
    print(f"Seed document {document_module.DOCUMENT} on {active_backend()}:\n")
    print(render_run_table(results))
    for result in results:
        location = result.extra["nan_location"]
        if location:
            print(f"\n{result.extra['scenario']} {result.extra['variant']}: {location['detail']}")
    return 0 if all(r.extra["matches_expected"] for r in results) else 1
