"""Exceptions raised by xstable."""

__all__ = ["NonFiniteError"]


class NonFiniteError(FloatingPointError):
    """A NaN or infinity was found where xstable was asked to guarantee finite values.

    Subclasses `FloatingPointError` (itself an `ArithmeticError`), so code that already
    catches floating-point failures keeps working. The message says where the value was
    found and how to investigate it.
    """
