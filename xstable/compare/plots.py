"""PNG loss curves per target, one line per backend, with the NaN onset marked, and a second
panel with each backend's relative deviation from the reference per step.

matplotlib is an optional dependency (`pip install xstable[report]`); without it the report is
written without plots and says why.
"""

import math
import os

__all__ = ["MATPLOTLIB_MISSING", "LossPlotter", "matplotlib_available", "plot_losses"]

MATPLOTLIB_MISSING = (
    "Loss plots skipped: matplotlib is not installed. Install it with "
    "`pip install 'xstable[report]'` to get PNG loss curves in the report."
)


def matplotlib_available():
    """Returns whether matplotlib can be imported."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


class LossPlotter:
    """Draws loss-curve PNGs on one reused figure (creating a figure per plot costs twice).

    Use as a context manager; `plot` has the arguments of `plot_losses`.

    Raises:
        ImportError: If matplotlib is not installed (check `matplotlib_available()` first).
    """

    def __enter__(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self._plt = plt
        self.figure, (self.axes, self.deviation_axes) = plt.subplots(
            2, 1, figsize=(6.4, 5.4), dpi=80, sharex=True, height_ratios=(2, 1)
        )
        self.figure.subplots_adjust(left=0.12, right=0.97, top=0.93, bottom=0.09, hspace=0.08)
        return self

    def __exit__(self, *exc_info):
        self._plt.close(self.figure)
        return False

    def _plot_deviation(self, curves, reference, divergent_step):
        axes = self.deviation_axes
        axes.clear()
        ref_losses = curves.get(reference, ([], None))[0] if reference else []
        drawn = False
        for index, (backend, (losses, _)) in enumerate(curves.items()):
            if backend == reference or not ref_losses:
                continue
            steps = min(len(losses), len(ref_losses))
            values = []
            for a, b in zip(ref_losses[:steps], losses[:steps]):
                scale = max(abs(a), abs(b))
                finite = math.isfinite(a) and math.isfinite(b)
                values.append(abs(a - b) / scale if finite and scale > 0 else math.nan)
            # Exact agreement is drawn at a floor, so it shows on the log scale.
            values = [max(v, 1e-10) if math.isfinite(v) else math.nan for v in values]
            axes.plot(range(steps), values, label=f"{backend} vs {reference}", linewidth=1.0,
                      color=f"C{index}")
            drawn = True
        if divergent_step is not None:
            axes.axvline(divergent_step, color="black", linestyle="--", linewidth=0.8)
        if drawn:
            axes.set_yscale("log")
            axes.legend(fontsize=7)
        else:
            axes.text(0.5, 0.5, "no other backend to compare", ha="center", va="center",
                      transform=axes.transAxes, fontsize=8)
        axes.set_xlabel("step")
        axes.set_ylabel("rel. deviation", fontsize=8)

    def plot(self, title, curves, path, divergent_step=None, reference=None):
        axes = self.axes
        axes.clear()
        finite_values = [
            v for losses, _ in curves.values() for v in losses if math.isfinite(v) and v > 0
        ]
        log_scale = bool(finite_values) and max(finite_values) / min(finite_values) > 100
        for backend, (losses, nan_step) in curves.items():
            values = [v if math.isfinite(v) else math.nan for v in losses]
            (line,) = axes.plot(range(len(values)), values, label=backend, linewidth=1.2)
            if nan_step is not None:
                axes.axvline(nan_step, color=line.get_color(), linestyle=":", linewidth=1)
                axes.plot(
                    [nan_step], [1.0], marker="x", markersize=9, color=line.get_color(),
                    transform=axes.get_xaxis_transform(), clip_on=False,
                    label=f"{backend}: non-finite at step {nan_step}",
                )
        if divergent_step is not None:
            axes.axvline(divergent_step, color="black", linestyle="--", linewidth=0.8,
                         label=f"losses part at step {divergent_step}")
        axes.set_yscale("log" if log_scale else "linear")
        axes.set_ylabel("loss")
        if reference is None:
            reference = next(iter(curves), None)
        self._plot_deviation(curves, reference, divergent_step)
        axes.set_title(title, fontsize=10)
        axes.legend(fontsize=7)
        if isinstance(path, (str, os.PathLike)):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.figure.savefig(path)
        else:  # A binary file object, e.g. for a write that must not follow symlinks.
            self.figure.savefig(path, format="png")
        return path


def plot_losses(title, curves, path, divergent_step=None, reference=None):
    """Draws the loss curves of one target and saves them as a PNG.

    Args:
        title: str, plot title.
        curves: dict backend -> `(losses, first_nonfinite_step)`; losses are floats (NaN and
            infinity allowed). The first non-finite step is marked with an "x" on the top edge
            and a dotted line.
        path: str, PNG file to write, or a binary file object.
        divergent_step: int or `None`, a step to mark with a dashed line.
        reference: backend the second panel's deviations are taken from (default: the first
            of `curves`): `|loss - reference| / max(|loss|, |reference|)` per step, log scale.

    Returns:
        `path`.

    Raises:
        ImportError: If matplotlib is not installed (check `matplotlib_available()` first).
    """
    with LossPlotter() as plotter:
        return plotter.plot(title, curves, path, divergent_step, reference)
