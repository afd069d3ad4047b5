"""Argument checks of the safe losses, on top of xstable's shared checks."""

from xstable import _validation
from xstable._validation import check_bool, check_int

__all__ = [
    "check_bool",
    "check_int",
    "check_invalid_targets",
    "check_label_smoothing",
    "check_name",
]

INVALID_TARGET_POLICIES = ("mask", "nan")


def check_label_smoothing(label_smoothing):
    return _validation.check_number(
        "label_smoothing", label_smoothing, 0.0, 1.0, meaning=" (0 disables smoothing)"
    )


def check_invalid_targets(invalid_targets):
    return _validation.check_one_of(
        "invalid_targets",
        invalid_targets,
        INVALID_TARGET_POLICIES,
        meaning=": 'mask' leaves samples with invalid targets out of the mean, 'nan' makes "
        "their loss NaN",
    )


def check_name(name):
    return _validation.check_name("name", name)
