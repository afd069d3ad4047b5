"""The `xstable compare` subcommand: arguments, and the call to `compare()`."""

import os
import sys
import traceback
import warnings

from xstable.compare.findings import DEFAULT_FAIL_ON, FINDING_KINDS
from xstable.compare.orchestrator import BACKENDS
from xstable.compare.signals import INTERRUPTS, exit_status_for, raise_on_sigterm
from xstable.compare.tolerances import DEFAULT_TOLERANCES, Tolerances

__all__ = ["add_compare_parser", "run_compare"]

_EPILOG = """\
targets:
  module:function       a function returning an xstable.training.TrainingSpec or a spec dict
  path/file.py:function the same, from a file
  SCENARIO_ID/VARIANT   a seed scenario variant (see `xstable compare --list`)
  path/model.keras      a saved Keras model, with --data path/data.npz (arrays x and y;
                        x alone for --mode predict); its own compile configuration
  SCENARIO_ID           every variant of a seed scenario
  (none)                every variant of every seed scenario

findings for --fail-on (comma-separated, or `none`/`any`):
""" + "\n".join(f"  {k:<12} {v}" for k, v in FINDING_KINDS.items()) + """

exit status:
  0    no finding named in --fail-on
  1    a finding named in --fail-on occurred
  2    usage or tool error: bad arguments, a target that cannot be found, an --out that
       is not a directory, not writable or owned by another user
  130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: workers killed, partial report
       (status "interrupted") written

safety (shared folders, CI):
  every file under --out is written atomically by the parent process and never through a
  symlink (a symlink there is replaced); the workers exchange data with it only as JSON and
  .npz (no pickle) in a private temporary folder (mode 0700, outside --out, removed at exit)

examples:
  xstable compare --out reports/compare
  xstable compare my_project.specs:small_mlp --backends tensorflow,jax --fail-on divergence,nan
  xstable compare model.keras --data data.npz --mode predict
"""


def _backends(value):
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise ValueError(
            f"`--backends` takes a comma-separated subset of {list(BACKENDS)}. "
            f"Received: --backends={value!r}."
        )
    return names


def _pythons(values):
    python = {}
    for value in values or []:
        backend, sep, path = value.partition("=")
        if not sep or backend not in BACKENDS or not path:
            raise ValueError(
                f"`--python` takes BACKEND=PATH with BACKEND one of {list(BACKENDS)}, e.g. "
                f"`--python tensorflow=/opt/tf216/bin/python`. Received: --python={value!r}."
            )
        python[backend] = path
    return python


def add_compare_parser(commands):
    """Adds the `compare` subcommand to an argparse subparsers object."""
    import argparse

    parser = commands.add_parser(
        "compare",
        help="train targets on TensorFlow, PyTorch and JAX and report where they part ways",
        description="Train each target on every backend from the same initial weights and "
        "batch order (TF32 off), compare the per-step losses, name the layer or loss where "
        "backends part ways and where NaNs appear; write report.md, report.json and plots.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("targets", nargs="*", help="targets (default: every seed scenario)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated backends; the first is the reference "
                        f"(default: {','.join(BACKENDS)})")
    parser.add_argument("--reference", default=None, help="reference backend (default: first)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--out", default="reports/compare",
                        help="report folder: a directory of yours, created if missing")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds one target may take on one backend (default: 300)")
    parser.add_argument("--startup-timeout", type=float, default=300.0,
                        help="seconds a backend may take to start (default: 300)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="backends training at once (default: all)")
    parser.add_argument("--fail-on", default=",".join(DEFAULT_FAIL_ON),
                        help=f"findings that give exit status 1 (default: "
                        f"{','.join(DEFAULT_FAIL_ON)})")
    parser.add_argument("--loss-rtol", type=float, default=DEFAULT_TOLERANCES.loss_rtol)
    parser.add_argument("--loss-atol", type=float, default=DEFAULT_TOLERANCES.loss_atol)
    parser.add_argument("--tensor-rtol", type=float, default=DEFAULT_TOLERANCES.tensor_rtol)
    parser.add_argument("--tensor-atol", type=float, default=DEFAULT_TOLERANCES.tensor_atol)
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG loss plots")
    parser.add_argument("--no-locate", action="store_true",
                        help="skip the per-layer comparison and NaN location")
    parser.add_argument("--python", action="append", metavar="BACKEND=PATH",
                        help="run BACKEND's worker with the Python interpreter at PATH (e.g. a "
                        "virtual environment with another version); repeatable")
    parser.add_argument("--noise-floor", action="store_true",
                        help="train each target twice on the reference backend (A/A) and "
                        "report how far two identical runs part (doubles its training time)")
    parser.add_argument("--mode", choices=("train", "predict"), default="train",
                        help="train: compare the predictions from the initial weights (step 0), "
                        "then the training; predict: the predictions on all of the data only")
    parser.add_argument("--data", default=None, metavar="PATH.npz",
                        help="data of saved-model targets: a .npz with arrays x and y (x alone "
                        "for --mode predict), read without pickle")
    parser.add_argument("--epochs", type=int, default=1,
                        help="passes over --data when a saved model trains (default: 1)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="rows per step of a saved model (default: 32)")
    parser.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                        help="module every worker imports first, e.g. one that registers a "
                        "saved model's custom layers; repeatable")
    parser.add_argument("--seeds", type=int, default=5,
                        help="runs per backend of a model with dropout or noise layers, "
                        "compared statistically (default: 5; 1 compares step by step)")
    parser.add_argument("--dtype-policy", default=None,
                        choices=("mixed_float16", "mixed_bfloat16", "float32"),
                        help="global Keras dtype policy the models are built under on every "
                        "backend (mixed_float16: Keras's loss scaling; the report gives "
                        "overflows and NaNs per backend)")
    parser.add_argument("--list", action="store_true", help="list the seed scenario targets and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(handler=run_compare)
    return parser


def run_compare(args):
    """Runs the subcommand; returns the exit status (see `_EPILOG`).

    SIGTERM raises in this process for the duration, so that it, like Ctrl-C, kills the
    workers and writes a partial report instead of ending the parent alone.
    """
    with raise_on_sigterm():
        try:
            return _run_compare(args)
        except INTERRUPTS as interrupt:
            if args.quiet:
                print(f"xstable compare: interrupted ({type(interrupt).__name__})",
                      file=sys.stderr)
            return exit_status_for(interrupt)


def _run_compare(args):
    if "keras" not in sys.modules:
        # This process only lists the seed scenarios (whose modules import Keras) and writes
        # the report; each backend trains in its own worker process. Keras's NumPy backend
        # imports in about half the time of TensorFlow's, Keras's default.
        os.environ["KERAS_BACKEND"] = "numpy"
    with warnings.catch_warnings():
        # The NumPy backend warns when a module defines a custom gradient at import (the
        # parent never differentiates anything); not a message for the user.
        warnings.filterwarnings("ignore", message="`custom_gradient` for the numpy backend")
        from xstable.compare.api import compare
        from xstable.compare.targets import default_targets

        if args.list or not args.targets:
            default_targets()  # imports the seed scenario modules inside this filter

    try:
        if args.list:
            for target in default_targets():
                print(target)
            return 0
        with warnings.catch_warnings():
            # Seed scenario targets import their modules here too (see above).
            warnings.filterwarnings("ignore", message="`custom_gradient` for the numpy backend")
            report = _call_compare(compare, args)
    except (TypeError, ValueError, RuntimeError, OSError) as error:
        print(f"xstable compare: error: {error}", file=sys.stderr)
        return 2
    except Exception:  # A bug of the tool: its traceback, and never the status of a finding.
        traceback.print_exc()
        print("xstable compare: internal error (traceback above)", file=sys.stderr)
        return 2
    return report["summary"]["exit_status"]


def _call_compare(compare, args):
    return compare(
        targets=args.targets or None,
        backends=_backends(args.backends),
        out_dir=args.out,
        device=args.device,
        reference=args.reference,
        tolerances=Tolerances(args.loss_rtol, args.loss_atol, args.tensor_rtol,
                              args.tensor_atol),
        timeout_s=args.timeout,
        startup_timeout_s=args.startup_timeout,
        jobs=args.jobs,
        fail_on=args.fail_on,
        plots=not args.no_plots,
        locate=not args.no_locate,
        progress=None if args.quiet else sys.stderr,
        noise_floor=args.noise_floor,
        python=_pythons(args.python),
        mode=args.mode,
        data=args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        imports=args.imports or [],
        seeds=args.seeds,
        dtype_policy=args.dtype_policy,
    )
