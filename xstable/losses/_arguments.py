"""Argument checks shared by the safe losses: types and ranges, as Keras reports them."""

import numpy as np

INVALID_TARGET_POLICIES = ("mask", "nan")


def check_bool(argument, value):
    """Returns `value` as a Python bool; raises `TypeError` for anything but a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"`{argument}` must be a bool (True or False). "
            f"Received: {argument}={value!r} of type {type(value).__name__}"
        )
    return bool(value)


def check_int(argument, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        kind = "an int or None" if allow_none else "an int"
        raise TypeError(
            f"`{argument}` must be {kind}. "
            f"Received: {argument}={value!r} of type {type(value).__name__}"
        )
    return int(value)


def check_label_smoothing(label_smoothing):
    if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(
        label_smoothing, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            "`label_smoothing` must be a float in [0, 1]. "
            f"Received: label_smoothing={label_smoothing!r} of type "
            f"{type(label_smoothing).__name__}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(
            "`label_smoothing` must be in [0, 1] (0 disables smoothing). "
            f"Received: label_smoothing={label_smoothing}"
        )
    return float(label_smoothing)


def check_invalid_targets(invalid_targets):
    if invalid_targets not in INVALID_TARGET_POLICIES:
        raise ValueError(
            f"`invalid_targets` must be one of {INVALID_TARGET_POLICIES}: 'mask' leaves "
            "samples with invalid targets out of the mean and counts them, 'nan' makes their "
            f"loss NaN. Received: invalid_targets={invalid_targets!r}"
        )
    return invalid_targets


def check_name(name):
    if name is not None and not isinstance(name, str):
        raise TypeError(
            f"`name` must be a string or None. Received: name={name!r} of type "
            f"{type(name).__name__}"
        )
    return name
