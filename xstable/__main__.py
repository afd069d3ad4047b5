"""Command line: `xstable info` and `xstable compare` (also as `python -m xstable ...`)."""

import argparse
import json
import sys

__all__ = ["main"]


def _info(args):
    import xstable

    info = {"xstable": xstable.__version__, **xstable.library_versions()}
    info["device"] = xstable.active_device()
    print(json.dumps(info, indent=2))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="xstable", description="Numerical-stability toolkit for Keras 3."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="print backend, device and library versions")
    info.set_defaults(handler=_info)
    from xstable.compare.cli import add_compare_parser

    add_compare_parser(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
