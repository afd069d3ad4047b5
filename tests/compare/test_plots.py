import math

import pytest

from xstable.compare.plots import matplotlib_available, plot_losses


@pytest.mark.skipif(not matplotlib_available(), reason="matplotlib (extra `report`) missing")
def test_plot_marks_nan_onset_and_writes_png(tmp_path):
    path = plot_losses(
        "demo",
        {"tensorflow": ([1.0, 0.5, 0.25], None), "torch": ([1.0, 0.5, math.nan], 2)},
        str(tmp_path / "plots" / "demo.png"),
        divergent_step=2,
    )
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
