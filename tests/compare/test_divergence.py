import math

import numpy as np

from xstable.compare.divergence import localize_divergence, loss_divergence
from xstable.compare.tolerances import Tolerances


def test_identical_and_noisy_runs_do_not_diverge():
    losses = [1.0, 0.8, 0.6, 0.5]
    result = loss_divergence(losses, losses)
    assert result["first_divergent_step"] is None and result["max_relative_deviation"] == 0.0
    noisy = [v * (1 + 3e-6) for v in losses]
    result = loss_divergence(losses, noisy)
    assert result["first_divergent_step"] is None
    assert 2e-6 < result["max_relative_deviation"] < 4e-6


def test_first_step_past_tolerance_is_reported():
    result = loss_divergence([1.0, 0.8, 0.6, 0.5], [1.0, 0.8, 0.9, 0.1])
    assert result["first_divergent_step"] == 2 and result["kind"] == "loss"
    assert result["reference_loss"] == 0.6 and result["loss"] == 0.9
    assert math.isclose(result["max_relative_deviation"], 0.8)


def test_nonfinite_on_one_side_diverges_and_both_nonfinite_do_not():
    result = loss_divergence([1.0, 0.8, 0.6], [1.0, math.nan])
    assert result["first_divergent_step"] == 1 and result["kind"] == "nonfinite"
    both = loss_divergence([1.0, math.inf], [1.0, math.nan])
    assert both["first_divergent_step"] is None and both["compared_steps"] == 2


def test_tolerance_is_configurable():
    loose = Tolerances(loss_rtol=0.5)
    assert loss_divergence([1.0, 1.0], [1.0, 1.4], loose)["first_divergent_step"] is None


def _inspection(hidden=1.0, output=2.0, loss=0.5, grad=0.1, update=0.9, train_loss=None):
    return {
        "layers": [
            {"name": "hidden", "class": "Dense", "outputs": [np.full((2, 3), hidden)]},
            {"name": "head", "class": "Dense", "outputs": [np.full((2, 1), output)]},
        ],
        "loss": loss,
        "gradients": [
            {"path": "model/hidden/kernel", "layer": "hidden", "value": np.full((3, 3), 0.2)},
            {"path": "model/head/kernel", "layer": "head", "value": np.full((3, 1), grad)},
        ],
        "weights_finite": [],
        "train_loss": loss if train_loss is None else train_loss,
        "updated_weights": [{"path": "model/head/kernel", "value": np.full((3, 1), update)}],
        "notes": [],
    }


def test_localization_names_the_first_stage_that_differs():
    ref = _inspection()
    assert localize_divergence(ref, _inspection())["stage"] == "none"
    forward = localize_divergence(ref, _inspection(hidden=np.nan, output=np.nan))
    assert (forward["stage"], forward["layer"]) == ("forward", "hidden")
    later = localize_divergence(ref, _inspection(output=2.5))
    assert (later["stage"], later["layer"]) == ("forward", "head")
    assert later["layers"][0]["forward_deviation"] == 0.0
    assert localize_divergence(ref, _inspection(loss=0.7))["stage"] == "loss"
    backward = localize_divergence(ref, _inspection(grad=0.0))
    assert (backward["stage"], backward["layer"]) == ("backward", "head")
    assert localize_divergence(ref, _inspection(train_loss=0.9))["stage"] == "train_step"
    update = localize_divergence(ref, _inspection(update=0.8))
    assert (update["stage"], update["layer"]) == ("update", "head")


def test_rounding_noise_in_tiny_gradients_is_not_a_divergence():
    # A gradient that should be zero (e.g. a bias before batch normalization) is rounding
    # noise; it is judged against the largest gradient, not its own scale.
    ref, other = _inspection(), _inspection()
    ref["gradients"].append({"path": "model/hidden/bias", "layer": "hidden",
                             "value": np.array([1e-9, -2e-9])})
    other["gradients"].append({"path": "model/hidden/bias", "layer": "hidden",
                               "value": np.array([-3e-9, 1e-9])})
    assert localize_divergence(ref, other)["stage"] == "none"


def test_layers_line_up_by_position_when_backends_name_them_differently():
    ref, other = _inspection(), _inspection(output=2.5)
    for record in other["layers"]:
        record["name"] += "_7"
    for g in other["gradients"]:
        g["path"] = g["path"].replace("/head/", "/head_7/")
    location = localize_divergence(ref, other)
    assert (location["stage"], location["layer"]) == ("forward", "head")
