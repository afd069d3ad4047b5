"""Float64 NumPy references for the documented safe cross-entropy formulas (float32 clips)."""

import numpy as np

TINY = float(np.finfo(np.float32).tiny)
ONE_MINUS_FLOOR = 2.0**-25
# Keras's clip of probabilities, `[epsilon, 1 - epsilon]`, as float32 bounds.
EPSILON = 1e-7
LOW = np.float32(EPSILON)
HIGH = np.float32(1.0 - EPSILON)


def clipped_probabilities(p):
    """`(p, 1 - p)` in float64 for float32 probabilities clipped as Keras clips them (the
    subtraction rounded like float32)."""
    clipped = np.clip(np.asarray(p, np.float32), LOW, HIGH)
    not_p = np.maximum((np.float32(1.0) - clipped).astype(np.float64), ONE_MINUS_FLOOR)
    return clipped.astype(np.float64), not_p


def sigmoid64(z):
    z = np.asarray(z, np.float64)
    return np.where(
        z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z)))
    )


def bce_from_probabilities(y, p):
    """Per-element loss and d loss / d p for float32 probabilities `p` (evaluated in float64)."""
    y = np.asarray(y, np.float64)
    safe_p, safe_not_p = clipped_probabilities(p)
    loss = -(y * np.log(safe_p) + (1 - y) * np.log(safe_not_p))
    grad = -y / safe_p + (1 - y) / safe_not_p
    return loss, grad


def bce_from_logits(y, z):
    y = np.asarray(y, np.float64)
    z = np.asarray(z, np.float64)
    log_p = np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))
    log_not_p = np.minimum(-z, 0) - np.log1p(np.exp(-np.abs(z)))
    return -(y * log_p + (1 - y) * log_not_p), sigmoid64(z) - y


def log_softmax64(z):
    z = np.asarray(z, np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
