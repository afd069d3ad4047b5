"""Exceptions raised by xstable, and the one policy vocabulary every guard speaks."""

__all__ = ["NonFiniteError", "POLICIES", "check_policy"]

# What a guard does when it finds a NaN or an infinity. Every guard takes these words with
# the same meaning (a guard lists the subset that makes sense for it):
#   "raise":   raise `NonFiniteError`, saying where and what to check.
#   "warn":    emit a `RuntimeWarning` with the same text and go on.
#   "replace": put a finite value in the place of the non-finite one and go on (a layer:
#              replacement values; the training monitor: the last good weights and
#              optimizer state, with a lower learning rate).
#   "count":   only count, in a variable or in the training logs.
POLICIES = ("raise", "warn", "replace", "count")


class NonFiniteError(FloatingPointError):
    """A NaN or infinity was found where xstable was asked to guarantee finite values.

    Subclasses `FloatingPointError` (itself an `ArithmeticError`), so code that already
    catches floating-point failures keeps working. The message says where the value was
    found and how to investigate it.
    """


def check_policy(policy, allowed=POLICIES, argument="policy"):
    """Validates a policy argument against xstable's vocabulary.

    Args:
        policy: The value received.
        allowed: Tuple of the policies the caller supports (a subset of `POLICIES`).
        argument: String, the argument's name for the message.

    Returns:
        The policy, unchanged.

    Raises:
        TypeError: If `policy` is not a string.
        ValueError: If `policy` is not one of `allowed`.
    """
    if not isinstance(policy, str):
        raise TypeError(
            f"`{argument}` must be a string, one of {', '.join(map(repr, allowed))}. "
            f"Received: {argument}={policy!r} of type {type(policy).__name__}."
        )
    if policy not in allowed:
        raise ValueError(
            f"`{argument}` must be one of {', '.join(map(repr, allowed))}. "
            f"Received: {argument}={policy!r}. 'raise' stops with an error, 'warn' reports "
            "and goes on, 'replace' puts a finite value (or the last good state) back, "
            "'count' only counts."
        )
    return policy
