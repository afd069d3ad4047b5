"""Command line for the seed-document scenarios.

Usage:
    KERAS_BACKEND=jax python -m xstable.scenarios run --out results-jax.json
    python -m xstable.scenarios table results-*.json > table.md
    python -m xstable.scenarios summary results-*.json --out summary.md
    python -m xstable.scenarios summary results-*.json --readme README.md
    python -m xstable.scenarios list
    python -m xstable.scenarios describe > changes.md
"""

import argparse
import json
import sys

__all__ = ["main"]


def _run(args):
    from xstable.scenarios.run import run_all

    def progress(result):
        extra = result.extra
        step = (
            "" if result.first_nonfinite_step is None else f" at step {result.first_nonfinite_step}"
        )
        print(
            f"{extra['scenario']:45s} {extra['variant']:13s} {result.outcome}{step} "
            f"(expected {extra['expected_outcome']}), final loss {result.final_loss:.4g}, "
            f"{result.wall_time_s:.2f} s",
            file=sys.stderr,
            flush=True,
        )

    results = run_all(
        scenarios=args.scenario or None, variants=args.variant or None, progress=progress
    )
    payload = [r.to_dict() for r in results]
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=1)
    else:
        json.dump(payload, sys.stdout, indent=1)
    mismatches = [r for r in results if not r.extra["matches_expected"]]
    for result in mismatches:
        print(
            f"UNEXPECTED: {result.extra['scenario']} {result.extra['variant']}: "
            f"{result.outcome}, expected {result.extra['expected_outcome']}",
            file=sys.stderr,
        )
    return 1 if mismatches else 0


def _table(args):
    from xstable.scenarios.claims_table import load_results, render_claims_table

    print(render_claims_table(load_results(args.results)))
    return 0


def _summary(args):
    from xstable.scenarios.claims_table import load_results
    from xstable.scenarios.summary_table import (
        render_compact_table,
        render_summary_table,
        replace_marked_block,
    )

    results = load_results(args.results)
    if args.readme:
        with open(args.readme, encoding="utf-8") as handle:
            readme = handle.read()
        readme = replace_marked_block(readme, "scenario-table", render_compact_table(results))
        with open(args.readme, "w", encoding="utf-8") as handle:
            handle.write(readme)
        return 0
    text = render_summary_table(results) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _list(args):
    from xstable.scenarios.registry import all_scenarios

    for scenario in all_scenarios():
        kinds = ", ".join(scenario.variant_kinds())
        print(f"{scenario.id:45s} {scenario.document} ex. {scenario.example}: {kinds}")
    return 0


def _describe(args):
    from xstable.scenarios.registry import all_scenarios

    for scenario in all_scenarios():
        print(f"### `{scenario.id}` ({scenario.document}, example {scenario.example})\n")
        print(f"Claim: {scenario.claim}\n")
        if scenario.no_stress_reason:
            print(f"No stress variant. {scenario.no_stress_reason}\n")
        for kind in scenario.variant_kinds():
            variant = scenario.variant(kind)
            outcomes, reason = variant.expected
            expected = ", ".join(f"{b}: {o}" for b, o in outcomes.items())
            print(f"- **{kind}** ({variant.origin}): {variant.summary}. Expected: {expected}.")
            if reason:
                print(f"  Why backends differ: {reason}")
            for change in variant.changes:
                print(f"  - {change}")
        print()
    return 0


def build_parser():
    """Returns the `argparse` parser of `python -m xstable.scenarios`."""
    parser = argparse.ArgumentParser(
        prog="python -m xstable.scenarios",
        description="Run the seed-document scenarios and render the claim-vs-measured table.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run scenarios on the active backend (KERAS_BACKEND)")
    run.add_argument("--out", help="JSON file for the results (default: stdout)")
    run.add_argument("--scenario", action="append", help="scenario id (repeatable; default all)")
    run.add_argument("--variant", action="append", help="variant kind (repeatable; default all)")
    run.set_defaults(handler=_run)
    table = commands.add_parser("table", help="markdown claim-vs-measured table from results")
    table.add_argument("results", nargs="+", help="results-<backend>.json files")
    table.set_defaults(handler=_table)
    summary = commands.add_parser(
        "summary", help="markdown: failure, document fix and xstable fix per backend"
    )
    summary.add_argument("results", nargs="+", help="results-<backend>.json files")
    summary.add_argument("--out", help="markdown file to write (default: stdout)")
    summary.add_argument(
        "--readme", help="rewrite the compact table between README's scenario-table markers"
    )
    summary.set_defaults(handler=_summary)
    listing = commands.add_parser("list", help="list scenarios and their variants")
    listing.set_defaults(handler=_list)
    describe = commands.add_parser(
        "describe", help="markdown: every scenario, variant and change from the document's code"
    )
    describe.set_defaults(handler=_describe)
    return parser


def main(argv=None):
    """Runs the command line; returns the exit status (1 if a run missed its expectation)."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
